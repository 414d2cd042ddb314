/* shmaccel.h -- public interface of shmaccel: wire layout, enums, error codes, C client API.
 *
 * Everything a C user (or the CPython extension) needs to talk to a shmaccel worker pool:
 * the layout of the shared control segment and the socket messages (both are a wire format,
 * so every struct here has fixed-width fields, explicit padding and static size checks), the
 * op and dtype enums, the error codes, and the client functions implemented in src/client*.c.
 */
#ifndef SHMACCEL_H
#define SHMACCEL_H

#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The project's version, kept here only: setup.py reads it, shmaccel.__version__ is this. */
#define SA_VERSION_STRING "0.1.0"

/* Most pool threads a worker runs (--threads, sa_client_spawn, Pool(threads=)). */
#define SA_MAX_THREADS 1024
/* Most client sessions a pool seats at once (--max-clients). */
#define SA_MAX_CLIENTS 1024

/* ---------------------------------------------------------------------------------------------
 * Errors. Every function that can fail returns 0 (or a non-negative value) on success and a
 * negative code on failure: -errno for system errors, or one of the SA_E* codes below, which lie
 * outside the errno range. sa_strerror() names them all.
 */
#define SA__ERRBASE (-4000)
#define SA_EPROTO (SA__ERRBASE - 1)      /* malformed message or segment from the other side */
#define SA_EVERSION (SA__ERRBASE - 2)    /* worker and client speak different protocol versions */
#define SA_EBADOP (SA__ERRBASE - 3)      /* unknown op */
#define SA_EBADDTYPE (SA__ERRBASE - 4)   /* unknown dtype */
#define SA_EBADARENA (SA__ERRBASE - 5)   /* arena id not registered by this client */
#define SA_EBOUNDS (SA__ERRBASE - 6)     /* offset + count * itemsize outside the arena */
#define SA_EOVERLAP (SA__ERRBASE - 7)    /* output partially overlaps input */
#define SA_ETOOBIG (SA__ERRBASE - 8)     /* count above the pool's limit */
#define SA_EWORKERDIED (SA__ERRBASE - 9) /* the worker process went away */
#define SA_ECLOSED (SA__ERRBASE - 10)    /* the pool was closed or is stopping */
#define SA_EFULL (SA__ERRBASE - 11)      /* the pool has no room for another client */
#define SA_EFAULT (SA__ERRBASE - 12)     /* the worker hit a bus error reading the arena */
#define SA__ERRLAST SA_EFAULT

/* Returns a static, human-readable description of `code`, any int: "success" for 0, the
 * message of an SA_E* code, strerror(-code) for a -errno, "unknown error" for anything else.
 * Never NULL, never fails (no error codes); thread-safe. Example:
 *     int err = sa_run(c, SA_OP_SQUARE, SA_FLOAT64, n, b, b);
 *     if (err < 0) {
 *         fprintf(stderr, "square: %s\n", sa_strerror(err));  // e.g. "the pool is closed"
 *     } */
const char *sa_strerror(int code);

/* ---------------------------------------------------------------------------------------------
 * Ops and dtypes. The numeric values are part of the wire format.
 */
/* The op list: the one place where a kernel is defined. Each entry is
 *   X(ENUM_SUFFIX, wire value, name, expression in x, ...)
 * The expression is evaluated on each element x: in the element's own type for floats, and in
 * an unsigned type at least 32 bits wide for integers, so fixed-width results wrap around
 * (two's complement, as numpy) without undefined behaviour. It is also evaluated on __int128 to
 * decide whether a Python int result fits in int64 (sa_op_int64_fits). Wire values must stay
 * 1, 2, 3... in order. The expression must not contain a top-level comma. */
/* clang-format off */
#define SA_OP_LIST(X, ...) \
    X(DOUBLE, 1, double, (x) * 2, __VA_ARGS__) \
    X(SQUARE, 2, square, (x) * (x), __VA_ARGS__)

#define SA__OP_ENUM(NAME, N, name, expr, ...) SA_OP_##NAME = N,
typedef enum sa_op {
    SA_OP_LIST(SA__OP_ENUM, ~) SA_OP__END
} sa_op;
/* clang-format on */
#undef SA__OP_ENUM
#define SA_OP_MAX (SA_OP__END - 1)

typedef enum sa_dtype {
    SA_INT8 = 1,
    SA_INT16 = 2,
    SA_INT32 = 3,
    SA_INT64 = 4,
    SA_UINT8 = 5,
    SA_UINT16 = 6,
    SA_UINT32 = 7,
    SA_UINT64 = 8,
    SA_FLOAT32 = 9,
    SA_FLOAT64 = 10,
} sa_dtype;
#define SA_DTYPE_MAX 10

/* Size in bytes of one element of `dtype`, or 0 if `dtype` is not a valid sa_dtype (the only
 * failure). Pure; thread-safe. Example: sa_dtype_size(SA_FLOAT32) == 4, so an array of n
 * float32 needs a block of n * sa_dtype_size(SA_FLOAT32) bytes. */
size_t sa_dtype_size(uint32_t dtype);
/* Static numpy-style name of `dtype` ("int64", ...), or NULL if `dtype` is not valid (the only
 * failure). Pure; thread-safe. Example: sa_dtype_name(SA_UINT8) is "uint8". */
const char *sa_dtype_name(uint32_t dtype);
/* Parses a numpy-style name ("int8" ... "float64"; NUL-terminated, not NULL). Returns the
 * sa_dtype (> 0), or SA_EBADDTYPE for any other name. Pure; thread-safe. Example:
 *     int dtype = sa_dtype_from_name("float64");   // SA_FLOAT64; "float16": SA_EBADDTYPE */
int sa_dtype_from_name(const char *name);
/* Static name of `op` ("double", "square"), or NULL if `op` is not valid (the only failure).
 * Pure; thread-safe. Example: sa_op_name(SA_OP_SQUARE) is "square". */
const char *sa_op_name(uint32_t op);
/* Parses an op name ("double", "square"; NUL-terminated, not NULL). Returns the sa_op (> 0),
 * or SA_EBADOP for any other name. Pure; thread-safe. Example:
 *     int op = sa_op_from_name("square");   // SA_OP_SQUARE */
int sa_op_from_name(const char *name);
/* Returns 1 if op(x) for an int64 x stays within int64, 0 if it does not or `op` is not valid
 * (no error codes): Python ints must never wrap silently. Pure; thread-safe. Example:
 * sa_op_int64_fits(SA_OP_SQUARE, 3037000499) is 1, sa_op_int64_fits(SA_OP_SQUARE, 3037000500)
 * is 0. */
int sa_op_int64_fits(uint32_t op, int64_t x);
/* The int64 inputs x for which op(x) fits in int64, as the interval [*lo, *hi]: for every op
 * of SA_OP_LIST they form one interval around 0 (each op grows in size away from 0), so a
 * caller checking many values needs two comparisons each instead of a call. Returns 0, or
 * SA_EBADOP for an invalid op (*lo and *hi unchanged). Pure; thread-safe. Example:
 *     int64_t lo, hi;
 *     sa_op_int64_bounds(SA_OP_DOUBLE, &lo, &hi);   // lo = -2^62, hi = 2^62 - 1
 *     int ok = x >= lo && x <= hi;                   // == sa_op_int64_fits(SA_OP_DOUBLE, x) */
int sa_op_int64_bounds(uint32_t op, int64_t *lo, int64_t *hi);

/* ---------------------------------------------------------------------------------------------
 * The control segment: created by the worker (a memfd, mode 0600, sealed against shrinking
 * and growing: it never has a name), handed to each client over the session socket, mapped
 * read-write by both sides.
 *
 * It holds a header, then one sa_client_area per client seat, each with a fixed table of slots.
 * A client only ever uses the area of the seat the worker gave it in the hello message, so the
 * worker knows which client a slot belongs to from its index alone and never trusts a client id
 * written in shared memory.
 *
 * Slot state word: (generation << 8) | state. Changed only by compare-and-swap; the generation
 * is bumped each time a slot returns to FREE, so a late completion (or cancel) that still holds
 * the old word can never act on the request that reuses the slot.
 *
 *   FREE --client CAS--> CLAIMED --client store-release--> SUBMITTED --worker CAS--> RUNNING
 *   RUNNING --worker CAS--> DONE (then posts `done`) --client CAS--> FREE (gen+1)
 *   SUBMITTED --client cancel CAS--> FREE (gen+1)
 *   RUNNING --client cancel CAS--> ABANDONED --worker, when finished--> FREE (gen+1)
 */
#define SA_MAGIC 0x414d4853u /* "SHMA" */
#define SA_PROTO_VERSION 3u

enum sa_slot_state {
    SA_SLOT_FREE = 0,
    SA_SLOT_CLAIMED = 1,
    SA_SLOT_SUBMITTED = 2,
    SA_SLOT_RUNNING = 3,
    SA_SLOT_DONE = 4,
    SA_SLOT_ABANDONED = 5,
};

/* The state word of a slot in `state` at `generation`. Pure. Example: a FREE slot's expected
 * word for a CAS, sa_slot_word(gen, SA_SLOT_FREE). */
static inline uint64_t
sa_slot_word(uint64_t generation, uint32_t state)
{
    return (generation << 8) | state;
}

/* The sa_slot_state of a state word. Pure. Example:
 *     sa_slot_word_state(atomic_load(&slot->state)) == SA_SLOT_DONE */
static inline uint32_t
sa_slot_word_state(uint64_t word)
{
    return (uint32_t)(word & 0xff);
}

/* The generation of a state word. Pure. Example: a ticket still owns its slot while
 * sa_slot_word_gen(word) == ticket.generation. */
static inline uint64_t
sa_slot_word_gen(uint64_t word)
{
    return word >> 8;
}

/* clang-format off */
typedef struct sa_slot {
    _Atomic uint64_t state;      /* (generation << 8) | sa_slot_state */
    _Atomic uint32_t op;         /* sa_op */
    _Atomic uint32_t dtype;      /* sa_dtype */
    _Atomic uint64_t count;      /* number of elements */
    _Atomic uint32_t in_arena;   /* arena id (registered by this client) of the input */
    _Atomic uint32_t out_arena;  /* arena id of the output */
    _Atomic uint64_t in_offset;  /* byte offset of the input in its arena */
    _Atomic uint64_t out_offset; /* byte offset of the output; == in_offset and same arena: in place */
    _Atomic int32_t status;      /* written by the worker before DONE: 0 or a negative code */
    _Atomic uint32_t flags;      /* SA_SUBMIT_* of this request */
    sem_t done;                  /* process-shared; posted by the worker once per DONE */
    uint8_t reserved1[128 - 56 - sizeof(sem_t)];
} sa_slot;
/* clang-format on */

#define SA_SLOTS_PER_CLIENT 64

typedef struct sa_client_area {
    _Atomic uint32_t seat_generation; /* bumped by the worker each time the seat changes hands */
    _Atomic uint32_t attached;        /* 1 while a session holds this seat */
    _Atomic uint64_t requests;        /* this seat's completed requests (this session) */
    _Atomic uint64_t elements;
    _Atomic uint64_t errors;
    sem_t slot_free; /* process-shared; counts FREE slots; posted by whoever frees one */
    /* Bit i set by the client after slot i became SUBMITTED; cleared by the worker when it
     * takes the slot. Only a hint that saves scanning: the state word decides. */
    _Atomic uint64_t pending;
    /* 1 while a pool thread is spinning for new work and will see a submission without a
     * post to `wake`; the client then skips the post (and its futex wake-up). Written by the
     * worker, per seat, so that a client corrupting it can only delay its own requests. */
    _Atomic uint32_t worker_spinning;
    /* 1 once the pool is stopping: it finishes what is in flight but takes nothing new
     * (sa_submit returns SA_ECLOSED). Per seat, like worker_spinning. */
    _Atomic uint32_t stopping;
    _Atomic int32_t client_pid; /* the session's process (SO_PEERCRED), for status */
    uint32_t reserved0;
    uint8_t reserved[128 - 56 - sizeof(sem_t)];
    sa_slot slots[SA_SLOTS_PER_CLIENT];
} sa_client_area;

/* clang-format off */
typedef struct sa_control {
    uint32_t magic;            /* SA_MAGIC */
    uint32_t version;          /* SA_PROTO_VERSION */
    uint32_t header_size;      /* sizeof(sa_control) */
    uint32_t area_size;        /* sizeof(sa_client_area) */
    uint32_t max_clients;      /* number of client areas after the header */
    uint32_t threads;          /* worker pool threads */
    int32_t worker_pid;
    uint32_t reserved0;
    uint64_t start_ns;         /* CLOCK_MONOTONIC at worker start */
    uint64_t max_count;        /* largest count the worker accepts */
    _Atomic uint64_t requests; /* completed requests, all clients */
    _Atomic uint64_t elements; /* elements processed, all clients */
    _Atomic uint64_t errors;   /* requests that completed with an error status */
    _Atomic uint32_t clients;  /* sessions currently attached */
    _Atomic uint32_t stopping; /* 1 once the pool stops accepting work */
    sem_t wake;                /* process-shared counting semaphore: one post per submission */
    _Atomic uint64_t busy_ns;  /* time pool threads spent in kernels, summed over threads */
    _Atomic uint64_t submissions; /* bumped with every post to `wake`: pool threads busy with
                                     a big job look at it between slices to serve new
                                     requests at once (pool.c run_kernel) */
    uint8_t reserved1[256 - 96 - sizeof(sem_t)];
} sa_control;
/* clang-format on */

_Static_assert(sizeof(sa_slot) == 128, "sa_slot is a wire format");
_Static_assert(offsetof(sa_slot, done) == 56, "sa_slot layout");
_Static_assert(sizeof(sa_client_area) == 128 + 128 * SA_SLOTS_PER_CLIENT, "sa_client_area layout");
_Static_assert(offsetof(sa_client_area, pending) == 64, "sa_client_area layout");
_Static_assert(offsetof(sa_client_area, worker_spinning) == 72, "sa_client_area layout");
_Static_assert(offsetof(sa_client_area, client_pid) == 80, "sa_client_area layout");
_Static_assert(sizeof(sa_control) == 256, "sa_control is a wire format");
_Static_assert(offsetof(sa_control, wake) == 80, "sa_control layout");
_Static_assert(offsetof(sa_control, busy_ns) == 112, "sa_control layout");
_Static_assert(offsetof(sa_control, submissions) == 120, "sa_control layout");

/* Size in bytes of a control segment with `max_clients` seats. Pure. Example:
 * sa_control_size(64) == 256 + 64 * sizeof(sa_client_area). */
static inline size_t
sa_control_size(uint32_t max_clients)
{
    return sizeof(sa_control) + (size_t)max_clients * sizeof(sa_client_area);
}

/* The area of `seat` in the control segment at `ctl`; `seat` must be below the max_clients
 * the segment was made for (unchecked). Example: sa_control_area(ctl, hello.arg32). */
static inline sa_client_area *
sa_control_area(sa_control *ctl, uint32_t seat)
{
    return (sa_client_area *)((char *)ctl + sizeof(sa_control)) + seat;
}

/* ---------------------------------------------------------------------------------------------
 * Session socket messages (SOCK_STREAM, Unix domain). Fixed size; descriptors ride along with
 * SCM_RIGHTS. Worker -> client: HELLO (control segment fd), REPLY, STOPPING.
 * Client -> worker: ARENA_ADD (arena fd; answered by REPLY), ARENA_DEL (one-way), SYNC
 * (answered by REPLY once every earlier message is handled).
 */
/* sa_submit_ex flags */
#define SA_SUBMIT_NOTIFY 1u /* also signal the client's notify socket on completion */

enum sa_msg_type {
    SA_MSG_HELLO = 1,     /* arg32: seat, arg64: control size, status: 0 or error (no fd then) */
    SA_MSG_ARENA_ADD = 2, /* arg32: arena id, arg64: sequence number; fd attached */
    SA_MSG_ARENA_DEL = 3, /* arg32: arena id; no reply */
    SA_MSG_REPLY = 4,     /* arg32, arg64: echoed from the request; status: result */
    SA_MSG_STOPPING = 5,  /* the pool is stopping; no new requests */
    SA_MSG_NOTIFY = 6,    /* socket attached: signalled on completion of SA_SUBMIT_NOTIFY
                             requests; one-way; once per session (later ones ignored) */
    SA_MSG_SYNC = 7,      /* arg64: sequence number; REPLY (status 0) when every message
                             before it is handled (the ARENA_DELs: their room is free) */
};

typedef struct sa_msg {
    uint32_t magic; /* SA_MAGIC */
    uint32_t type;  /* sa_msg_type */
    uint32_t arg32;
    int32_t status;
    uint64_t arg64;
} sa_msg;
_Static_assert(sizeof(sa_msg) == 24, "sa_msg is a wire format");

/* ---------------------------------------------------------------------------------------------
 * The request as the worker sees it once copied out of a slot (never read twice from shared
 * memory) and the validation applied to that copy. Exposed for tests and tools.
 */
typedef struct sa_request {
    uint32_t op;
    uint32_t dtype;
    uint64_t count;
    uint32_t in_arena;
    uint32_t out_arena;
    uint64_t in_offset;
    uint64_t out_offset;
} sa_request;

/* Checks `req` against the sizes of its input and output arenas (from fstat, not from shared
 * memory) and the pool's `max_count`. Returns 0, or SA_EBADOP, SA_EBADDTYPE, SA_ETOOBIG,
 * SA_EBOUNDS (range outside the arena, including arithmetic overflow) or SA_EOVERLAP (output
 * overlaps input without being exactly in place). Pure function; thread-safe. Example:
 *     sa_request req = {SA_OP_SQUARE, SA_FLOAT64, 10, 1, 1, 0, 0};  // 80 bytes, in place
 *     sa_request_validate(&req, 80, 80, 100);   // 0
 *     sa_request_validate(&req, 72, 80, 100);   // SA_EBOUNDS: input arena too small
 *     sa_request_validate(&req, 80, 80, 5);     // SA_ETOOBIG: count above max_count */
int sa_request_validate(const sa_request *req, uint64_t in_arena_size, uint64_t out_arena_size,
                        uint64_t max_count);

/* ---------------------------------------------------------------------------------------------
 * C client API. A client is one session with one worker pool; all functions are thread-safe
 * unless noted. Blocking functions say so.
 */
typedef struct sa_client sa_client;
typedef struct sa_block sa_block;

typedef struct sa_worker_info {
    int32_t worker_pid;
    uint32_t threads;
    uint32_t clients;
    uint32_t seat;
    uint64_t requests;
    uint64_t elements;
    uint64_t errors;
    uint64_t my_requests;
    uint64_t my_elements;
    uint64_t my_errors;
    uint32_t my_in_flight; /* our slots not FREE: claimed, queued, running or abandoned */
    uint32_t reserved;
    double uptime_s;
    double busy_pct; /* kernel time / (uptime * threads), in percent */
} sa_worker_info;

/* Starts a private worker (the program at `worker_path`, with `threads` pool threads, 0 for one
 * per CPU this process may run on (its affinity set), at most SA_MAX_THREADS) connected by a socketpair, and attaches to it. The worker
 * inherits the environment and exits when the client is closed or this process dies (it
 * sees EOF). On success stores a new client in *out and returns 0; on error returns a
 * negative code, starts nothing that outlives the call and leaves *out unchanged: -EINVAL
 * (threads above SA_MAX_THREADS), -ENOENT or -EACCES (no program at worker_path),
 * SA_EWORKERDIED (it exited at once), -ETIMEDOUT (no hello within 10 s), SA_EPROTO / SA_EVERSION (not a worker of
 * this version), -ENOMEM, another -errno. Blocks until the worker has said hello. Example:
 *     sa_client *c;
 *     int err = sa_client_spawn("build/shmaccel-worker", 0, &c);
 *     if (err < 0) {
 *         fprintf(stderr, "cannot start the worker: %s\n", sa_strerror(err));
 *     } */
int sa_client_spawn(const char *worker_path, unsigned threads, sa_client **out);

/* Attaches to the pool listening on `socket_path` (see sa_pool_socket_path). Returns 0 and
 * stores the client in *out, or: -ENOENT when no pool listens there (no socket, or a stale
 * one left by a killed pool), -EPERM when the listener (SO_PEERCRED) or the pool refusing us
 * is of another user, SA_EFULL (every seat taken: the pool's --max-clients), SA_EVERSION,
 * SA_EPROTO, SA_EWORKERDIED (the pool hung up during the hello), -ETIMEDOUT (no hello within
 * 10 s), -ENAMETOOLONG, -ENOMEM or another -errno; *out is unchanged on error. Blocks for
 * the connect and hello. Example:
 *     char path[256];
 *     sa_client *c;
 *     int err = sa_pool_socket_path("mypool", path, sizeof(path));
 *     if (err == 0 && (err = sa_client_connect(path, &c)) == -ENOENT) {
 *         fprintf(stderr, "no pool 'mypool': shmaccel-pool start mypool\n");
 *     } */
int sa_client_connect(const char *socket_path, sa_client **out);

/* Ends the session without freeing anything: shuts the socket down (the worker reclaims our
 * seat; a private worker exits) and, for a private worker, reaps it (SIGKILL after 2 s).
 * Other threads may still be inside calls on c: they return SA_ECLOSED, as every later call
 * does. Cannot fail; idempotent; may block about 2 s reaping a private worker. Example (a
 * thread ending the session that other threads are waiting on, before joining them):
 *     sa_client_shutdown(c);   // their sa_wait/sa_submit return SA_ECLOSED
 *     ... join the other threads ...
 *     sa_client_close(c); */
void sa_client_shutdown(sa_client *c);

/* sa_client_shutdown, then gives up the caller's hold on c: it is freed, with the control
 * mapping and the arenas, once the last block is unreferenced (blocks stay valid memory until
 * then). No other thread may be using c when this is called, nor may the caller use c
 * afterwards. Cannot fail. Example:
 *     sa_block_unref(b);        // blocks first (either order is safe)
 *     sa_client_close(c);       // a private worker exits; a named pool serves on */
void sa_client_close(sa_client *c);

/* For the child of a fork(): drops the inherited session without a word to the worker (closes
 * the descriptors, leaves mappings and blocks alone) so the parent's session is undisturbed.
 * Later calls on c in the child return SA_ECLOSED; the child attaches (or spawns) anew. Takes
 * no lock; cannot fail. The C library already calls it for every client from its own
 * pthread_atfork child handler, so a second call is harmless. Example:
 *     if (fork() == 0) {
 *         sa_client_forget_after_fork(c);   // harmless if already done
 *         sa_client_connect(path, &c);      // the child's own session
 *     } */
void sa_client_forget_after_fork(sa_client *c);

/* 1 if the session is over: the worker is gone (hang-up noticed; the socket is polled at most
 * once a millisecond), the pool is stopping, or c was shut down or forgotten after fork;
 * else 0. Cannot fail. Non-blocking; thread-safe. Example:
 *     if (sa_client_dead(c)) {       // start afresh, as the Python default pool does
 *         sa_client_close(c);
 *         err = sa_client_spawn(worker_path, 0, &c);
 *     } */
int sa_client_dead(sa_client *c);

/* Fills *info from the control segment (figures are a snapshot, not a transaction). Returns 0;
 * SA_EWORKERDIED when the worker is gone, SA_ECLOSED when it is gone after its pool was stopped
 * (sa_pool_stop, shmaccel-pool stop), as calls then say (*info is filled in both, with the last
 * figures); SA_ECLOSED after sa_client_shutdown or in a forked child (*info unchanged). Non-blocking.
 * Example:
 *     sa_worker_info info;
 *     if (sa_client_info(c, &info) == 0) {
 *         printf("pid %d, %u threads, %.1f%% busy\n", (int)info.worker_pid, info.threads,
 *                info.busy_pct);
 *     } */
int sa_client_info(sa_client *c, sa_worker_info *info);

/* One client session of a pool, as the control segment shows it. */
typedef struct sa_seat_info {
    uint32_t seat;
    int32_t pid; /* the client process (SO_PEERCRED at connect) */
    uint64_t requests;
    uint64_t elements;
    uint64_t errors;
    uint32_t in_flight; /* slots not FREE */
    uint32_t reserved;
} sa_seat_info;

/* Fills up to `max` entries of `out` with the pool's attached sessions (this one included)
 * and returns how many (>= 0), or SA_ECLOSED after sa_client_shutdown or in a forked child.
 * Reads shared memory only: figures are a snapshot, not a transaction. Non-blocking. Example:
 *     sa_seat_info seats[64];
 *     int n = sa_client_seats(c, seats, 64);
 *     for (int i = 0; i < n; i++) {
 *         printf("pid %d: %llu requests\n", (int)seats[i].pid,
 *                (unsigned long long)seats[i].requests);
 *     } */
int sa_client_seats(sa_client *c, sa_seat_info *out, uint32_t max);

/* Allocates `nbytes` (> 0) of shared memory inside one of the client's arenas (creating and
 * registering a new arena when none has room; its pages are reserved now, so running out
 * is -ENOMEM here, never a SIGBUS later). The block starts with one reference, owned by the
 * caller; its memory is uninitialised and at least nbytes long (sa_block_size). Returns 0
 * and stores it in *out, or -EINVAL (nbytes 0 or above SIZE_MAX / 2), -ENOMEM (no room in
 * /dev/shm, or malloc failed), SA_EWORKERDIED, SA_ECLOSED, -ETIMEDOUT (the worker did not
 * accept a new arena within 10 s), or another negative code; *out is unchanged on error.
 * May block on a socket round trip to the worker. Thread-safe. Example:
 *     sa_block *b;
 *     if (sa_block_alloc(c, n * sizeof(double), &b) == 0) {
 *         double *x = sa_block_data(b);   // fill x[0] .. x[n-1]
 *     } */
int sa_block_alloc(sa_client *c, size_t nbytes, sa_block **out);
/* sa_block_alloc waiting at most `wait_ns` (-1: up to the 10 s reply limit) for the arena
 * lock and for the worker to accept a new arena; returns -ETIMEDOUT past it (a stopped or
 * wedged worker: nothing is lost, a later call retries) or -EINTR when a signal interrupted
 * the wait for the worker's reply (call again), besides sa_block_alloc's codes. Example:
 *     sa_block *b;
 *     int err = sa_block_alloc_wait(c, 1 << 20, 500000000, &b); // 0.5 s */
int sa_block_alloc_wait(sa_client *c, size_t nbytes, int64_t wait_ns, sa_block **out);
/* sa_block_alloc from the arenas the client already has, never waiting for the arena lock or
 * the worker: returns 0, -EAGAIN when none has room (a new arena, or one whose registration
 * is still unanswered, needs sa_block_alloc_wait) or another thread holds the arena lock,
 * -EINVAL (nbytes 0 or above SIZE_MAX / 2), -ENOMEM (malloc failed), SA_EWORKERDIED or
 * SA_ECLOSED; *out is unchanged on error. It may free blocks other threads released, as
 * sa_block_unref does. A caller that holds a lock of its own (the extension: the GIL)
 * tries it first, and calls sa_block_alloc_wait after releasing that lock only on -EAGAIN.
 * Thread-safe. Example:
 *     sa_block *b;
 *     int err = sa_block_try_alloc(c, 8000, &b);
 *     if (err == -EAGAIN) {
 *         err = sa_block_alloc(c, 8000, &b);   // may wait for the worker
 *     } */
int sa_block_try_alloc(sa_client *c, size_t nbytes, sa_block **out);
/* Adds a reference to b (the caller must hold one already). Cannot fail; thread-safe.
 * Example: another thread keeps b alive while it reads it:
 *     sa_block_ref(b);   // that thread calls sa_block_unref(b) when done */
void sa_block_ref(sa_block *b);
/* Drops a reference; the memory returns to its arena with the last one (a request in flight
 * holds its own, so unreferencing during a call is safe). Never waits for a lock; cannot
 * fail; thread-safe. Example:
 *     sa_block_unref(b);   // b must not be used by this caller afterwards */
void sa_block_unref(sa_block *b);
/* Start of the block's memory, aligned for every dtype (valid while a reference is held; the
 * same mapping the worker reads, so writes need no copy). Cannot fail. Example:
 *     int32_t *x = sa_block_data(b); */
void *sa_block_data(const sa_block *b);
/* Usable size of the block in bytes: at least the nbytes allocated (rounded up to the
 * allocator's alignment, e.g. 64 for 24). Cannot fail. Example:
 *     uint64_t max_count = sa_block_size(b) / sa_dtype_size(SA_FLOAT64); */
size_t sa_block_size(const sa_block *b);
/* The client the block was allocated from (sa_submit takes only blocks of its own client).
 * Cannot fail. Example: assert(sa_block_client(b) == c); */
sa_client *sa_block_client(const sa_block *b);

/* A submitted request, filled in by sa_submit and consumed by sa_wait/sa_cancel. */
typedef struct sa_ticket {
    uint32_t slot;
    uint64_t generation;
} sa_ticket;

/* Submits op over `count` elements of `dtype` from block `in` to block `out` (may be the same
 * block for in place; both from client c). Claims a slot first: when all of the client's slots
 * are busy it waits for one, up to `wait_ns` (-1: forever); returns -ETIMEDOUT if none freed in
 * time, or -EINTR if a signal interrupted that wait (nothing submitted either way). Takes a
 * reference on both blocks until the worker is done with them. Returns 0 and fills *ticket,
 * or a negative code with nothing submitted: SA_EBADOP, SA_EBADDTYPE, SA_EBADARENA (a block
 * of another client), SA_EBOUNDS (count * itemsize larger than a block), SA_ECLOSED (shut
 * down, or the pool is stopping), SA_EWORKERDIED. The worker validates the request again;
 * its verdict (e.g. SA_ETOOBIG) comes back from sa_wait. Thread-safe: each thread may have
 * its own requests in flight (64 slots per client). Example:
 *     sa_ticket t;
 *     int err = sa_submit(c, SA_OP_DOUBLE, SA_INT32, n, in, out, -1, &t);
 *     if (err == 0) {
 *         err = sa_wait(c, &t, -1);
 *     } */
int sa_submit(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in,
              sa_block *out, int64_t wait_ns, sa_ticket *ticket);

/* sa_submit with `flags` (SA_SUBMIT_NOTIFY: when the request completes the worker also writes
 * a byte to the socket returned by sa_client_notify_fd, which must have been called first).
 * Same returns and error codes as sa_submit. Example:
 *     int fd = sa_client_notify_fd(c);
 *     err = sa_submit_ex(c, SA_OP_SQUARE, SA_FLOAT64, n, b, b, -1, SA_SUBMIT_NOTIFY, &t); */
int sa_submit_ex(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in,
                 sa_block *out, int64_t wait_ns, uint32_t flags, sa_ticket *ticket);

/* A socket (non-blocking, close-on-exec, owned by the client: do not close it) that the
 * worker signals when a request submitted with SA_SUBMIT_NOTIFY completes, so that many
 * requests can be waited for with one poll()/select()/event loop reader: when it is
 * readable, read what it holds (a byte per completion) and check your tickets with
 * sa_wait(c, t, 0). Created and sent to the worker on the first call (never waiting for it),
 * then returned again. A request completing before the worker has read that message is not
 * signalled, so also check tickets now and then (e.g. every 100 ms). End of file on it means
 * the worker is gone. Returns the descriptor (>= 0), or SA_ECLOSED, SA_EWORKERDIED or
 * another -errno (socketpair failed). Thread-safe. Example:
 *     struct pollfd p = {.fd = sa_client_notify_fd(c), .events = POLLIN};
 *     poll(&p, 1, 100);                         // then drain it with read()
 *     err = sa_wait(c, &t, 0);                  // -ETIMEDOUT: not finished yet */
int sa_client_notify_fd(sa_client *c);

/* Waits up to `wait_ns` (-1: forever, 0: poll) for the request to finish. Returns 0 when it
 * completed successfully, the worker's negative status when it failed (SA_EBADOP,
 * SA_EBADDTYPE, SA_EBADARENA, SA_EBOUNDS, SA_EOVERLAP, SA_ETOOBIG, SA_EFAULT; the ticket is
 * consumed either way), -ETIMEDOUT when still running or -EINTR when a signal interrupted the
 * wait (call again or cancel), SA_EWORKERDIED or SA_ECLOSED when the session is over (the
 * ticket is consumed; a dead worker is noticed within 50 ms), -EINVAL for a ticket that is
 * not one. Any other negative code: cancel the ticket. Blocking; touches no Python state.
 * Example:
 *     do {
 *         err = sa_wait(c, &t, 1000000000);   // 1 s slices: check for shutdown between
 *     } while (err == -ETIMEDOUT || err == -EINTR); */
int sa_wait(sa_client *c, const sa_ticket *ticket, int64_t wait_ns);

/* Gives up on a request that sa_wait has not consumed. The slot is freed at once if the worker
 * has not started it, otherwise the worker frees it when done; the blocks' references are held
 * until then, so a late write never lands in reused memory. Returns -ECANCELED if the request
 * was cancelled (or the ticket was already consumed), or, if it had completed in the
 * meantime, its status like sa_wait (0: the output is valid); -EINVAL for a ticket that is
 * not one. The ticket is consumed. Non-blocking. Example (a deadline passed):
 *     err = sa_cancel(c, &t);
 *     if (err == -ECANCELED) {
 *         err = -ETIMEDOUT;   // out was not (fully) written; 0 would mean it was
 *     } */
int sa_cancel(sa_client *c, const sa_ticket *ticket);

/* Convenience: sa_submit (waiting as long as it takes for a slot), then sa_wait with no time
 * limit, retrying -EINTR. Returns 0 when out holds the result, or a negative code: those of
 * sa_submit and sa_wait (SA_EWORKERDIED within 50 ms of a worker's death). Blocking; it
 * cannot be cancelled (use sa_submit + sa_wait for a deadline).
 * Example:
 *     int err = sa_run(c, SA_OP_SQUARE, SA_FLOAT64, n, b, b);   // in place
 *     if (err < 0) {
 *         fprintf(stderr, "%s\n", sa_strerror(err));
 *     } */
int sa_run(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in, sa_block *out);

/* The per-user runtime directory for pool sockets ($XDG_RUNTIME_DIR/shmaccel when
 * XDG_RUNTIME_DIR is an absolute path, else /tmp/shmaccel-<uid>), written to buf. With
 * `create`, makes it 0700 if missing. Returns 0, -EPERM for a directory that is not one, is
 * owned by another user or is open to others (never used), -ENOENT when it does not exist
 * (without `create`), -ENAMETOOLONG when buf is too small, or another -errno. Example:
 *     char dir[256];
 *     if (sa_runtime_dir(dir, sizeof(dir), 0) == 0) {
 *         printf("pool sockets live in %s\n", dir);
 *     } */
int sa_runtime_dir(char *buf, size_t len, int create);
/* Socket path of the pool called `name` into buf (<runtime dir>/<name>.sock); touches no
 * file. Returns 0, -EINVAL for an invalid name (1-64 chars of [A-Za-z0-9._-], not starting
 * with '.'), -ENAMETOOLONG when buf is too small, -EPERM for a runtime directory that is not
 * ours (see sa_runtime_dir), or another -errno. Example:
 *     char path[256];
 *     int err = sa_pool_socket_path("mypool", path, sizeof(path));
 *     // path: "/run/user/1000/shmaccel/mypool.sock"; then sa_client_connect(path, &c) */
int sa_pool_socket_path(const char *name, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SHMACCEL_H */
