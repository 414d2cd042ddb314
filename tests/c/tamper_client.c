/* tamper_client.c -- a hostile client for tests/test_tampering.py: speaks the session protocol
 * itself (not through the library), then abuses its own seat and memory in one of several
 * ways while a well-behaved client shares the pool.
 *
 *   tamper_client SOCKET_PATH MODE SECONDS
 *
 * MODE:
 *   garbage   random bytes over its slots and seat fields, random slots marked SUBMITTED,
 *             `wake` posted for them
 *   hammer    valid big requests, while a second thread rewrites their op, dtype, count,
 *             arenas, offsets and state words as fast as it can
 *   posts     posts every semaphore it can reach (wake, its slots' and every other seat's
 *             `done` and `slot_free`) without cause
 *   notify    registers as its completion socket one whose buffer it has filled and made
 *             blocking, then keeps requests that ask for a signal in flight in every slot
 *   truncate  submits big in-place requests and ftruncate()s the arena to 0 under them, then
 *             grows it back; also tries to resize the control segment
 *
 * Prints one line "tamper MODE: key=value ..." and exits 0 if it could carry the abuse out
 * (whatever the worker made of it), 2 if it could not even connect or register its arena.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define ARENA_BYTES (UINT64_C(64) << 20)
#define BIG_COUNT (UINT64_C(4) << 20) /* float64: 32 MiB, in place */

typedef struct {
    int sock;
    sa_control *ctl;
    size_t ctl_size;
    int ctl_fd;
    uint32_t seat;
    sa_client_area *area;
    int arena_fd;
    char *arena;
    uint64_t seq;
} tamperer;

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t
rnd(void)
{
    /* xorshift64*: deterministic garbage, good enough to be hostile */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
connect_pool(tamperer *t, const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    sa_msg msg;
    int fd = -1;
    void *base;
    uint64_t size;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);
    t->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (t->sock < 0 || connect(t->sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        return -errno;
    }
    if (sa__msg_recv(t->sock, &msg, &fd) < 0 || msg.type != SA_MSG_HELLO || fd < 0
        || sa__fd_size(fd, &size) < 0 || size < sizeof(sa_control)) {
        return SA_EPROTO;
    }
    if (sa__shm_map(fd, (size_t)size, &base) < 0) {
        return -ENOMEM;
    }
    t->ctl = base;
    t->ctl_size = (size_t)size;
    t->ctl_fd = fd;
    t->seat = msg.arg32;
    t->area = sa_control_area(t->ctl, t->seat);
    return 0;
}

/* Registers a 64 MiB shm arena as id 0 and keeps its descriptor. */
static int
add_arena(tamperer *t)
{
    sa_msg msg = {.magic = SA_MAGIC, .type = SA_MSG_ARENA_ADD, .arg32 = 0};
    void *base;
    int rfd = -1;

    t->arena_fd = sa__shm_create("arena", ARENA_BYTES);
    if (t->arena_fd < 0 || sa__shm_map(t->arena_fd, ARENA_BYTES, &base) < 0) {
        return -ENOMEM;
    }
    t->arena = base;
    msg.arg64 = ++t->seq;
    if (sa__msg_send(t->sock, &msg, t->arena_fd) < 0) {
        return SA_EWORKERDIED;
    }
    for (;;) {
        sa_msg reply;
        if (sa__msg_recv(t->sock, &reply, &rfd) < 0) {
            return SA_EWORKERDIED;
        }
        if (rfd >= 0) {
            close(rfd);
        }
        if (reply.type == SA_MSG_REPLY && reply.arg64 == msg.arg64) {
            return reply.status;
        }
    }
}

/* Writes a valid request into slot i (whatever state it is in) and marks it SUBMITTED. */
static void
submit_raw(tamperer *t, uint32_t i, uint32_t op, uint32_t dtype, uint64_t count, uint32_t flags)
{
    sa_slot *s = &t->area->slots[i];
    uint64_t word = atomic_load(&s->state);
    atomic_store(&s->op, op);
    atomic_store(&s->dtype, dtype);
    atomic_store(&s->count, count);
    atomic_store(&s->in_arena, 0);
    atomic_store(&s->out_arena, 0);
    atomic_store(&s->in_offset, 0);
    atomic_store(&s->out_offset, 0);
    atomic_store(&s->flags, flags);
    atomic_store(&s->state, sa_slot_word(sa_slot_word_gen(word), SA_SLOT_SUBMITTED));
    atomic_fetch_or(&t->area->pending, UINT64_C(1) << i);
    sa__announce_submission(t->ctl);
}

/* Waits up to `timeout` seconds for slot i to leave SUBMITTED/RUNNING; returns its status,
 * or 1 if it never did. */
static int
wait_raw(tamperer *t, uint32_t i, double timeout)
{
    double until = now_s() + timeout;
    while (now_s() < until) {
        uint32_t st = sa_slot_word_state(atomic_load(&t->area->slots[i].state));
        if (st == SA_SLOT_DONE) {
            return atomic_load(&t->area->slots[i].status);
        }
        if (st != SA_SLOT_SUBMITTED && st != SA_SLOT_RUNNING) {
            return 1;
        }
        usleep(100);
    }
    return 1;
}

static void
mode_garbage(tamperer *t, double seconds)
{
    unsigned long rounds = 0;
    double until = now_s() + seconds;
    while (now_s() < until) {
        for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
            sa_slot *s = &t->area->slots[i];
            /* Everything but the semaphore: scribbling over a futex word only makes posts to
             * it odd, which `posts` covers. */
            uint64_t junk[7];
            for (size_t k = 0; k < 7; k++) {
                junk[k] = rnd();
            }
            memcpy((char *)s + 8, junk, offsetof(sa_slot, done) - 8);
            if (rnd() % 2) {
                atomic_store(&s->state, sa_slot_word(rnd() >> 8, SA_SLOT_SUBMITTED));
            } else {
                atomic_store(&s->state, rnd());
            }
        }
        atomic_store(&t->area->pending, rnd());
        atomic_store(&t->area->worker_spinning, (uint32_t)rnd());
        sa__announce_submission(t->ctl);
        rounds++;
        usleep(200);
    }
    printf("tamper garbage: rounds=%lu\n", rounds);
}

typedef struct {
    tamperer *t;
    atomic_int stop;
    unsigned long writes;
} hammer_arg;

static void *
hammer_thread(void *arg)
{
    hammer_arg *h = arg;
    sa_slot *s = &h->t->area->slots[0];
    while (!atomic_load(&h->stop)) {
        switch (rnd() % 8) {
        case 0:
            atomic_store(&s->count, rnd() % 2 ? rnd() : BIG_COUNT * 2);
            break;
        case 1:
            atomic_store(&s->in_offset, rnd() % 2 ? rnd() : ARENA_BYTES - 8);
            break;
        case 2:
            atomic_store(&s->out_offset, rnd() % ARENA_BYTES);
            break;
        case 3:
            atomic_store(&s->dtype, (uint32_t)(rnd() % 12));
            break;
        case 4:
            atomic_store(&s->op, (uint32_t)(rnd() % 4));
            break;
        case 5:
            atomic_store(&s->in_arena, (uint32_t)(rnd() % 3));
            break;
        case 6:
            atomic_store(&s->out_arena, (uint32_t)(rnd() % 3));
            break;
        default: {
            uint64_t word = atomic_load(&s->state);
            atomic_store(&s->state, sa_slot_word(sa_slot_word_gen(word), SA_SLOT_SUBMITTED));
            atomic_fetch_or(&h->t->area->pending, 1);
            break;
        }
        }
        h->writes++;
    }
    return NULL;
}

static void
mode_hammer(tamperer *t, double seconds)
{
    hammer_arg h = {.t = t};
    pthread_t tid;
    unsigned long submitted = 0;
    double until = now_s() + seconds;

    pthread_create(&tid, NULL, hammer_thread, &h);
    while (now_s() < until) {
        submit_raw(t, 0, SA_OP_SQUARE, SA_FLOAT64, BIG_COUNT, 0);
        submitted++;
        wait_raw(t, 0, 0.05);
    }
    atomic_store(&h.stop, 1);
    pthread_join(tid, NULL);
    printf("tamper hammer: submitted=%lu field_writes=%lu\n", submitted, h.writes);
}

static void
mode_posts(tamperer *t, double seconds)
{
    unsigned long posts = 0;
    uint32_t seats = (uint32_t)((t->ctl_size - sizeof(sa_control)) / sizeof(sa_client_area));
    double until = now_s() + seconds;
    while (now_s() < until) {
        sem_post(&t->ctl->wake);
        for (uint32_t s = 0; s < seats; s++) {
            sa_client_area *a = sa_control_area(t->ctl, s);
            sem_post(&a->slots[rnd() % SA_SLOTS_PER_CLIENT].done);
            if (s == t->seat) {
                sem_post(&a->slot_free);
            }
            posts += 2;
        }
        usleep(50);
    }
    printf("tamper posts: posts=%lu seats=%u\n", posts, seats);
}

static void
mode_notify(tamperer *t, double seconds)
{
    sa_msg msg = {.magic = SA_MAGIC, .type = SA_MSG_NOTIFY};
    unsigned long submitted = 0, done = 0, stuck = 0;
    size_t filled = 0;
    int sv[2];
    double until = now_s() + seconds;

    /* The worker writes into sv[1]; nobody ever reads sv[0]. */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        return;
    }
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    while (write(sv[1], "xxxxxxxxxxxxxxxx", 16) == 16) {
        filled += 16;
    }
    fcntl(sv[1], F_SETFL, 0); /* shared with the worker's copy: its writes would block */
    if (sa__msg_send(t->sock, &msg, sv[1]) < 0) {
        return;
    }
    while (now_s() < until) {
        for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
            submit_raw(t, i, SA_OP_DOUBLE, SA_INT64, 1000, SA_SUBMIT_NOTIFY);
            submitted++;
        }
        for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
            if (wait_raw(t, i, 2.0) == 0) {
                done++;
            } else {
                stuck++;
            }
            uint64_t word = atomic_load(&t->area->slots[i].state);
            atomic_store(&t->area->slots[i].state,
                         sa_slot_word(sa_slot_word_gen(word) + 1, SA_SLOT_FREE));
        }
    }
    printf("tamper notify: filled=%zu submitted=%lu done=%lu stuck=%lu\n", filled, submitted, done,
           stuck);
}

static void
mode_truncate(tamperer *t, double seconds)
{
    unsigned long rounds = 0, faulted = 0, ok = 0, other = 0, stuck = 0;
    double until = now_s() + seconds;
    int ctl_resize = ftruncate(t->ctl_fd, 0) == 0 ? 0 : errno;
    int ctl_grow = ftruncate(t->ctl_fd, (off_t)t->ctl_size * 2) == 0 ? 0 : errno;

    while (now_s() < until) {
        if (ftruncate(t->arena_fd, (off_t)ARENA_BYTES) < 0) {
            break;
        }
        submit_raw(t, 0, SA_OP_SQUARE, SA_FLOAT64, BIG_COUNT, 0);
        /* Let the worker start, then pull the memory from under it. */
        usleep((useconds_t)(rnd() % 400));
        if (ftruncate(t->arena_fd, 0) < 0) {
            break;
        }
        int status = wait_raw(t, 0, 10.0);
        if (status == SA_EFAULT) {
            faulted++;
        } else if (status == 0) {
            ok++;
        } else if (status == 1) {
            stuck++;
        } else {
            other++;
        }
        /* Hand the slot back so that the next submission is a fresh one. */
        uint64_t word = atomic_load(&t->area->slots[0].state);
        atomic_store(&t->area->slots[0].state,
                     sa_slot_word(sa_slot_word_gen(word) + 1, SA_SLOT_FREE));
        rounds++;
    }
    printf("tamper truncate: rounds=%lu efault=%lu ok=%lu other=%lu stuck=%lu "
           "ctl_shrink_errno=%d ctl_grow_errno=%d\n",
           rounds, faulted, ok, other, stuck, ctl_resize, ctl_grow);
}

int
main(int argc, char **argv)
{
    tamperer t = {.sock = -1, .ctl_fd = -1, .arena_fd = -1};
    int err;

    if (argc != 4) {
        fprintf(stderr,
                "usage: tamper_client SOCKET_PATH garbage|hammer|posts|notify|truncate SECONDS\n");
        return 2;
    }
    double seconds = atof(argv[3]);
    if ((err = connect_pool(&t, argv[1])) < 0) {
        fprintf(stderr, "tamper_client: connect: %s\n", sa_strerror(err));
        return 2;
    }
    if ((err = add_arena(&t)) < 0) {
        fprintf(stderr, "tamper_client: arena: %s\n", sa_strerror(err));
        return 2;
    }
    if (strcmp(argv[2], "garbage") == 0) {
        mode_garbage(&t, seconds);
    } else if (strcmp(argv[2], "hammer") == 0) {
        mode_hammer(&t, seconds);
    } else if (strcmp(argv[2], "posts") == 0) {
        mode_posts(&t, seconds);
    } else if (strcmp(argv[2], "notify") == 0) {
        mode_notify(&t, seconds);
    } else if (strcmp(argv[2], "truncate") == 0) {
        mode_truncate(&t, seconds);
    } else {
        fprintf(stderr, "tamper_client: unknown mode %s\n", argv[2]);
        return 2;
    }
    fflush(stdout);
    return 0;
}
