/* client_block.c -- the client's arenas and the blocks carved out of them.
 *
 * Arenas are shared memory segments owned by this process, mapped once and registered once
 * with the worker (their descriptor travels over the session socket), then reused for the
 * session's life: a call never does shm_open or mmap. A first-fit allocator over a sorted list
 * of free extents hands out 64-byte aligned blocks. An arena left empty is kept for reuse
 * while the total stays under a cache limit; beyond it, once it has stayed empty for 2 s
 * (or at once when /dev/shm lacks room for a new one), it is released (unmapped here,
 * dropped by the worker).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define BLOCK_ALIGN 64
#define ARENA_MIN_BYTES (16u << 20)
#define ARENA_GROW_MAX (UINT64_C(1) << 30)
#define ARENA_CACHE_BYTES (UINT64_C(1) << 30)     /* empty arenas kept for reuse; beyond it, */
#define ARENA_IDLE_NS (UINT64_C(2) * 1000000000u) /* those empty this long are released */
#define ARENA_ROUND (2u << 20)

static size_t
round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* Inserts the free extent [offset, offset + length) and merges it with its neighbours. */
static int
extent_insert(sa__carena *a, size_t offset, size_t length)
{
    size_t i = 0;
    while (i < a->nfree && a->free[i].offset < offset) {
        i++;
    }
    int merge_prev = i > 0 && a->free[i - 1].offset + a->free[i - 1].length == offset;
    int merge_next = i < a->nfree && offset + length == a->free[i].offset;
    if (merge_prev && merge_next) {
        a->free[i - 1].length += length + a->free[i].length;
        memmove(&a->free[i], &a->free[i + 1], (a->nfree - i - 1) * sizeof(*a->free));
        a->nfree--;
    } else if (merge_prev) {
        a->free[i - 1].length += length;
    } else if (merge_next) {
        a->free[i].offset = offset;
        a->free[i].length += length;
    } else {
        if (a->nfree == a->capfree) {
            size_t cap = a->capfree ? a->capfree * 2 : 16;
            sa__extent *p = realloc(a->free, cap * sizeof(*p));
            if (p == NULL) {
                return -ENOMEM;
            }
            a->free = p;
            a->capfree = cap;
        }
        memmove(&a->free[i + 1], &a->free[i], (a->nfree - i) * sizeof(*a->free));
        a->free[i] = (sa__extent){offset, length};
        a->nfree++;
    }
    return 0;
}

/* First fit. Returns the offset, or SIZE_MAX when the arena has no room. */
static size_t
extent_take(sa__carena *a, size_t length)
{
    for (size_t i = 0; i < a->nfree; i++) {
        if (a->free[i].length >= length) {
            size_t offset = a->free[i].offset;
            a->free[i].offset += length;
            a->free[i].length -= length;
            if (a->free[i].length == 0) {
                memmove(&a->free[i], &a->free[i + 1], (a->nfree - i - 1) * sizeof(*a->free));
                a->nfree--;
            }
            return offset;
        }
    }
    return SIZE_MAX;
}

/* Waits until the session socket has something to read, at most until `deadline_ns` and
 * never longer than the reply limit. 0, -ETIMEDOUT (also when the deadline has passed and
 * nothing is there), -EINTR (a signal: the caller's chance to run its handlers). */
static int
reply_ready(int sock, uint64_t deadline_ns)
{
    struct pollfd p = {.fd = sock, .events = POLLIN};
    uint64_t now = sa__now_ns(), limit = now + (uint64_t)SA__REPLY_TIMEOUT_S * 1000000000u;
    uint64_t until = deadline_ns < limit ? deadline_ns : limit;
    int ms = until <= now ? 0 : (int)((until - now + 999999) / 1000000);
    int r = poll(&p, 1, ms);
    if (r < 0) {
        return errno == EINTR ? -EINTR : SA__ERR(errno);
    }
    return r == 0 ? -ETIMEDOUT : 0;
}

/* Reads replies until the one to request `seq` (replies to requests given up on earlier come
 * first and are skipped) and stores its status. Returns 0, -ETIMEDOUT or -EINTR (the reply
 * is still to come), SA_EWORKERDIED or SA_EPROTO. Under c->lock. */
static int
await_reply(sa_client *c, uint64_t seq, uint64_t deadline_ns, int *status)
{
    sa_msg reply;
    int rfd = -1, err;

    for (;;) {
        if ((err = reply_ready(c->sock, deadline_ns)) < 0) {
            return err;
        }
        /* Readable: recv does not wait (SO_RCVTIMEO stays as a backstop all the same). */
        if ((err = sa__msg_recv(c->sock, &reply, &rfd)) < 0) {
            if (err == -EAGAIN || err == -EWOULDBLOCK || err == -EINTR) {
                continue;
            }
            atomic_store(&c->dead, 1);
            return SA_EWORKERDIED;
        }
        if (rfd >= 0) {
            close(rfd);
            rfd = -1;
        }
        if (reply.type == SA_MSG_STOPPING) {
            continue; /* the seat's stopping flag says it too */
        }
        if (reply.type != SA_MSG_REPLY) {
            atomic_store(&c->dead, 1); /* we no longer know what the worker holds */
            return SA_EPROTO;
        }
        if (reply.arg64 == seq) {
            *status = reply.status;
            return 0;
        }
    }
}

static void arena_unmap(sa__carena *a);
static void arena_install(sa_client *c, sa__carena *a);

/* Waits until `deadline_ns` for the reply to a request given up on earlier, if any, and
 * settles it: an arena registration given up on is installed if the worker accepted it, else
 * unmapped. 0 once none is due; else as await_reply. Under c->lock. */
static int
settle_unanswered(sa_client *c, uint64_t deadline_ns)
{
    sa__carena *a;
    int err, status;
    if (c->unanswered == 0) {
        return 0;
    }
    if ((err = await_reply(c, c->unanswered, deadline_ns, &status)) < 0) {
        return err;
    }
    c->unanswered = 0;
    a = c->pending;
    c->pending = NULL;
    if (a != NULL && status == 0) {
        arena_install(c, a);
    } else if (a != NULL) {
        arena_unmap(a);
    }
    return 0;
}

/* Sends a request and waits for its reply until `deadline_ns`, under c->lock. Returns the
 * reply's status, -ETIMEDOUT or -EINTR when the worker did not answer in time (the session
 * goes on: the late reply, recognised by its sequence number, is settled by the next request
 * before it sends anything, so that a stopped worker never has more than one request queued
 * and the socket never fills), SA_EWORKERDIED, SA_EPROTO. */
static int
request(sa_client *c, sa_msg *msg, int fd, uint64_t deadline_ns)
{
    int err, status;

    if ((err = settle_unanswered(c, deadline_ns)) < 0) {
        return err;
    }
    msg->arg64 = ++c->request_seq;
    if ((err = sa__msg_send(c->sock, msg, fd)) < 0) {
        atomic_store(&c->dead, 1);
        return SA_EWORKERDIED;
    }
    if ((err = await_reply(c, msg->arg64, deadline_ns, &status)) < 0) {
        if (err == -ETIMEDOUT || err == -EINTR) {
            c->unanswered = msg->arg64;
        }
        return err;
    }
    return status;
}

int
sa_client_notify_fd(sa_client *c)
{
    sa_msg msg = {.magic = SA_MAGIC, .type = SA_MSG_NOTIFY};
    int fd, err, pair[2];

    if ((err = sa__client_unusable(c)) < 0) {
        return err;
    }
    pthread_mutex_lock(&c->lock);
    if (c->notify_fd >= 0) {
        fd = c->notify_fd;
        goto out;
    }
    /* A socket pair, not an eventfd: the worker signals its end with send(MSG_DONTWAIT),
     * which never blocks whatever the holder of the other end does with its flags. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0) {
        fd = SA__ERR(errno);
        goto out;
    }
    /* One-way, like ARENA_DEL: registering never waits for the worker. A request that
     * completes before the worker has read this message is simply not signalled; callers
     * look at their tickets now and then anyway (see shmaccel/_async.py). */
    err = sa__msg_send(c->sock, &msg, pair[1]);
    close(pair[1]); /* the worker holds its own copy now */
    if (err < 0) {
        close(pair[0]);
        fd = err == -EPIPE ? SA_EWORKERDIED : err;
        goto out;
    }
    fd = c->notify_fd = pair[0];
out:
    pthread_mutex_unlock(&c->lock);
    return fd;
}

static void
arena_unmap(sa__carena *a)
{
    munmap(a->base, a->size);
    free(a->free);
    free(a);
}

/* Counts `a` among the session's arenas (registered with the worker). Under c->lock. */
static void
arena_install(sa_client *c, sa__carena *a)
{
    a->idle_since_ns = sa__now_ns();
    c->arenas[a->id] = a;
    c->narenas++;
    c->mapped += a->size;
}

/* Creates an arena of at least `need` bytes and registers it, waiting for the worker's reply
 * until `deadline_ns` at most; past the deadline nothing is made. A registration the caller
 * gives up on (-ETIMEDOUT, -EINTR) keeps its arena pending: the late reply installs it, so a
 * caller retrying after each signal does not make a new arena each time. Called with c->lock
 * held and no registration pending (settle_unanswered first). */
static int
arena_create(sa_client *c, size_t need, uint64_t deadline_ns, sa__carena **out)
{
    sa_msg msg = {.magic = SA_MAGIC, .type = SA_MSG_ARENA_ADD};
    sa__carena *a = NULL;
    uint32_t id;
    size_t size;
    void *base;
    int fd, err;

    if (c->unanswered != 0 || (deadline_ns != UINT64_MAX && sa__now_ns() >= deadline_ns)) {
        return -ETIMEDOUT;
    }
    for (id = 0; id < SA__MAX_ARENAS && c->arenas[id] != NULL; id++) {
    }
    if (id == SA__MAX_ARENAS) {
        return -ENOMEM;
    }
    /* Grow geometrically so that a session doing ever larger calls makes few arenas. */
    size = c->mapped < ARENA_GROW_MAX ? (c->mapped > ARENA_MIN_BYTES ? c->mapped : ARENA_MIN_BYTES)
                                      : (size_t)ARENA_GROW_MAX;
    if (size < need) {
        size = round_up(need, ARENA_ROUND);
    }
    fd = sa__shm_create("arena", size);
    if (fd < 0) {
        return fd;
    }
    if ((err = sa__shm_map(fd, size, &base)) < 0) {
        close(fd);
        return err;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL || extent_insert(a, 0, size) < 0) {
        free(a);
        munmap(base, size);
        close(fd);
        return -ENOMEM;
    }
    a->id = id;
    a->base = base;
    a->size = size;
    msg.arg32 = id;
    msg.arg64 = size;
    sa__fault_point("client-arena-add");
    err = request(c, &msg, fd, deadline_ns);
    /* The worker holds its own descriptor (or mapping) now; ours is no longer needed. */
    close(fd);
    if (err == -ETIMEDOUT || err == -EINTR) {
        c->pending = a; /* its id stays taken: arena_create runs only once it is settled */
        return err;
    }
    if (err < 0) {
        arena_unmap(a);
        return err;
    }
    sa__fault_point("client-arena-registered");
    arena_install(c, a);
    *out = a;
    return 0;
}

/* A round trip after which the worker has handled every message sent before it (ARENA_DEL
 * included: the room of released arenas is free in /dev/shm again). Under c->lock. */
static int
sync_with_worker(sa_client *c, uint64_t deadline_ns)
{
    sa_msg msg = {.magic = SA_MAGIC, .type = SA_MSG_SYNC};
    return request(c, &msg, -1, deadline_ns);
}

/* Releases arena `a` (empty: no block lives in it, so no request uses it). Called with
 * c->lock held. */
static void
arena_release(sa_client *c, sa__carena *a)
{
    sa_msg msg = {.magic = SA_MAGIC, .type = SA_MSG_ARENA_DEL, .arg32 = a->id};
    c->arenas[a->id] = NULL;
    c->narenas--;
    c->mapped -= a->size;
    /* Unmapping our side is safe now. The worker unmaps its side when the message arrives.
     * ARENA_DEL has no reply, so that this path (a Python object's dealloc, with the GIL
     * held) never waits for a stopped worker. */
    if (!atomic_load(&c->dead) && sa__msg_send(c->sock, &msg, -1) < 0) {
        atomic_store(&c->dead, 1);
    }
    arena_unmap(a);
}

/* Releases the arenas that have been empty for ARENA_IDLE_NS while more than the cache limit
 * is mapped (all empty ones when `all`: /dev/shm is full and a new arena needs the room);
 * returns how many.
 * An arena that just emptied is kept a while: a program calling over and over on arrays
 * bigger than the cache would otherwise make, fill and register its arenas again each call.
 * Called with c->lock held, on every allocation and release. */
static int
arenas_trim(sa_client *c, int all)
{
    uint64_t now;
    int released = 0;
    if (atomic_load(&c->closed) || (!all && c->mapped <= ARENA_CACHE_BYTES)) {
        return 0;
    }
    now = sa__now_ns();
    for (uint32_t id = 0; id < SA__MAX_ARENAS && (all || c->mapped > ARENA_CACHE_BYTES); id++) {
        sa__carena *a = c->arenas[id];
        if (a != NULL && a->used == 0 && (all || now - a->idle_since_ns >= ARENA_IDLE_NS)) {
            arena_release(c, a);
            released++;
        }
    }
    return released;
}

/* Returns b's range to its arena. Called with c->lock held. */
static void
block_release_locked(sa_client *c, sa_block *b)
{
    b->arena->used -= b->size;
    /* On -ENOMEM the range is lost to this arena, nothing worse. */
    extent_insert(b->arena, b->offset, b->size);
    if (b->arena->used == 0) {
        b->arena->idle_since_ns = sa__now_ns();
    }
    arenas_trim(c, 0);
}

/* Releases the blocks others deferred while we held the lock; returns them, to be freed
 * (and their client references dropped) once the lock is released. */
static sa_block *
drain_deferred_locked(sa_client *c)
{
    sa_block *list = atomic_exchange(&c->deferred, NULL);
    for (sa_block *b = list; b != NULL; b = b->next_deferred) {
        block_release_locked(c, b);
    }
    return list;
}

/* Unlocks c->lock, then frees the blocks drained under it. A block deferred after the drain
 * but before the unlock would wait for the lock's next user (its client reference keeping
 * the client alive): whoever unlocks looks again, and drains if the lock is free. */
static void
unlock_and_free(sa_client *c, sa_block *list)
{
    pthread_mutex_unlock(&c->lock);
    while (atomic_load(&c->deferred) != NULL && pthread_mutex_trylock(&c->lock) == 0) {
        sa_block *more = drain_deferred_locked(c), *last = more;
        pthread_mutex_unlock(&c->lock);
        if (last != NULL) {
            while (last->next_deferred != NULL) {
                last = last->next_deferred;
            }
            last->next_deferred = list;
            list = more;
        }
    }
    while (list != NULL) {
        sa_block *next = list->next_deferred;
        free(list);
        sa__client_unref(c);
        list = next;
    }
}

int
sa__arena_prime(sa_client *c)
{
    sa__carena *a;
    int err;
    pthread_mutex_lock(&c->lock);
    err = arena_create(c, 1, UINT64_MAX, &a);
    unlock_and_free(c, drain_deferred_locked(c));
    return err;
}

/* Carves `length` bytes from the first arena with room, counting them in its `used`.
 * Returns the offset (and the arena in *out), or SIZE_MAX. Under c->lock. */
static size_t
take(sa_client *c, size_t length, sa__carena **out)
{
    for (uint32_t id = 0; id < SA__MAX_ARENAS; id++) {
        sa__carena *a = c->arenas[id];
        size_t offset;
        if (a != NULL && (offset = extent_take(a, length)) != SIZE_MAX) {
            a->used += length;
            *out = a;
            return offset;
        }
    }
    return SIZE_MAX;
}

/* Takes c->lock, waiting until `deadline_ns` at most (another thread may hold it through a
 * registration with a stopped worker). 0 or -ETIMEDOUT. */
static int
lock_until(sa_client *c, uint64_t deadline_ns)
{
    struct timespec ts;
    if (deadline_ns == UINT64_MAX) {
        pthread_mutex_lock(&c->lock);
        return 0;
    }
    ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
    ts.tv_nsec = (long)(deadline_ns % 1000000000u);
    return pthread_mutex_clocklock(&c->lock, CLOCK_MONOTONIC, &ts) == 0 ? 0 : -ETIMEDOUT;
}

int
sa_block_alloc(sa_client *c, size_t nbytes, sa_block **out)
{
    return sa_block_alloc_wait(c, nbytes, -1, out);
}

/* What every allocation checks and needs before it looks for room: 0 with a new, unfilled
 * block in *out, or a negative code. */
static int
alloc_start(sa_client *c, size_t nbytes, sa_block **out)
{
    int err;
    if (nbytes == 0 || nbytes > (SIZE_MAX >> 1)) {
        return -EINVAL;
    }
    if ((err = sa__client_unusable(c)) < 0) {
        return err;
    }
    *out = malloc(sizeof(**out));
    return *out == NULL ? -ENOMEM : 0;
}

/* Fills in block b over `length` bytes at `offset` of arena a (already counted in its
 * `used`), and gives it its reference on the client. */
static void
alloc_finish(sa_client *c, sa_block *b, sa__carena *a, size_t offset, size_t length)
{
    b->client = c;
    b->arena = a;
    b->offset = offset;
    b->size = length;
    atomic_init(&b->refs, 1);
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

int
sa_block_try_alloc(sa_client *c, size_t nbytes, sa_block **out)
{
    sa_block *b;
    sa__carena *a = NULL;
    size_t length, offset;
    int err = alloc_start(c, nbytes, &b);
    if (err < 0) {
        return err;
    }
    length = round_up(nbytes, BLOCK_ALIGN);
    if (pthread_mutex_trylock(&c->lock) != 0) {
        free(b);
        return -EAGAIN;
    }
    /* No trim here (every release trims): it may unmap an idle arena, which a caller that
     * holds a lock of its own need not wait for. */
    offset = take(c, length, &a);
    unlock_and_free(c, drain_deferred_locked(c));
    if (offset == SIZE_MAX) {
        free(b);
        return -EAGAIN;
    }
    alloc_finish(c, b, a, offset, length);
    *out = b;
    return 0;
}

int
sa_block_alloc_wait(sa_client *c, size_t nbytes, int64_t wait_ns, sa_block **out)
{
    uint64_t deadline = wait_ns < 0 ? UINT64_MAX : sa__now_ns() + (uint64_t)wait_ns;
    sa_block *b;
    sa__carena *a = NULL;
    size_t length, offset = SIZE_MAX;
    int err = alloc_start(c, nbytes, &b);

    if (err < 0) {
        return err;
    }
    length = round_up(nbytes, BLOCK_ALIGN);
    if (lock_until(c, deadline) < 0) {
        free(b);
        return -ETIMEDOUT;
    }
    offset = take(c, length, &a);
    /* No room: settle a registration answered late first (its arena may have the room). */
    if (offset == SIZE_MAX && (err = settle_unanswered(c, deadline)) == 0
        && (offset = take(c, length, &a)) == SIZE_MAX) {
        err = arena_create(c, length, deadline, &a);
        if (err == -ENOMEM && arenas_trim(c, 1) > 0 && (err = sync_with_worker(c, deadline)) == 0) {
            /* The room idle arenas held may be what /dev/shm lacked: once the worker has
             * dropped them too (the round trip), try again. */
            err = arena_create(c, length, deadline, &a);
        }
        if (err == 0) {
            offset = extent_take(a, length);
            a->used += length;
        }
    }
    /* After the range is counted in `used`: its arena never looks empty to the trim. */
    arenas_trim(c, 0);
    unlock_and_free(c, drain_deferred_locked(c));
    if (err < 0) {
        free(b);
        return err;
    }
    alloc_finish(c, b, a, offset, length);
    *out = b;
    return 0;
}

void
sa_block_ref(sa_block *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void
sa_block_unref(sa_block *b)
{
    sa_client *c = b->client;
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (atomic_load(&c->forked)) {
        free(b); /* the child leaks the parent's arena ranges rather than touch its lock */
        sa__client_unref(c);
        return;
    }
    /* Never wait for the lock: this runs from Python deallocators with the GIL held, and the
     * lock's holder may be waiting on the worker (arena registration). Leave the block to
     * the holder instead, which releases it before unlocking. */
    if (pthread_mutex_trylock(&c->lock) != 0) {
        sa_block *head = atomic_load(&c->deferred);
        /* Our own reference on c: once pushed, b (and the reference it holds) may be freed
         * by whoever drains, at any moment. */
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        do {
            b->next_deferred = head;
        } while (!atomic_compare_exchange_weak(&c->deferred, &head, b));
        /* The holder may have drained and unlocked just before our push: look once more. */
        if (pthread_mutex_trylock(&c->lock) == 0) {
            unlock_and_free(c, drain_deferred_locked(c));
        }
        sa__client_unref(c);
        return;
    }
    block_release_locked(c, b);
    b->next_deferred = drain_deferred_locked(c);
    unlock_and_free(c, b);
}

void *
sa_block_data(const sa_block *b)
{
    return b->arena->base + b->offset;
}

size_t
sa_block_size(const sa_block *b)
{
    return b->size;
}

sa_client *
sa_block_client(const sa_block *b)
{
    return b->client;
}

void
sa__arenas_free(sa_client *c)
{
    /* Deferred blocks each hold a client reference, so none can be left when the client is
     * freed; nothing to drain here. */
    for (uint32_t id = 0; id < SA__MAX_ARENAS; id++) {
        if (c->arenas[id] != NULL) {
            arena_unmap(c->arenas[id]);
            c->arenas[id] = NULL;
        }
    }
    if (c->pending != NULL) {
        arena_unmap(c->pending);
        c->pending = NULL;
    }
    c->narenas = 0;
    c->mapped = 0;
}
