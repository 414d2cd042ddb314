/* client.c -- the client's session with a worker: spawn or connect, hello, info, shutdown.
 *
 * A private worker is spawned with one end of a socketpair as its descriptor 3: no name on any
 * filesystem, and the worker sees EOF the moment this process dies, however it dies. A named
 * pool is reached through its socket in the per-user runtime directory.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

#define HELLO_TIMEOUT_MS 10000
#define REAP_GRACE_MS 2000

int
sa__client_hello(sa_client *c)
{
    struct pollfd p = {.fd = c->sock, .events = POLLIN};
    sa_msg msg;
    uint64_t size;
    void *base = NULL;
    int fd = -1, r, err;

    SA__NOINTR(r, poll(&p, 1, HELLO_TIMEOUT_MS));
    if (r < 0) {
        return SA__ERR(errno);
    }
    if (r == 0) {
        return -ETIMEDOUT;
    }
    if ((err = sa__msg_recv(c->sock, &msg, &fd)) < 0) {
        return err == -ECONNRESET ? SA_EWORKERDIED : err;
    }
    if (msg.type != SA_MSG_HELLO) {
        err = SA_EPROTO;
        goto fail;
    }
    if (msg.status < 0) {
        err = msg.status;
        goto fail;
    }
    if (fd < 0) {
        err = SA_EPROTO;
        goto fail;
    }
    /* The worker is trusted no more than it must be: the size comes from fstat, and every
     * header field used to find our area is checked against it. */
    if ((err = sa__fd_size(fd, &size)) < 0) {
        goto fail;
    }
    if (size < sizeof(sa_control) || size != msg.arg64 || size > (UINT64_C(1) << 32)) {
        err = SA_EPROTO;
        goto fail;
    }
    if ((err = sa__shm_map(fd, (size_t)size, &base)) < 0) {
        goto fail;
    }
    c->ctl = base;
    c->ctl_size = (size_t)size;
    if (c->ctl->magic != SA_MAGIC || c->ctl->version != SA_PROTO_VERSION
        || c->ctl->header_size != sizeof(sa_control)
        || c->ctl->area_size != sizeof(sa_client_area)) {
        err = c->ctl->magic == SA_MAGIC ? SA_EVERSION : SA_EPROTO;
        goto fail;
    }
    c->max_clients = c->ctl->max_clients;
    c->seat = msg.arg32;
    if (c->max_clients == 0 || c->max_clients > 1024 || sa_control_size(c->max_clients) > size
        || c->seat >= c->max_clients) {
        err = SA_EPROTO;
        goto fail;
    }
    c->area = sa_control_area(c->ctl, c->seat);
    c->worker_pid = c->ctl->worker_pid;
    c->threads = c->ctl->threads;
    close(fd);
    return 0;

fail:
    if (base != NULL) {
        munmap(base, (size_t)size);
        c->ctl = NULL;
    }
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

/* Replies to our requests (arena registration) come within milliseconds from a live worker;
 * one that is stopped or wedged must not hold our allocator lock forever. */
static void
set_reply_timeout(int sock)
{
    struct timeval limit = {.tv_sec = SA__REPLY_TIMEOUT_S, .tv_usec = 0};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
}

/* Every live client, so that the child of a fork() drops them all (sa_client_forget_after_fork)
 * before any of them is touched: a client the caller forgets to hand over (kept alive only by
 * its blocks, say) would otherwise end the parent's session when the child frees it. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static sa_client *registry;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static void
registry_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
}

static void
registry_parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

/* In the child only the forking thread exists, and it holds the lock (prepare). */
static void
registry_child(void)
{
    for (sa_client *c = registry; c != NULL; c = c->registry_next) {
        sa_client_forget_after_fork(c);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void
registry_init(void)
{
    pthread_atfork(registry_prepare, registry_parent, registry_child);
}

static void
registry_add(sa_client *c)
{
    pthread_once(&registry_once, registry_init);
    pthread_mutex_lock(&registry_lock);
    c->registry_prev = NULL;
    c->registry_next = registry;
    if (registry != NULL) {
        registry->registry_prev = c;
    }
    registry = c;
    pthread_mutex_unlock(&registry_lock);
}

static void
registry_remove(sa_client *c)
{
    pthread_mutex_lock(&registry_lock);
    if (c->registry_prev != NULL) {
        c->registry_prev->registry_next = c->registry_next;
    } else {
        registry = c->registry_next;
    }
    if (c->registry_next != NULL) {
        c->registry_next->registry_prev = c->registry_prev;
    }
    pthread_mutex_unlock(&registry_lock);
}

static sa_client *
client_new(void)
{
    sa_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->sock = -1;
    c->notify_fd = -1;
    atomic_init(&c->child, -1);
    atomic_init(&c->refs, 1);
    atomic_init(&c->latency_ns, 10000);
    atomic_init(&c->hangup_checked_ns, 0);
    pthread_mutex_init(&c->lock, NULL);
    registry_add(c);
    return c;
}

/* Frees a client that never got past setup. */
static void
client_discard(sa_client *c)
{
    registry_remove(c);
    if (c->sock >= 0) {
        close(c->sock);
    }
    if (c->notify_fd >= 0) {
        close(c->notify_fd);
    }
    if (c->ctl != NULL) {
        munmap(c->ctl, c->ctl_size);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Waits for the private worker to exit, killing it after the grace period. */
static void
reap_child(sa_client *c)
{
    int status;
    pid_t r;
    pid_t child = atomic_exchange(&c->child, -1);
    if (child <= 0) {
        return;
    }
    for (int waited = 0; waited < REAP_GRACE_MS; waited += 5) {
        SA__NOINTR(r, waitpid(child, &status, WNOHANG));
        if (r != 0) {
            return;
        }
        usleep(5000);
    }
    kill(child, SIGKILL);
    SA__NOINTR(r, waitpid(child, &status, 0));
}

int
sa_client_spawn(const char *worker_path, unsigned threads, sa_client **out)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    char threads_arg[16];
    char *argv[6];
    int sv[2] = {-1, -1};
    int child_fd = -1;
    int err;
    sa_client *c;
    sigset_t none, defaults;

    if (threads > SA_MAX_THREADS) {
        return -EINVAL;
    }
    if ((c = client_new()) == NULL) {
        return -ENOMEM;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        err = SA__ERR(errno);
        goto fail;
    }
    c->sock = sv[0];
    /* Move the child's end above 3 so that the dup2 onto 3 below always makes a new,
     * inheritable descriptor. Every descriptor of ours stays CLOEXEC: a worker or any other
     * child must never hold our end, or it would keep the session alive after we die. */
    child_fd = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    if (child_fd < 0) {
        err = SA__ERR(errno);
        goto fail;
    }
    snprintf(threads_arg, sizeof(threads_arg), "%u", threads);
    argv[0] = (char *)worker_path;
    argv[1] = "--session-fd";
    argv[2] = "3";
    argv[3] = threads > 0 ? "--threads" : NULL;
    argv[4] = threads > 0 ? threads_arg : NULL;
    argv[5] = NULL;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child_fd, 3);
    posix_spawnattr_init(&attr);
    /* Its own process group: a Ctrl-C at the terminal is for us, not for the worker. */
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK
                                        | POSIX_SPAWN_SETSIGDEF);
    pid_t child = -1;
    err = posix_spawn(&child, worker_path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(child_fd);
    if (err != 0) {
        err = SA__ERR(err);
        goto fail;
    }
    atomic_store(&c->child, child);
    if ((err = sa__client_hello(c)) < 0) {
        goto fail;
    }
    set_reply_timeout(c->sock);
    if ((err = sa__arena_prime(c)) < 0) {
        goto fail;
    }
    *out = c;
    return 0;

fail:
    if (c->sock >= 0) {
        shutdown(c->sock, SHUT_RDWR);
    }
    reap_child(c);
    client_discard(c);
    return err;
}

int
sa_client_connect(const char *socket_path, sa_client **out)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    sa_client *c;
    uint32_t peer_uid;
    int32_t peer_pid;
    int err, r;

    if (strlen(socket_path) >= sizeof(addr.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, socket_path);
    if ((c = client_new()) == NULL) {
        return -ENOMEM;
    }
    c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->sock < 0) {
        err = SA__ERR(errno);
        goto fail;
    }
    SA__NOINTR(r, connect(c->sock, (struct sockaddr *)&addr, sizeof(addr)));
    if (r < 0) {
        /* A socket file nobody listens on is a pool that died: the same as no pool. */
        err = (errno == ECONNREFUSED || errno == ENOENT) ? -ENOENT : SA__ERR(errno);
        goto fail;
    }
    /* Before a byte is read or sent: a listener of another user (a socket squatted at the
     * pool's path) would otherwise receive our arenas, and could hand us its own segment. */
    if ((err = sa__peer_cred(c->sock, &peer_uid, &peer_pid)) < 0) {
        goto fail;
    }
    if (peer_uid != (uint32_t)geteuid()) {
        err = -EPERM;
        goto fail;
    }
    if ((err = sa__client_hello(c)) < 0) {
        goto fail;
    }
    set_reply_timeout(c->sock);
    if ((err = sa__arena_prime(c)) < 0) {
        goto fail;
    }
    *out = c;
    return 0;

fail:
    client_discard(c);
    return err;
}

int
sa__client_check_alive(sa_client *c)
{
    if (atomic_load_explicit(&c->dead, memory_order_relaxed)) {
        return 1;
    }
    if (sa__sock_hung_up(c->sock)) {
        atomic_store(&c->dead, 1);
        /* A private worker that died is our child: reap it now rather than leave a zombie
         * until the client is closed (which blocks that may live long can delay). Whoever
         * gets the pid out of c->child first reaps it. */
        pid_t child = atomic_exchange(&c->child, -1);
        if (child > 0) {
            int status;
            pid_t r;
            SA__NOINTR(r, waitpid(child, &status, WNOHANG));
            if (r == 0) {
                atomic_store(&c->child, child); /* not exited yet: leave it to shutdown */
            }
        }
        return 1;
    }
    return 0;
}

int
sa__client_unusable(sa_client *c)
{
    int closed = atomic_load(&c->closed);
    if (atomic_load(&c->forked) || atomic_load_explicit(&c->area->stopping, memory_order_relaxed)) {
        return SA_ECLOSED;
    }
    if (closed != 0) {
        return closed == SA__CLOSED_DEAD ? SA_EWORKERDIED : SA_ECLOSED;
    }
    return atomic_load_explicit(&c->dead, memory_order_relaxed) ? SA_EWORKERDIED : 0;
}

int
sa_client_dead(sa_client *c)
{
    if (atomic_load(&c->closed) || atomic_load(&c->forked) || atomic_load(&c->dead)) {
        return 1;
    }
    /* A poll() per call would cost more than a small request; once a millisecond is enough
     * for a caller deciding whether to start a new worker. It runs even for a stopping pool:
     * noticing the hang-up is what fails the requests still waiting (sa_wait). */
    uint64_t now = sa__now_ns();
    uint64_t last = atomic_load_explicit(&c->hangup_checked_ns, memory_order_relaxed);
    if (now - last >= 1000000) {
        atomic_store_explicit(&c->hangup_checked_ns, now, memory_order_relaxed);
        if (sa__client_check_alive(c)) {
            return 1;
        }
    }
    return atomic_load_explicit(&c->area->stopping, memory_order_relaxed) != 0;
}

static uint32_t
area_in_flight(const sa_client_area *area)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
        uint64_t word = atomic_load_explicit(&area->slots[i].state, memory_order_relaxed);
        n += sa_slot_word_state(word) != SA_SLOT_FREE;
    }
    return n;
}

int
sa_client_info(sa_client *c, sa_worker_info *info)
{
    if (atomic_load(&c->forked) || atomic_load(&c->closed)) {
        return SA_ECLOSED;
    }
    memset(info, 0, sizeof(*info));
    info->worker_pid = c->worker_pid;
    info->threads = c->threads;
    info->seat = c->seat;
    info->clients = atomic_load_explicit(&c->ctl->clients, memory_order_relaxed);
    info->requests = atomic_load_explicit(&c->ctl->requests, memory_order_relaxed);
    info->elements = atomic_load_explicit(&c->ctl->elements, memory_order_relaxed);
    info->errors = atomic_load_explicit(&c->ctl->errors, memory_order_relaxed);
    info->my_requests = atomic_load_explicit(&c->area->requests, memory_order_relaxed);
    info->my_elements = atomic_load_explicit(&c->area->elements, memory_order_relaxed);
    info->my_errors = atomic_load_explicit(&c->area->errors, memory_order_relaxed);
    info->my_in_flight = area_in_flight(c->area);
    info->uptime_s = (double)(sa__now_ns() - c->ctl->start_ns) / 1e9;
    if (info->uptime_s > 0 && c->threads > 0) {
        double busy = (double)atomic_load_explicit(&c->ctl->busy_ns, memory_order_relaxed) / 1e9;
        info->busy_pct = 100.0 * busy / (info->uptime_s * c->threads);
    }
    /* Once the worker is gone, the verdict calls get: closed for a pool that was stopped,
     * else dead. */
    return sa__client_check_alive(c) ? sa__client_unusable(c) : 0;
}

int
sa_client_seats(sa_client *c, sa_seat_info *out, uint32_t max)
{
    uint32_t n = 0;
    if (atomic_load(&c->forked) || atomic_load(&c->closed)) {
        return SA_ECLOSED;
    }
    /* max_clients is our private copy from the hello, checked against the segment size. */
    for (uint32_t s = 0; s < c->max_clients && n < max; s++) {
        sa_client_area *area = sa_control_area(c->ctl, s);
        if (!atomic_load_explicit(&area->attached, memory_order_relaxed)) {
            continue;
        }
        out[n] = (sa_seat_info){
            .seat = s,
            .pid = atomic_load_explicit(&area->client_pid, memory_order_relaxed),
            .requests = atomic_load_explicit(&area->requests, memory_order_relaxed),
            .elements = atomic_load_explicit(&area->elements, memory_order_relaxed),
            .errors = atomic_load_explicit(&area->errors, memory_order_relaxed),
            .in_flight = area_in_flight(area),
        };
        n++;
    }
    return (int)n;
}

void
sa_client_shutdown(sa_client *c)
{
    int expected = 0;
    /* The verdict is taken once, here: a death noticed after the close (our own shutdown()
     * below hangs the socket up too) does not turn a closed pool into a dead one. */
    int how = atomic_load(&c->dead) ? SA__CLOSED_DEAD : SA__CLOSED;
    if (!atomic_compare_exchange_strong(&c->closed, &expected, how)) {
        return;
    }
    if (atomic_load(&c->forked)) {
        return;
    }
    /* shutdown, not close: other threads may still poll this descriptor, and a closed number
     * could be reused by an unrelated file before they notice. It is closed in the free. */
    shutdown(c->sock, SHUT_RDWR);
    reap_child(c);
}

void
sa_client_forget_after_fork(sa_client *c)
{
    /* Only the forking thread exists in the child, and another parent thread may have held
     * c->lock at the fork: take no lock, free nothing, just stop using the parent's session.
     * Closing our copy of the socket does not end the parent's session (it holds its own). */
    atomic_store(&c->forked, 1);
    atomic_store(&c->closed, SA__CLOSED);
    close(c->sock);
    c->sock = -1;
    if (c->notify_fd >= 0) {
        close(c->notify_fd);
        c->notify_fd = -1;
    }
    atomic_store(&c->child, -1);
}

void
sa__client_unref(sa_client *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (atomic_load(&c->forked)) {
        return; /* the child leaks the parent's state rather than touch a copied lock */
    }
    for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
        /* Deferred references of abandoned slots hold c, so none can be left here. */
        c->slots[i].in = c->slots[i].out = NULL;
    }
    sa__arenas_free(c);
    client_discard(c);
}

void
sa_client_close(sa_client *c)
{
    sa_client_shutdown(c);
    /* Drop the references held for requests abandoned while running. The worker may still be
     * finishing one, but a closed client makes no new blocks, so the memory it writes can
     * never be handed to another request. */
    for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
        sa__cslot *cs = &c->slots[i];
        if (cs->abandoned) {
            sa_block *in = cs->in, *out = cs->out;
            cs->in = cs->out = NULL;
            cs->abandoned = 0;
            if (in != NULL) {
                sa_block_unref(in);
            }
            if (out != NULL) {
                sa_block_unref(out);
            }
        }
    }
    sa__client_unref(c);
}
