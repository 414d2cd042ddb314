/* internal.h -- private to src/: what the worker and client library files share.
 *
 * Nothing here is part of the public API; cross-file internals carry the sa__ prefix.
 */
#ifndef SA_INTERNAL_H
#define SA_INTERNAL_H

#include <sched.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "shmaccel.h"

#define SA__ERR(e) (-(e))

/* Retries `expr` (a call returning -1 and setting errno) while it fails with EINTR. */
#define SA__NOINTR(r, expr) \
    do { \
        (r) = (expr); \
    } while ((r) == -1 && errno == EINTR)

/* Default largest count a worker accepts (elements); a request above it gets SA_ETOOBIG. */
#define SA__DEFAULT_MAX_COUNT (UINT64_C(1) << 40)
/* Longest wait for a reply on the session socket (hello, arena registration): a live worker
 * answers in milliseconds; a stopped or wedged one must not hold the caller for ever. */
#define SA__REPLY_TIMEOUT_S 10

/* ---- time.c ---------------------------------------------------------------------------- */
/* CLOCK_MONOTONIC now, in nanoseconds. */
uint64_t sa__now_ns(void);
/* The CLOCK_MONOTONIC timespec `ns` nanoseconds from now. */
struct timespec sa__deadline_in(int64_t ns);

/* Tells the CPU this is a spin-wait loop (saves power, yields to a sibling hyperthread). */
/* Wakes a sleeping pool thread for a new submission and tells the threads busy with big
 * jobs that one is waiting (they look at `submissions` between slices, pool.c). */
static inline void
sa__announce_submission(sa_control *ctl)
{
    atomic_fetch_add_explicit(&ctl->submissions, 1, memory_order_release);
    sem_post(&ctl->wake);
}

static inline void
sa__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of a spin-wait: a pause, and every 128th step a sched_yield(). When there are
 * fewer free CPUs than spinners (a busy machine), the thread that would end the wait may be
 * queued behind the spinner on its CPU: the yield lets it run instead of waiting for the end
 * of the spinner's time slice. On an idle CPU the yield returns at once. `*steps` counts. */
static inline void
sa__spin_step(unsigned *steps)
{
    if ((++*steps & 127) == 0) {
        sched_yield();
    } else {
        sa__cpu_relax();
    }
}

/* ---- shm.c: shared memory segments ---------------------------------------------------- */
/* Creates an anonymous shared memory segment of `size` bytes: shm_open(O_CREAT|O_EXCL, 0600)
 * under a name with 64+ random bits, unlinked as soon as it is open, its pages reserved with
 * posix_fallocate so that a full /dev/shm fails here with -ENOSPC/-ENOMEM and never as a
 * SIGBUS later. `tag` goes into the name ("ctl", "arena"). Returns the descriptor (CLOEXEC)
 * or a negative code; nothing is left behind on error. */
int sa__shm_create(const char *tag, size_t size);
/* shm.c: a memfd of `size` bytes, reserved, mode 0600, sealed against shrinking and growing
 * (a client that holds it cannot make the worker fault). Returns the fd or a negative code. */
int sa__shm_create_sealed(const char *tag, size_t size);
/* Maps `size` bytes of `fd` read-write shared. Returns 0 and *out, or a negative code. */
int sa__shm_map(int fd, size_t size, void **out);
/* Size of the object behind `fd` from fstat; never from shared memory. */
int sa__fd_size(int fd, uint64_t *out);

/* ---- sock.c: the session socket -------------------------------------------------------- */
/* Sends one message, with descriptor `fd` attached when fd >= 0. Retries EINTR and short
 * writes; MSG_NOSIGNAL. Returns 0 or a negative code (-EPIPE when the peer is gone). */
int sa__msg_send(int sock, const sa_msg *msg, int fd);
/* Receives one whole message (blocking), and the descriptor that came with it into *fd (-1 if
 * none; any extra descriptors are closed). Returns 0, SA_EWORKERDIED-style -ECONNRESET on EOF,
 * SA_EPROTO on a bad magic, or a negative code. */
int sa__msg_recv(int sock, sa_msg *msg, int *fd);
/* Whether the peer of `sock` hung up (non-blocking poll for POLLHUP/POLLRDHUP/POLLERR). */
int sa__sock_hung_up(int sock);
/* uid and pid of the process at the other end (SO_PEERCRED). Returns 0 or a negative code. */
int sa__peer_cred(int sock, uint32_t *uid, int32_t *pid);

/* ---- kernels.c ------------------------------------------------------------------------- */
typedef void (*sa__kernel_fn)(const void *in, void *out, size_t n);
/* The kernel for (op, dtype), or NULL when either is invalid. */
sa__kernel_fn sa__kernel(uint32_t op, uint32_t dtype);

/* ---- guard.c: SIGBUS from client memory that vanished (a truncated arena) ------------- */
/* Installs the worker's SIGBUS handler. Returns 0 or a negative code. */
int sa__guard_install(void);
/* Runs fn(arg); returns 0, or SA_EFAULT if it touched memory that raised SIGBUS (fn was cut
 * short at that point). fn must hold no lock and own nothing it could leak when cut short. */
int sa__guarded(void (*fn)(void *), void *arg);

/* ---- fault.c: crash points for fault-injection tests ---------------------------------- */
/* Aborts the process if SHMACCEL_FAULT names `point` (read once). */
void sa__fault_point(const char *point);

/* ---- worker (pool.c, session.c, worker_main.c) --------------------------------------- */
#include <pthread.h>
#include <stdatomic.h>

#define SA__MAX_ARENAS 1024 /* arena ids per client: 0 .. SA__MAX_ARENAS - 1 */

/* A client's arena as the worker maps it. `size` comes from fstat at registration. The
 * registration holds one reference and every job using the arena one more; the mapping goes
 * away with the last. */
typedef struct sa__arena {
    char *base;
    uint64_t size;
    atomic_uint refs;
} sa__arena;

/* Worker-private state of one client seat (a client area of the control segment). */
/* clang-format off */
typedef struct sa__seat {
    atomic_uint jobs;         /* worker-private: jobs of this seat claimed and not yet done */
    atomic_uint next_slot;    /* where the next scan of this seat's slots starts (fairness
                                 between the client's own threads) */
    int sock;                 /* session socket, -1 when the seat is free */
    int detached;             /* 1 after EOF until every slot is FREE again */
    atomic_int notify_fd;     /* the client's notify socket (SA_MSG_NOTIFY), or -1; closed only when
                                 the seat is quiet (no pool thread can be writing it) */
    pthread_mutex_t lock;     /* guards arenas[] */
    sa__arena *arenas[SA__MAX_ARENAS];
} sa__seat;
/* clang-format on */

/* A request being executed: a private copy of a slot's fields plus what the worker derived
 * from them. One per slot, reused; a slot never has two jobs at once. */
/* clang-format off */
typedef struct sa__job {
    int notify;               /* signal the seat's notify socket on completion */
    atomic_int busy;          /* worker-private: 1 from claim to the last touch in complete().
                                 A client rewriting its state word cannot get a slot run twice. */
    sa_request req;
    uint64_t word;            /* the slot's state word as RUNNING (carries the generation) */
    uint32_t seat;
    uint32_t slot;
    sa__kernel_fn kernel;
    size_t itemsize;
    sa__arena *in_arena, *out_arena;
    size_t nchunks;           /* 1: run inline by the claiming thread */
    size_t chunk_elems;
    size_t next_chunk;        /* guarded by worker.big_lock */
    atomic_size_t chunks_done;
    atomic_int failed;        /* 0, or the error of a chunk that failed (SA_EFAULT) */
    struct sa__job *next_big; /* in worker.big_jobs, guarded by big_lock */
} sa__job;
/* clang-format on */

typedef struct sa__worker {
    sa_control *ctl; /* shared; only written by the worker, never trusted when read */
    size_t ctl_size;
    int ctl_fd;
    uint32_t max_clients; /* private copies: never read back from the control segment */
    uint32_t threads;
    uint64_t max_count;
    int private_mode; /* one inherited session; exit when it ends */
    sa__seat *seats;
    sa__job *jobs; /* max_clients * SA_SLOTS_PER_CLIENT */
    pthread_t *tids;
    pthread_mutex_t big_lock;
    sa__job *big_jobs; /* jobs with chunks left to hand out */
    atomic_uint big_count;
    atomic_uint rr_cursor; /* the seat after the last one served: round robin */
    atomic_int spinner;    /* 1 while a thread spins for new work */
    atomic_int stop;
    atomic_uint active_seats[SA_MAX_CLIENTS / 32]; /* bitmap of seats with a live session */
} sa__worker;

/* worker_state.c: allocates the seats and jobs of a worker whose max_clients, threads and
 * max_count are set, and creates its control segment. Returns 0 or a negative code; either
 * way sa__worker_free releases what was made. */
int sa__worker_init(sa__worker *w);
/* worker_state.c: closes every session and notify socket, drops every arena, frees the
 * seats and jobs and unmaps the control segment. Only once the pool threads are joined. */
void sa__worker_free(sa__worker *w);

/* pool.c: starts w->threads pool threads. Returns 0 or a negative code (none left running). */
int sa__pool_start(sa__worker *w);
/* pool.c: asks the pool threads to finish their current jobs and joins them. */
void sa__pool_stop(sa__worker *w);
/* pool.c: drops a reference on an arena, unmapping it with the last one. */
void sa__arena_unref(sa__arena *a);

/* session.c: serves sessions until the pool stops: the listener `listen_fd` (-1 for none),
 * the private session `private_fd` (-1 for none; its EOF stops the pool), and `signal_fd`
 * (SIGTERM/SIGINT). On a signal it stops gracefully: calls `on_stop(listen_fd)` (which
 * closes and unlinks the listener), tells every client, and keeps serving until the
 * requests in flight are done or `grace_ns` has passed. Returns 0 or a negative code. */
int sa__serve(sa__worker *w, int listen_fd, int private_fd, int signal_fd,
              void (*on_stop)(int listen_fd), uint64_t grace_ns);
/* session.c: handles one message `msg` received from the client of seat `s` (attached:
 * seats[s].sock open), with the descriptor that came with it (`fd`, -1 for none; always
 * consumed: kept or closed). Answers on the seat's socket when the message type asks for a
 * reply (ARENA_ADD; blocks up to the socket's send limit). Returns 0, or a negative code when
 * the session must end (malformed message, reply not sent): the caller then detaches the
 * seat. Called by the session thread only (sa__serve's loop, and the protocol fuzzer). */
int sa__session_handle(sa__worker *w, uint32_t s, const sa_msg *msg, int fd);

/* ---- client (client.c, client_block.c, client_req.c) --------------------------------- */
#include <sys/types.h>

/* A free range inside a client arena. */
typedef struct sa__extent {
    size_t offset;
    size_t length;
} sa__extent;

/* One arena as the client owns it: mapped once, registered with the worker once, carved into
 * blocks by a first-fit allocator over a sorted list of free extents. */
typedef struct sa__carena {
    uint32_t id;
    char *base;
    size_t size;
    size_t used;
    uint64_t idle_since_ns; /* when it last became empty (meaningful while used == 0) */
    sa__extent *free;
    size_t nfree, capfree;
} sa__carena;

struct sa_block {
    sa_client *client;
    sa__carena *arena;
    size_t offset;
    size_t size;
    atomic_uint refs;
    struct sa_block *next_deferred; /* in sa_client.deferred while waiting for the lock */
};

/* What the client remembers about one of its slots between submit and finish. */
typedef struct sa__cslot {
    sa_block *in, *out; /* references held while the worker may touch the memory */
    uint64_t generation;
    int abandoned; /* cancelled while running: refs go when the worker frees the slot */
} sa__cslot;

/* Values of sa_client.closed. A session closed once its worker was known dead keeps failing
 * with SA_EWORKERDIED: the default pool closes a dead pool while other threads may still be
 * calling it, and they must learn that the worker died, not that someone closed the pool. */
enum { SA__CLOSED = 1, SA__CLOSED_DEAD = 2 };

/* clang-format off */
struct sa_client {
    int sock;
    _Atomic pid_t child;      /* private worker not yet reaped, or -1 */
    sa_control *ctl;          /* shared with the worker: never trusted beyond the hello checks */
    size_t ctl_size;
    sa_client_area *area;     /* our seat's area */
    uint32_t seat;
    int32_t worker_pid;       /* private copies taken at hello */
    uint32_t threads;
    uint32_t max_clients;
    atomic_int dead;          /* worker gone (hang-up seen) */
    atomic_int closed;        /* 0, or SA__CLOSED(_DEAD) once sa_client_shutdown ran */
    atomic_int forked;        /* this is a forked child's copy: touch nothing shared */
    atomic_uint refs;         /* 1 for the owner + 1 per live block */
    atomic_uint_least64_t latency_ns; /* moving average of completion times (sa_wait) */
    atomic_uint_least64_t hangup_checked_ns; /* when sa_client_dead last polled the socket */
    sa_client *registry_next, *registry_prev; /* every live client (client.c, for fork) */
    pthread_mutex_t lock;     /* arenas and the socket's request/reply */
    int notify_fd;            /* our end of the notify socket pair, or -1 (under lock) */
    uint64_t request_seq;     /* sequence number of the last request sent (under lock) */
    uint64_t unanswered;      /* a request given up on whose reply is still due, or 0 */
    struct sa__carena *pending; /* the arena of that request, if it was a registration: kept,
                                 * and installed if the late reply accepts it */
    _Atomic(sa_block *) deferred; /* blocks freed while the lock was busy (lock-free stack) */
    sa__carena *arenas[SA__MAX_ARENAS];
    uint32_t narenas;
    size_t mapped;            /* bytes of all arenas */
    sa__cslot slots[SA_SLOTS_PER_CLIENT];
};
/* clang-format on */

/* client.c: receives the worker's HELLO on c->sock (waiting up to 10 s) and checks it and the
 * control segment's header against the segment's fstat size, then maps the segment and fills
 * c's session fields (ctl, ctl_size, seat, area, max_clients, worker_pid, threads). Returns 0,
 * or a negative code with nothing mapped and the received descriptor closed (the worker's
 * refusal: its status). Used by spawn and connect, and by the protocol fuzzer. */
int sa__client_hello(sa_client *c);
/* client.c: drops a reference on the client; frees it (and unmaps everything) with the last. */
void sa__client_unref(sa_client *c);
/* client.c: SA_ECLOSED (closed, forked or pool stopping), SA_EWORKERDIED (hang-up seen, or
 * closed after it), or 0 when the client may start a request. Flags only: no syscall. */
int sa__client_unusable(sa_client *c);
/* client.c: marks the worker dead if the session socket hung up. Returns 1 if dead. */
int sa__client_check_alive(sa_client *c);
/* client_block.c: creates and registers the session's first arena, so that ordinary calls
 * never wait for the worker to register one. Returns 0 or a negative code. */
int sa__arena_prime(sa_client *c);
/* client_block.c: unmaps and frees every arena (client being freed). */
void sa__arenas_free(sa_client *c);

#endif /* SA_INTERNAL_H */
