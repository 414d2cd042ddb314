/* test_pool_script.c -- C clients against pools run by scripts/shmaccel-pool: start prints the
 * worker's pid, clients attach and compute, two clients share one worker, stop ends the pool.
 *
 * Each case starts its own pool under a unique name and tears it down (stop, then SIGKILL if
 * need be, then its socket and log) whatever its checks said; a failed case prints the pool's
 * log first. A crash, Ctrl-C or the watchdog alarm kills the pool from a signal handler
 * instead, so no run leaves a worker behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctest.h"
#include "shmaccel.h"

extern char **environ;

#define WAIT_NS INT64_C(10000000000) /* no request in these tests takes near 10 s */
#define WATCHDOG_S 120               /* per case: a hung case is killed, with its pool */
#define COUNT 100003                 /* odd, so the pool's chunks do not divide it evenly */

typedef struct {
    char name[64];
    char socket_path[256];
    char log_path[300];
    pid_t pid; /* the worker, as printed by `start`; -1 until known */
    int failed_checks_before;
} test_pool;

/* The pool of the running case, for the signal handler. Set before `start` runs. */
static test_pool *volatile live_pool;

/* Kills the running case's pool and removes its socket and log, then dies of `sig` as it
 * would have. Only async-signal-safe calls here. */
static void
kill_pool_and_die(int sig)
{
    test_pool *p = live_pool;
    static const char msg[] = "test_pool_script: killed by a signal; killing its pool\n";

    if (p != NULL) {
        if (p->pid > 0) {
            kill(p->pid, SIGKILL);
        }
        unlink(p->socket_path);
        unlink(p->log_path);
    }
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Installs kill_pool_and_die for the fatal signals nobody else handles (a sanitizer's own
 * SIGSEGV handler is left alone: it reports, then aborts, which we do catch). */
static void
install_signal_handlers(void)
{
    static const int signals[] = {SIGABRT, SIGSEGV, SIGBUS,  SIGFPE,
                                  SIGILL,  SIGINT,  SIGTERM, SIGALRM};
    static int installed;

    if (installed) {
        return;
    }
    installed = 1;
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        struct sigaction old, act = {.sa_handler = kill_pool_and_die};
        if (sigaction(signals[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            sigaction(signals[i], &act, NULL);
        }
    }
}

/* scripts/shmaccel-pool of the tree this binary was built in: the binary is
 * <root>/<build dir>/tests/test_pool_script. Falls back to the current directory. */
static const char *
script_path(void)
{
    static char path[4096];
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (path[0] != '\0') {
        return path;
    }
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 3; up++) { /* drop the file name, tests/, the build dir */
            char *slash = strrchr(exe, '/');
            if (slash == NULL) {
                break;
            }
            *slash = '\0';
        }
        snprintf(path, sizeof(path), "%s/scripts/shmaccel-pool", exe);
        if (access(path, R_OK) == 0) {
            return path;
        }
    }
    snprintf(path, sizeof(path), "scripts/shmaccel-pool");
    return path;
}

/* Runs `$PYTHON (default python3) scripts/shmaccel-pool ARGS...` with our environment (so
 * SHMACCEL_WORKER reaches it), collecting its stdout into out (NUL-terminated, truncated to
 * fit); its stderr goes to ours. Returns its exit status, or -1 if it could not run or died of
 * a signal. */
static int
run_cli(char *out, size_t out_len, const char *const args[])
{
    const char *python = getenv("PYTHON") != NULL ? getenv("PYTHON") : "python3";
    char *argv[16];
    size_t argc = 0, used = 0;
    posix_spawn_file_actions_t actions;
    int pipe_fds[2] = {-1, -1}, status = 0, result = -1;
    pid_t pid;

    argv[argc++] = (char *)python;
    argv[argc++] = (char *)script_path();
    for (size_t i = 0; args[i] != NULL && argc < 15; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    out[0] = '\0';
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        return -1;
    }
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    if ((errno = posix_spawnp(&pid, python, &actions, NULL, argv, environ)) != 0) {
        fprintf(stderr, "  cannot run %s: %s\n", python, strerror(errno));
        goto out;
    }
    close(pipe_fds[1]);
    pipe_fds[1] = -1;
    /* EOF comes when the script exits: the worker it starts gets a log file as stdout, not
     * our pipe, so its lifetime does not matter here. */
    for (;;) {
        char chunk[256];
        ssize_t n = read(pipe_fds[0], chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        for (ssize_t i = 0; i < n && used + 1 < out_len; i++) {
            out[used++] = chunk[i];
        }
    }
    out[used] = '\0';
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) {
        result = WEXITSTATUS(status);
    }
out:
    posix_spawn_file_actions_destroy(&actions);
    if (pipe_fds[0] >= 0) {
        close(pipe_fds[0]);
    }
    if (pipe_fds[1] >= 0) {
        close(pipe_fds[1]);
    }
    return result;
}

/* Whether `pid` is a live process (a zombie counts as gone: the worker is not our child, so
 * reaping it is someone else's business). */
static int
pid_alive(pid_t pid)
{
    char path[64], stat[512];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    n = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    stat[n] = '\0';
    char *paren = strrchr(stat, ')'); /* the command name may itself contain ')' */
    return paren != NULL && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

static int
pid_gone_within(pid_t pid, int ms)
{
    for (int waited = 0; pid_alive(pid); waited += 10) {
        if (waited >= ms) {
            return 0;
        }
        usleep(10000);
    }
    return 1;
}

/* Starts a pool with `shmaccel-pool start NAME --threads 2 --log LOG` and records the pid it
 * prints. Returns 0, or -1 (with a message) if the script failed; p is set up for
 * pool_teardown either way. */
static int
pool_start(test_pool *p)
{
    static int serial;
    char out[256], *end;
    long pid;

    memset(p, 0, sizeof(*p));
    p->pid = -1;
    p->failed_checks_before = ctest_failed_checks;
    snprintf(p->name, sizeof(p->name), "ctest-script-%d-%d", (int)getpid(), ++serial);
    snprintf(p->log_path, sizeof(p->log_path), "/tmp/shmaccel-%s.log", p->name);
    if (sa_pool_socket_path(p->name, p->socket_path, sizeof(p->socket_path)) < 0) {
        fprintf(stderr, "  no socket path for %s\n", p->name);
        return -1;
    }
    install_signal_handlers();
    live_pool = p;
    alarm(WATCHDOG_S);

    const char *args[] = {"start", p->name, "--threads", "2", "--log", p->log_path, NULL};
    int status = run_cli(out, sizeof(out), args);
    if (status != 0) {
        fprintf(stderr, "  %s start %s: exit status %d\n", script_path(), p->name, status);
        return -1;
    }
    errno = 0;
    pid = strtol(out, &end, 10);
    if (errno != 0 || end == out || (*end != '\n' && *end != '\0') || pid <= 0) {
        fprintf(stderr, "  start printed '%s', not a pid\n", out);
        return -1;
    }
    p->pid = (pid_t)pid;
    return 0;
}

/* Stops the pool however it can: `shmaccel-pool stop` if it still runs, SIGKILL if that did
 * not end it; removes its socket and log (printing the log first if the case failed). */
static void
pool_teardown(test_pool *p)
{
    char out[256];

    /* Without a pid (start failed half-way), a socket under our unique name is ours. */
    if (p->pid > 0 ? pid_alive(p->pid) : access(p->socket_path, F_OK) == 0) {
        const char *args[] = {"stop", p->name, "--timeout", "5", NULL};
        run_cli(out, sizeof(out), args);
    }
    if (p->pid > 0 && !pid_gone_within(p->pid, 2000)) {
        kill(p->pid, SIGKILL);
        pid_gone_within(p->pid, 5000);
    }
    unlink(p->socket_path); /* the pool's own name: nobody else's socket */
    FILE *log = fopen(p->log_path, "r");
    if (log != NULL && ctest_failed_checks != p->failed_checks_before) {
        char line[512];
        fprintf(stderr, "  pool log %s:\n", p->log_path);
        while (fgets(line, sizeof(line), log) != NULL) {
            fprintf(stderr, "    %s", line);
        }
    }
    if (log != NULL) {
        fclose(log);
    }
    unlink(p->log_path);
    alarm(0);
    live_pool = NULL;
}

static sa_client *
attach(const test_pool *p)
{
    sa_client *c = NULL;
    int err = sa_client_connect(p->socket_path, &c);
    if (err < 0) {
        fprintf(stderr, "  connect %s: %s\n", p->socket_path, sa_strerror(err));
        return NULL;
    }
    return c;
}

/* Submits op from `in` to `out` and waits (EINTR: again), never longer than WAIT_NS: a
 * request that is still running then is cancelled and -ETIMEDOUT returned. */
static int
run_op(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in, sa_block *out)
{
    sa_ticket ticket;
    int err = sa_submit(c, op, dtype, count, in, out, WAIT_NS, &ticket);

    if (err < 0) {
        return err;
    }
    do {
        err = sa_wait(c, &ticket, WAIT_NS);
    } while (err == -EINTR);
    if (err == -ETIMEDOUT) {
        sa_cancel(c, &ticket);
    }
    return err;
}

/* Runs op on COUNT int64 and COUNT float64 elements through client c and checks every result;
 * returns the number of wrong elements, counting all COUNT of a call that failed. */
static uint64_t
check_op(sa_client *c, uint32_t op)
{
    sa_block *in = NULL, *out = NULL;
    uint64_t wrong = 0;
    int err;

    if ((err = sa_block_alloc(c, COUNT * 8, &in)) < 0
        || (err = sa_block_alloc(c, COUNT * 8, &out)) < 0) {
        fprintf(stderr, "  block alloc: %s\n", sa_strerror(err));
        wrong = 2 * COUNT;
        goto out;
    }

    int64_t *ix = sa_block_data(in), *iy = sa_block_data(out);
    for (int64_t i = 0; i < COUNT; i++) {
        ix[i] = i - COUNT / 2;
    }
    err = run_op(c, op, SA_INT64, COUNT, in, out);
    if (err < 0) {
        fprintf(stderr, "  %s int64: %s\n", sa_op_name(op), sa_strerror(err));
        wrong += COUNT;
    } else {
        for (int64_t i = 0; i < COUNT; i++) {
            int64_t x = i - COUNT / 2;
            wrong += iy[i] != (op == SA_OP_DOUBLE ? x * 2 : x * x);
        }
    }

    double *fx = sa_block_data(in);
    for (int64_t i = 0; i < COUNT; i++) {
        fx[i] = (double)(i - COUNT / 2) * 0.25;
    }
    err = run_op(c, op, SA_FLOAT64, COUNT, in, in); /* in place, this time */
    if (err < 0) {
        fprintf(stderr, "  %s float64: %s\n", sa_op_name(op), sa_strerror(err));
        wrong += COUNT;
    } else {
        for (int64_t i = 0; i < COUNT; i++) {
            double x = (double)(i - COUNT / 2) * 0.25;
            wrong += fx[i] != (op == SA_OP_DOUBLE ? x * 2 : x * x);
        }
    }

out:
    if (in != NULL) {
        sa_block_unref(in);
    }
    if (out != NULL) {
        sa_block_unref(out);
    }
    return wrong;
}

static void
pool_script_start_prints_the_worker_pid(void)
{
    test_pool p;
    sa_client *c = NULL;
    sa_worker_info info;

    CHECK_EQ(pool_start(&p), 0);
    if (p.pid > 0) {
        CHECK(pid_alive(p.pid));
        /* No retry: start returns only once the pool accepts clients. */
        CHECK((c = attach(&p)) != NULL);
    }
    if (c != NULL) {
        CHECK_EQ(sa_client_info(c, &info), 0);
        CHECK_EQ(info.worker_pid, p.pid);
        CHECK_EQ(info.threads, 2);
        CHECK_EQ(info.clients, 1);
        sa_client_close(c);
    }
    pool_teardown(&p);
}

static void
pool_script_pool_squares_and_doubles_int64_and_float64(void)
{
    test_pool p;
    sa_client *c = NULL;
    sa_worker_info info;

    CHECK_EQ(pool_start(&p), 0);
    if (p.pid > 0) {
        CHECK((c = attach(&p)) != NULL);
    }
    if (c != NULL) {
        CHECK_EQ(check_op(c, SA_OP_SQUARE), 0);
        CHECK_EQ(check_op(c, SA_OP_DOUBLE), 0);
        CHECK_EQ(sa_client_info(c, &info), 0);
        CHECK_EQ(info.worker_pid, p.pid);
        CHECK_EQ(info.my_requests, 4);
        CHECK_EQ(info.my_elements, 4 * COUNT);
        CHECK_EQ(info.errors, 0);
        sa_client_close(c);
    }
    pool_teardown(&p);
}

static void
pool_script_two_clients_in_one_process_share_the_worker(void)
{
    test_pool p;
    sa_client *a = NULL, *b = NULL;
    sa_worker_info ia, ib;

    CHECK_EQ(pool_start(&p), 0);
    if (p.pid > 0) {
        CHECK((a = attach(&p)) != NULL);
        CHECK((b = attach(&p)) != NULL);
    }
    if (a != NULL && b != NULL) {
        CHECK_EQ(sa_client_info(a, &ia), 0);
        CHECK_EQ(sa_client_info(b, &ib), 0);
        CHECK_EQ(ia.worker_pid, p.pid);
        CHECK_EQ(ib.worker_pid, p.pid);
        CHECK_EQ(ia.clients, 2);
        CHECK_EQ(ib.clients, 2);
        CHECK(ia.seat != ib.seat);
        /* Both sessions compute, each in its own arenas. */
        CHECK_EQ(check_op(a, SA_OP_SQUARE), 0);
        CHECK_EQ(check_op(b, SA_OP_DOUBLE), 0);
        CHECK_EQ(sa_client_info(a, &ia), 0);
        CHECK_EQ(ia.my_requests, 2);
        CHECK_EQ(ia.requests, 4); /* the pool's total counts b's requests too */
    }
    if (a != NULL) {
        sa_client_close(a);
    }
    if (b != NULL) {
        sa_client_close(b);
    }
    pool_teardown(&p);
}

static void
pool_script_stop_ends_the_pool(void)
{
    test_pool p;
    sa_client *c = NULL, *late = NULL;
    sa_block *x = NULL;
    sa_ticket ticket;
    char out[256];

    CHECK_EQ(pool_start(&p), 0);
    if (p.pid > 0) {
        CHECK((c = attach(&p)) != NULL);
    }
    if (c != NULL) {
        CHECK_EQ(sa_block_alloc(c, 8, &x), 0);
    }
    if (x != NULL) {
        *(double *)sa_block_data(x) = 1.5;
        CHECK_EQ(run_op(c, SA_OP_SQUARE, SA_FLOAT64, 1, x, x), 0);
        CHECK(*(double *)sa_block_data(x) == 2.25);
    }

    /* A client still attached does not keep the pool alive: stop returns once it is gone. */
    const char *args[] = {"stop", p.name, NULL};
    CHECK_EQ(run_cli(out, sizeof(out), args), 0);
    if (p.pid > 0) {
        CHECK(pid_gone_within(p.pid, 1000));
    }
    CHECK(access(p.socket_path, F_OK) != 0);
    CHECK_EQ(sa_client_connect(p.socket_path, &late), -ENOENT);
    CHECK(late == NULL);
    if (x != NULL) {
        /* The old session learns it is over and refuses new work. */
        CHECK_EQ(sa_client_dead(c), 1);
        int err = sa_submit(c, SA_OP_SQUARE, SA_FLOAT64, 1, x, x, 0, &ticket);
        CHECK_EQ(err, SA_ECLOSED);
        sa_block_unref(x);
    }
    if (c != NULL) {
        sa_client_close(c);
    }
    pool_teardown(&p);
}

CTEST_MAIN("pool_script", CTEST_CASE(pool_script_start_prints_the_worker_pid),
           CTEST_CASE(pool_script_pool_squares_and_doubles_int64_and_float64),
           CTEST_CASE(pool_script_two_clients_in_one_process_share_the_worker),
           CTEST_CASE(pool_script_stop_ends_the_pool))
