/* worker_main.c -- shmaccel-worker: the pool process. Parses options, creates the control
 * segment, starts the pool threads and serves sessions until told to stop.
 *
 *   shmaccel-worker --session-fd FD [--threads N]       private pool of one client (the
 *                                                        embedded default); exits on its EOF
 *   shmaccel-worker --name NAME [--threads N] [--max-clients M] [--ready-fd FD]
 *                                                        named pool listening in the per-user
 *                                                        runtime directory until SIGTERM/SIGINT
 */
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* How long a stopping pool waits for the requests in flight (shmaccel-pool stop kills it
 * sooner if asked to). */
#define STOP_GRACE_NS (UINT64_C(30) * 1000000000u)

static void
usage(FILE *f)
{
    fprintf(f, "usage: shmaccel-worker (--session-fd FD | --name NAME) [--threads N]\n"
               "                       [--max-clients M] [--max-count N] [--ready-fd FD]\n");
}

static int
parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* The named pool's socket path while it is bound, for stop_listening. */
static char listen_path[300];

/* First step of a graceful stop: unlink the socket before closing it, so that a client
 * connecting from now on gets ENOENT rather than a connection nobody will accept. */
static void
stop_listening(int listen_fd)
{
    if (listen_path[0] != '\0') {
        unlink(listen_path);
        listen_path[0] = '\0';
    }
    if (listen_fd >= 0) {
        close(listen_fd);
    }
}

/* Why `path` may not be our runtime directory (want_dir) or be replaced by our socket, as the
 * end of a sentence "it ...", written to buf; NULL when it may (or does not exist). */
static const char *
path_problem(const char *path, int want_dir, char *buf, size_t len)
{
    const char *kind = want_dir ? "directory" : "socket";
    struct stat st;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) {
            return NULL;
        }
        snprintf(buf, len, "cannot be examined (%s)", strerror(errno));
    } else if (S_ISLNK(st.st_mode)) {
        snprintf(buf, len, "is a symbolic link, not a %s", kind);
    } else if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISSOCK(st.st_mode)) {
        snprintf(buf, len, "is not a %s", kind);
    } else if (st.st_uid != getuid()) {
        snprintf(buf, len, "is owned by uid %u, not by uid %u (this process)", (unsigned)st.st_uid,
                 (unsigned)getuid());
    } else if (want_dir && (st.st_mode & 0077) != 0) {
        snprintf(buf, len, "has mode %04o: open to other users (it must be 0700)",
                 (unsigned)(st.st_mode & 07777));
    } else {
        return NULL;
    }
    return buf;
}

/* Binds the named pool's socket. A socket of ours left by a dead pool is replaced; one that
 * still answers belongs to a live pool and is an error (-EADDRINUSE). Anything else at the
 * path (a file, a link, another user's socket) was put there by someone else: it is reported
 * and left in place (-EEXIST), never removed. */
static int
listen_named(const char *name, char *path, size_t path_len)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char dir[256], why[128];
    int fd = -1, err;

    if ((err = sa_runtime_dir(dir, sizeof(dir), 1)) < 0) {
        if (err == -EPERM && path_problem(dir, 1, why, sizeof(why)) != NULL) {
            fprintf(stderr, "shmaccel-worker: refusing to use the runtime directory %s: it %s\n",
                    dir, why);
        } else {
            fprintf(stderr, "shmaccel-worker: runtime directory %s unusable: %s\n", dir,
                    sa_strerror(err));
        }
        return err;
    }
    if ((err = sa_pool_socket_path(name, path, path_len)) < 0) {
        return err;
    }
    if (strlen(path) >= sizeof(addr.sun_path)) {
        return -ENAMETOOLONG;
    }
    /* Checked before connecting: a squatter listening there must not pass for a live pool. */
    if (path_problem(path, 0, why, sizeof(why)) != NULL) {
        fprintf(stderr, "shmaccel-worker: refusing to replace %s: it %s\n", path, why);
        return -EEXIST;
    }
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return SA__ERR(errno);
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
        close(fd);
        return -EADDRINUSE;
    }
    unlink(path); /* stale: nobody answers there */
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || chmod(path, 0600) < 0
        || listen(fd, 64) < 0) {
        err = SA__ERR(errno);
        close(fd);
        return err;
    }
    return fd;
}

/* One pool thread per CPU this process may run on (taskset, cgroup cpusets): the count
 * os.sched_getaffinity and shmaccel.cpu_count() give, not the machine's online CPUs. */
static uint32_t
default_threads(void)
{
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
                                                          : sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > SA_MAX_THREADS ? SA_MAX_THREADS : (uint32_t)n;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"session-fd", required_argument, NULL, 's'},
        {"name", required_argument, NULL, 'n'},
        {"threads", required_argument, NULL, 't'},
        {"max-clients", required_argument, NULL, 'm'},
        {"max-count", required_argument, NULL, 'c'},
        {"ready-fd", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sa__worker w;
    char sock_path[300] = "";
    const char *name = NULL;
    uint64_t v, session_fd = UINT64_MAX, ready_fd = UINT64_MAX;
    int listen_fd = -1, signal_fd = -1, err, opt, status = 1;
    sigset_t sigs;

    memset(&w, 0, sizeof(w));
    w.threads = default_threads();
    w.max_clients = 64;
    w.max_count = SA__DEFAULT_MAX_COUNT;
    w.ctl_fd = -1;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            err = parse_u64(optarg, 0, INT32_MAX, &session_fd);
            break;
        case 'n':
            name = optarg;
            err = 0;
            break;
        case 't':
            err = parse_u64(optarg, 1, SA_MAX_THREADS, &v);
            w.threads = (uint32_t)v;
            break;
        case 'm':
            err = parse_u64(optarg, 1, SA_MAX_CLIENTS, &v);
            w.max_clients = (uint32_t)v;
            break;
        case 'c':
            err = parse_u64(optarg, 1, SA__DEFAULT_MAX_COUNT, &w.max_count);
            break;
        case 'r':
            err = parse_u64(optarg, 0, INT32_MAX, &ready_fd);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (err < 0) {
            fprintf(stderr, "shmaccel-worker: bad option value '%s'\n", optarg);
            usage(stderr);
            return 2;
        }
    }
    if ((session_fd == UINT64_MAX) == (name == NULL)) {
        usage(stderr);
        return 2;
    }
    w.private_mode = session_fd != UINT64_MAX;
    if (w.private_mode) {
        w.max_clients = 1;
    }

    /* Signals: SIGTERM/SIGINT arrive through a signalfd in the session thread, so they must be
     * blocked in every thread, which inherit the mask from here. A private worker ignores
     * SIGINT altogether: Ctrl-C is meant for its owner, who turns it into KeyboardInterrupt
     * and keeps using the pool. A dead peer must give EPIPE, never SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if ((err = sa__guard_install()) < 0) {
        fprintf(stderr, "shmaccel-worker: SIGBUS handler: %s\n", sa_strerror(err));
        goto out;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    if (w.private_mode) {
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
    } else {
        sigaddset(&sigs, SIGINT);
    }
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (signal_fd < 0) {
        perror("shmaccel-worker: signalfd");
        goto out;
    }

    if ((err = sa__worker_init(&w)) < 0) {
        fprintf(stderr, "shmaccel-worker: cannot set up: %s\n", sa_strerror(err));
        goto out;
    }
    if (name != NULL) {
        listen_fd = listen_named(name, sock_path, sizeof(sock_path));
        if (listen_fd < 0) {
            fprintf(stderr, "shmaccel-worker: cannot listen as pool '%s': %s\n", name,
                    listen_fd == -EADDRINUSE ? "a live pool already has that name"
                                             : sa_strerror(listen_fd));
            sock_path[0] = '\0';
            goto out;
        }
    }
    if ((err = sa__pool_start(&w)) < 0) {
        fprintf(stderr, "shmaccel-worker: cannot start threads: %s\n", sa_strerror(err));
        goto out;
    }
    if (ready_fd != UINT64_MAX) {
        dprintf((int)ready_fd, "%d\n", (int)getpid());
        close((int)ready_fd);
    }
    strcpy(listen_path, sock_path);
    err = sa__serve(&w, listen_fd, w.private_mode ? (int)session_fd : -1, signal_fd, stop_listening,
                    STOP_GRACE_NS);
    /* Stopped without a signal (private session ended) or with one: either way the listener
     * goes now, if it is still there. */
    stop_listening(-1);
    listen_fd = -1;
    sock_path[0] = '\0';
    sa__pool_stop(&w);
    status = err < 0 ? 1 : 0;

out:
    if (sock_path[0] != '\0' && listen_fd >= 0) {
        unlink(sock_path);
    }
    if (listen_fd >= 0) {
        close(listen_fd);
    }
    /* The pool threads are joined: nothing uses the seats any more. */
    sa__worker_free(&w);
    if (signal_fd >= 0) {
        close(signal_fd);
    }
    return status;
}
