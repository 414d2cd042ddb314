/* limit.c -- the machine's limit for shmaccel's `square` and `double`, in plain C on every core.
 *
 * One pthread per online CPU (or --threads), each pinned to its own CPU while there are enough
 * (left to the scheduler, two threads sometimes end up sharing one), works on its share of
 * 10^7 (or N) elements of --dtype (int32, int64 or float64) in
 * pre-touched MAP_SHARED anonymous memory (shared memory like an arena, with no name to leave
 * behind): the --op in place, the --op out of place, and memcpy, the memory system's own
 * ceiling for one read plus one write. Throughput counts bytes read plus bytes written,
 * 2 * itemsize per element for all three, as bench.py counts shmaccel's and numpy's. The
 * kernels are the plain loops of src/kernels.c (integers computed in unsigned arithmetic, so
 * that they wrap modulo 2^bits) and are meant to be built as it is (-O3, no -march): the limit
 * of the code shmaccel runs, not of hand-tuned code. Prints one JSON object: the settings, and
 * {"median", "min", "max"} of seconds and GB/s over --repeats timed runs after a warm-up.
 * Threads are started and memory touched before any timing: a timed run is one spin-barrier
 * hand-off to threads already spinning, the work, and one barrier back. Errors go to stderr,
 * exit 1.
 *
 * With --serve it stays up instead, so that a benchmark can sample the limit between its own
 * calls, each sample a moment apart from what it bounds rather than a process start (and 2N
 * elements of fresh memory) apart: it prints {"ready": ...} once set up, then reads one task
 * a line ("inplace", "out" or "memcpy") and answers each with the seconds of one timed run,
 * until end of input. Between tasks its threads sleep, leaving the CPUs to others; woken, they
 * meet at a spin barrier before the clock starts, so the wake-up is not timed.
 *
 *   limit [N] [--repeats R] [--threads T] [--dtype int32|int64|float64] [--op square|double]
 *         [--serve]
 *   defaults: N = 10^7 elements, 7 repeats, one thread per CPU, float64, square
 *
 * Built with -shared -DLIMIT_LIBRARY it is instead a library with one function, limit_here(),
 * that times one run over memory the caller already has: a benchmark passes a SharedArray's
 * own pages, so that the limit and shmaccel read and write the very same memory (under a
 * hypervisor, how fast a page is depends on how the host backs it, not only on the code).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifdef LIMIT_LIBRARY
/* The library uses the kernels and the threads, not the command line nor the printing. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#endif

#define DEFAULT_COUNT 10000000L
#define DEFAULT_REPEATS 7
#define MAX_REPEATS 1000
#define MAX_THREADS 1024
#define SPINS_BEFORE_YIELD 4096 /* barrier polls before giving the CPU away between polls */

/* The op in place, the op out of place, memcpy. Each reads and writes itemsize bytes per
 * element. (An out-of-place store also costs the hardware a read for ownership of the
 * destination line, which is why out of place trails in place.) */
typedef enum task { TASK_INPLACE, TASK_OUT, TASK_MEMCPY, TASK_COUNT } task;

/* The JSON keys are "<op>_<suffix>_s" and "<op>_<suffix>_gbs" for the op's tasks (for the
 * default op the keys bench.py reads: "square_out_gbs", ...), "memcpy_s" and "memcpy_gbs". */
static const char *const task_suffixes[TASK_COUNT] = {"inplace", "out", NULL};
/* The tasks as --serve and limit_here() name them. */
static const char *const task_names[TASK_COUNT] = {"inplace", "out", "memcpy"};

/* X(name, element type, type the expression is computed in): the DTYPE_LIST rows of
 * src/kernels.c for the dtypes measured here. */
#define DTYPE_LIST(X) \
    X(int32, int32_t, uint32_t) \
    X(int64, int64_t, uint64_t) \
    X(float64, double, double)

/* X(name, expression in x, ...): SA_OP_LIST of include/shmaccel.h. */
/* clang-format off */
#define OP_LIST(X, ...) \
    X(square, (x) * (x), __VA_ARGS__) \
    X(double, (x) * 2, __VA_ARGS__)
/* clang-format on */

#define DTYPE_ENUM(DT, T, W) DTYPE_##DT,
typedef enum dtype { DTYPE_LIST(DTYPE_ENUM) DTYPE_COUNT } dtype;
#undef DTYPE_ENUM

#define OP_ENUM(name, expr, ...) OP_##name,
typedef enum op { OP_LIST(OP_ENUM, ~) OP_COUNT } op;
#undef OP_ENUM

#define DTYPE_NAME(DT, T, W) #DT,
static const char *const dtype_names[DTYPE_COUNT] = {DTYPE_LIST(DTYPE_NAME)};
#undef DTYPE_NAME

#define DTYPE_SIZE(DT, T, W) sizeof(T),
static const size_t dtype_sizes[DTYPE_COUNT] = {DTYPE_LIST(DTYPE_SIZE)};
#undef DTYPE_SIZE

#define OP_NAME(name, expr, ...) #name,
static const char *const op_names[OP_COUNT] = {OP_LIST(OP_NAME, ~)};
#undef OP_NAME

/* A spinning barrier. The threads are ours and one per CPU, so they may as well poll: a
 * sleeping barrier would put a futex wake-up (tens of microseconds under a hypervisor) inside
 * every timed run, and the limit is meant to be the kernel's, not the hand-off's. Past
 * SPINS_BEFORE_YIELD polls a waiter yields between polls, in case there are more threads
 * than CPUs. */
typedef struct spin_barrier {
    _Atomic unsigned arrived;
    _Atomic unsigned phase;
    unsigned parties;
} spin_barrier;

typedef void (*inplace_fn)(void *a, size_t n);
typedef void (*out_fn)(const void *in, void *out, size_t n);

typedef struct bench {
    unsigned char *a;
    unsigned char *b;
    size_t count;
    size_t itemsize;
    inplace_fn inplace; /* the op's kernels for the dtype */
    out_fn out;
    void (*fill)(void *a, void *b, size_t first, size_t n); /* the dtype's starting values */
    unsigned threads;
    spin_barrier start;
    spin_barrier finish;
    task current; /* written by the main thread before `start`, read by all after it */
    int quit;     /* likewise: set instead of a task to end the helpers */
    /* --serve: helpers sleep on `wake` until `generation` moves, then meet at `ready`. */
    int serve;
    int borrowed; /* limit_here: the caller's memory, already filled: not touched */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    unsigned generation;
    spin_barrier ready;
} bench;

typedef struct helper {
    bench *bench;
    unsigned index;
    int cpu; /* the CPU to pin this thread to, or -1 */
} helper;

typedef struct stats {
    double median;
    double min;
    double max;
} stats;

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Returns once all `parties` threads have called it. The last to arrive resets the count and
 * then opens the barrier by bumping the phase with a release store; the waiters' acquire loads
 * of the phase pair with it, so everything written before the barrier by any thread (the task,
 * the results) is visible to every thread after it. */
static void
spin_barrier_wait(spin_barrier *b)
{
    unsigned phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) + 1 == b->parties) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->phase, phase + 1, memory_order_release);
        return;
    }
    for (unsigned spins = 0; atomic_load_explicit(&b->phase, memory_order_acquire) == phase;
         spins++) {
        if (spins < SPINS_BEFORE_YIELD) {
            cpu_relax();
        } else {
            sched_yield();
        }
    }
}

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The kernels, kept out of line so that each is compiled (and vectorized) once, as in
 * src/kernels.c, rather than specialised for the call site: the loop of KERNEL_FN there, and
 * the same loop over one array in place. Narrowing the unsigned result back to a signed type
 * wraps modulo 2^bits with gcc and clang, as there. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* as there */
#define KERNEL_ATTR __attribute__((noinline, target_clones("avx512f", "avx2", "default")))
#else
#define KERNEL_ATTR __attribute__((noinline))
#endif
#define KERNELS(name, expr, DT, T, W) \
    KERNEL_ATTR static void name##_inplace_##DT(void *a_, size_t n) \
    { \
        T *a = a_; \
        for (size_t i = 0; i < n; i++) { \
            W x = (W)a[i]; \
            a[i] = (T)(expr); \
        } \
    } \
    KERNEL_ATTR static void name##_out_##DT(const void *in_, void *out_, size_t n) \
    { \
        const T *in = in_; \
        T *out = out_; \
        for (size_t i = 0; i < n; i++) { \
            W x = (W)in[i]; \
            out[i] = (T)(expr); \
        } \
    }
#define KERNELS_FOR_DTYPE(DT, T, W) OP_LIST(KERNELS, DT, T, W)
DTYPE_LIST(KERNELS_FOR_DTYPE)
#undef KERNELS_FOR_DTYPE

#define INPLACE_ENTRY(name, expr, DT, T, W) [OP_##name][DTYPE_##DT] = name##_inplace_##DT,
#define INPLACE_FOR_DTYPE(DT, T, W) OP_LIST(INPLACE_ENTRY, DT, T, W)
static const inplace_fn inplace_kernels[OP_COUNT][DTYPE_COUNT] = {DTYPE_LIST(INPLACE_FOR_DTYPE)};
#undef INPLACE_FOR_DTYPE

#define OUT_ENTRY(name, expr, DT, T, W) [OP_##name][DTYPE_##DT] = name##_out_##DT,
#define OUT_FOR_DTYPE(DT, T, W) OP_LIST(OUT_ENTRY, DT, T, W)
static const out_fn out_kernels[OP_COUNT][DTYPE_COUNT] = {DTYPE_LIST(OUT_FOR_DTYPE)};
#undef OUT_FOR_DTYPE

/* Elements [first, first + n) of a become 1, of b 0. One squares to itself and doubles to at
 * most 2^(MAX_REPEATS + 1) in the floats, so repeated in-place runs never reach subnormals
 * (slow on many CPUs) or infinities and every run does the same work; integers take the same
 * time whatever they hold. */
#define FILL(DT, T, W) \
    static void fill_##DT(void *a_, void *b_, size_t first, size_t n) \
    { \
        T *a = a_, *b = b_; \
        for (size_t i = first; i < first + n; i++) { \
            a[i] = (T)1; \
            b[i] = (T)0; \
        } \
    }
DTYPE_LIST(FILL)
#undef FILL

#define FILL_ENTRY(DT, T, W) [DTYPE_##DT] = fill_##DT,
static void (*const fills[DTYPE_COUNT])(void *, void *, size_t, size_t) = {DTYPE_LIST(FILL_ENTRY)};
#undef FILL_ENTRY

/* Thread `index` of `threads` owns elements [*first, *first + *n): contiguous shares that
 * differ by at most one element. */
static void
share_of(size_t count, unsigned threads, unsigned index, size_t *first, size_t *n)
{
    size_t base = count / threads, extra = count % threads;
    *first = index * base + (index < extra ? index : extra);
    *n = base + (index < extra ? 1 : 0);
}

static void
run_share(bench *b, task t, unsigned index)
{
    size_t first, n;
    share_of(b->count, b->threads, index, &first, &n);
    first *= b->itemsize;
    switch (t) {
    case TASK_INPLACE:
        b->inplace(b->a + first, n);
        break;
    case TASK_OUT:
        b->out(b->a + first, b->b + first, n);
        break;
    case TASK_MEMCPY:
        memcpy(b->b + first, b->a + first, n * b->itemsize);
        break;
    default:
        break;
    }
}

/* Each thread touches its own share first, so that on a NUMA machine its pages are local. */
static void
touch_share(bench *b, unsigned index)
{
    size_t first, n;
    share_of(b->count, b->threads, index, &first, &n);
    b->fill(b->a, b->b, first, n);
}

/* Pins the calling thread to `cpu` (-1: leaves it alone). Returns 0 or -errno. */
static int
pin_thread(int cpu)
{
    cpu_set_t set;
    if (cpu < 0) {
        return 0;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Fills cpus[0..n) with the CPUs this process may run on, one per thread, when there are at
 * least n of them; otherwise with -1 (no pinning). Returns 1 if pinned, else 0. */
static int
choose_cpus(int *cpus, unsigned n)
{
    cpu_set_t allowed;
    unsigned found = 0;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE && found < n; cpu++) {
            if (CPU_ISSET(cpu, &allowed)) {
                cpus[found++] = cpu;
            }
        }
    }
    if (found < n) {
        for (unsigned i = 0; i < n; i++) {
            cpus[i] = -1;
        }
        return 0;
    }
    return 1;
}

/* --serve: sleeps until the main thread moves the generation past *seen, then meets the
 * others at the `ready` barrier. */
static void
await_task(bench *b, unsigned *seen)
{
    pthread_mutex_lock(&b->lock);
    while (b->generation == *seen) {
        pthread_cond_wait(&b->wake, &b->lock);
    }
    *seen = b->generation;
    pthread_mutex_unlock(&b->lock);
    spin_barrier_wait(&b->ready);
}

/* --serve, main thread: wakes the helpers for the next task (or to quit). */
static void
release_helpers(bench *b)
{
    pthread_mutex_lock(&b->lock);
    b->generation++;
    pthread_cond_broadcast(&b->wake);
    pthread_mutex_unlock(&b->lock);
    spin_barrier_wait(&b->ready);
}

static void *
helper_main(void *arg)
{
    helper *h = arg;
    bench *b = h->bench;
    unsigned seen = 0;
    pin_thread(h->cpu); /* best effort: unpinned, the figures are merely less reliable */
    if (!b->borrowed) {
        touch_share(b, h->index);
    }
    spin_barrier_wait(&b->finish);
    for (;;) {
        if (b->serve) {
            await_task(b, &seen);
        }
        /* The barrier orders the main thread's writes of current/quit before our reads. */
        spin_barrier_wait(&b->start);
        if (b->quit) {
            return NULL;
        }
        run_share(b, b->current, h->index);
        spin_barrier_wait(&b->finish);
    }
}

/* Times one run of `t` on all threads, the main thread doing share 0. Returns seconds. */
static double
timed_run(bench *b, task t)
{
    uint64_t start = now_ns();
    b->current = t;
    spin_barrier_wait(&b->start);
    run_share(b, t, 0);
    spin_barrier_wait(&b->finish);
    return (double)(now_ns() - start) / 1e9;
}

static int
compare_double(const void *x, const void *y)
{
    double p = *(const double *)x, q = *(const double *)y;
    return (p > q) - (p < q);
}

static stats
summarize(double *values, int n)
{
    stats s;
    qsort(values, (size_t)n, sizeof(*values), compare_double);
    s.min = values[0];
    s.max = values[n - 1];
    s.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    return s;
}

/* Parses a positive integer no larger than `max` into *out. Returns 0 or -EINVAL. */
static int
parse_count(const char *text, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 1 || v > max) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* Sets *out to the index of `text` in names[0..n). Returns 0 or -EINVAL. */
static int
parse_name(const char *text, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Maps `bytes` of shared anonymous memory into *out. Returns 0 or -errno. */
static int
map_shared(size_t bytes, unsigned char **out)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    *out = p;
    return 0;
}

/* Sets up b for `threads` threads running op `which` on dtype dt: sizes, kernels, barriers. */
static void
use_kernels(bench *b, unsigned threads, int dt, int which)
{
    b->threads = threads;
    b->itemsize = dtype_sizes[dt];
    b->inplace = inplace_kernels[which][dt];
    b->out = out_kernels[which][dt];
    b->fill = fills[dt];
    b->start.parties = b->finish.parties = b->ready.parties = threads;
}

/* Starts helpers 1 .. b->threads - 1, helper i pinned to cpus[i]. Returns how many threads
 * there are with the caller (b->threads unless pthread_create failed: then *err is its code
 * and the helpers started wait at `finish` for the others). */
static unsigned
start_helpers(bench *b, helper *helpers, pthread_t *tids, const int *cpus, int *err)
{
    unsigned started;
    *err = 0;
    for (started = 1; started < b->threads; started++) {
        helpers[started] = (helper){.bench = b, .index = started, .cpu = cpus[started]};
        *err = pthread_create(&tids[started], NULL, helper_main, &helpers[started]);
        if (*err != 0) {
            break;
        }
    }
    return started;
}

/* Ends the helper threads (started - 1 of them) and joins them. */
static void
stop_helpers(bench *b, unsigned started, pthread_t *tids)
{
    b->quit = 1;
    if (b->serve) {
        release_helpers(b);
    }
    spin_barrier_wait(&b->start);
    for (unsigned i = 1; i < started; i++) {
        pthread_join(tids[i], NULL);
    }
}

/* --serve: one timed run per task named on a line of stdin, its seconds on a line of stdout,
 * until end of input. Returns the exit code. */
static int
serve_tasks(bench *b)
{
    char line[64];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        int t;
        if (parse_name(line, task_names, TASK_COUNT, &t) != 0) {
            fprintf(stderr, "limit: unknown task \"%s\" (inplace, out or memcpy)\n", line);
            return 2;
        }
        release_helpers(b);
        printf("%.9f\n", timed_run(b, (task)t));
        if (fflush(stdout) != 0) {
            return 1;
        }
    }
    return 0;
}

#ifdef LIMIT_LIBRARY
int limit_here(void *a, void *b, size_t count, const char *dtype_name, const char *op_name,
               const char *task_name, unsigned threads, double *seconds);

/* One timed run of task_name ("inplace": a op= a; "out": b = op(a); "memcpy") over `count`
 * elements of dtype_name at a and b, on `threads` threads (0: one per CPU this process may run
 * on), each pinned to its own CPU when there are enough. The threads are started and meet at
 * a spin barrier before the clock starts; their start-up is not timed. Sets *seconds. Returns
 * 0, -EINVAL (an unknown name, no memory, no elements) or -errno. Not thread-safe: one run at
 * a time. */
int
limit_here(void *a, void *b, size_t count, const char *dtype_name, const char *op_name,
           const char *task_name, unsigned threads, double *seconds)
{
    bench lb = {.a = a, .b = b, .count = count, .borrowed = 1};
    helper helpers[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int cpus[MAX_THREADS];
    int dt, which, t, err;
    unsigned started;

    if (a == NULL || b == NULL || count == 0 || threads > MAX_THREADS
        || parse_name(dtype_name, dtype_names, DTYPE_COUNT, &dt) != 0
        || parse_name(op_name, op_names, OP_COUNT, &which) != 0
        || parse_name(task_name, task_names, TASK_COUNT, &t) != 0) {
        return -EINVAL;
    }
    if (threads == 0) {
        cpu_set_t allowed;
        threads = sched_getaffinity(0, sizeof(allowed), &allowed) == 0
                      ? (unsigned)CPU_COUNT(&allowed)
                      : 1;
    }
    use_kernels(&lb, threads > count ? (unsigned)count : threads, dt, which);
    /* The calling thread does share 0 on the CPU it is on (pinning it would outlast the call):
     * the helpers take the others. */
    if (choose_cpus(cpus, lb.threads)) {
        int here = sched_getcpu();
        for (unsigned i = 1; i < lb.threads; i++) {
            if (cpus[i] == here) {
                cpus[i] = cpus[0];
                cpus[0] = here;
            }
        }
    }
    started = start_helpers(&lb, helpers, tids, cpus, &err);
    if (err != 0) {
        /* Let the helpers that did start in through a barrier of their own count, end them,
         * and time nothing on fewer threads. */
        lb.threads = started;
        lb.start.parties = lb.finish.parties = lb.ready.parties = started;
        spin_barrier_wait(&lb.finish);
        stop_helpers(&lb, started, tids);
        return -err;
    }
    spin_barrier_wait(&lb.finish);
    *seconds = timed_run(&lb, (task)t);
    stop_helpers(&lb, started, tids);
    return 0;
}

#else

int
main(int argc, char **argv)
{
    long count = DEFAULT_COUNT, repeats = DEFAULT_REPEATS, threads = 0;
    int dt = DTYPE_float64, which = OP_square;
    bench b = {.a = NULL, .b = NULL};
    helper *helpers = NULL;
    pthread_t *tids = NULL;
    int *cpus = NULL;
    int pinned;
    double *seconds[TASK_COUNT] = {NULL};
    unsigned started = 0;
    int err = 0, rc = 1;
    size_t bytes = 0;
    double bytes_per_elem;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
            err = parse_count(argv[++i], MAX_REPEATS, &repeats);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            err = parse_count(argv[++i], MAX_THREADS, &threads);
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            err = parse_name(argv[++i], dtype_names, DTYPE_COUNT, &dt);
        } else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) {
            err = parse_name(argv[++i], op_names, OP_COUNT, &which);
        } else if (strcmp(argv[i], "--serve") == 0) {
            b.serve = 1;
        } else if (argv[i][0] != '-') {
            err = parse_count(argv[i], 1L << 34, &count);
        } else {
            err = -EINVAL;
        }
        if (err != 0) {
            fprintf(stderr,
                    "usage: %s [N] [--repeats R] [--threads T] [--dtype int32|int64|float64] "
                    "[--op square|double] [--serve]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online < 1 ? 1 : online > MAX_THREADS ? MAX_THREADS : online;
    }
    if (threads > count) {
        threads = count;
    }
    b.count = (size_t)count;
    use_kernels(&b, (unsigned)threads, dt, which);
    bytes_per_elem = 2.0 * (double)b.itemsize;
    bytes = b.count * b.itemsize;

    for (int t = 0; t < TASK_COUNT; t++) {
        seconds[t] = calloc((size_t)repeats, sizeof(double));
        if (seconds[t] == NULL) {
            err = -ENOMEM;
            goto out;
        }
    }
    helpers = calloc(b.threads, sizeof(*helpers));
    tids = calloc(b.threads, sizeof(*tids));
    cpus = calloc(b.threads, sizeof(*cpus));
    if (helpers == NULL || tids == NULL || cpus == NULL) {
        err = -ENOMEM;
        goto out;
    }
    err = map_shared(bytes, &b.a);
    if (err == 0) {
        err = map_shared(bytes, &b.b);
    }
    if (err != 0) {
        goto out;
    }
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.wake, NULL);
    pinned = choose_cpus(cpus, b.threads);
    pin_thread(cpus[0]);
    started = start_helpers(&b, helpers, tids, cpus, &err);
    if (err != 0) {
        /* The barriers count on every thread: without them all, none can be passed. */
        fprintf(stderr, "limit: pthread_create: %s\n", strerror(err));
        _exit(1);
    }
    touch_share(&b, 0);
    spin_barrier_wait(&b.finish);

    if (b.serve) {
        for (int t = 0; t < TASK_COUNT; t++) {
            release_helpers(&b);
            timed_run(&b, (task)t); /* warm-up */
        }
        printf("{\"ready\": true, \"dtype\": \"%s\", \"op\": \"%s\", \"n\": %ld, "
               "\"threads\": %u, \"pinned\": %s, \"bytes_per_elem\": %.0f}\n",
               dtype_names[dt], op_names[which], count, b.threads, pinned ? "true" : "false",
               bytes_per_elem);
        rc = fflush(stdout) == 0 ? serve_tasks(&b) : 1;
        stop_helpers(&b, started, tids);
        goto out;
    }
    for (int t = 0; t < TASK_COUNT; t++) {
        timed_run(&b, (task)t); /* warm-up: caches, TLB, CPU frequency */
        for (long r = 0; r < repeats; r++) {
            seconds[t][r] = timed_run(&b, (task)t);
        }
    }
    stop_helpers(&b, started, tids);

    printf("{\n  \"dtype\": \"%s\",\n  \"op\": \"%s\",\n", dtype_names[dt], op_names[which]);
    printf("  \"n\": %ld,\n  \"threads\": %u,\n  \"repeats\": %ld,\n", count, b.threads, repeats);
    printf("  \"pinned\": %s,\n  \"bytes_per_elem\": %.0f,\n", pinned ? "true" : "false",
           bytes_per_elem);
    for (int t = 0; t < TASK_COUNT; t++) {
        stats s = summarize(seconds[t], (int)repeats);
        double gb = bytes_per_elem * (double)count / 1e9;
        char key[32];
        if (task_suffixes[t] != NULL) {
            snprintf(key, sizeof(key), "%s_%s", op_names[which], task_suffixes[t]);
        } else {
            snprintf(key, sizeof(key), "memcpy");
        }
        /* The fastest time gives the highest throughput: min and max swap over. */
        printf("  \"%s_s\": {\"median\": %.9f, \"min\": %.9f, \"max\": %.9f},\n", key, s.median,
               s.min, s.max);
        printf("  \"%s_gbs\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f}%s\n", key,
               gb / s.median, gb / s.max, gb / s.min, t + 1 < TASK_COUNT ? "," : "");
    }
    printf("}\n");
    rc = fflush(stdout) == 0 ? 0 : 1;

out:
    if (err != 0) {
        fprintf(stderr, "limit: %s\n", strerror(-err));
    }
    if (b.a != NULL) {
        munmap(b.a, bytes);
    }
    if (b.b != NULL) {
        munmap(b.b, bytes);
    }
    free(helpers);
    free(tids);
    free(cpus);
    for (int t = 0; t < TASK_COUNT; t++) {
        free(seconds[t]);
    }
    return rc;
}

#endif /* LIMIT_LIBRARY */
