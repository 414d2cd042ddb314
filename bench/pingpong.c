/* pingpong.c -- the round-trip floor between two processes: semaphore wake-ups and spinning.
 *
 * The yardstick for a shmaccel call: a parent and a forked child bounce a token through a
 * MAP_SHARED anonymous page, over two process-shared semaphores (both sides sleep: a round trip
 * is two futex wake-ups) or over two C11 atomics (both sides spin: two cache-line transfers).
 * Prints one JSON object to stdout, {"median", "min", "max"} in microseconds for each figure
 * (sem_rtt_us, spin_rtt_us, and the placements below) over --repeats timed runs of --iters
 * round trips (ten times as many for spin). Errors go to stderr, exit status 1.
 *
 *   pingpong [--repeats R] [--iters N]      defaults: 7 repeats, 20000 round trips
 */
#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_REPEATS 7
#define DEFAULT_ITERS 20000
#define MAX_REPEATS 1000
#define SPIN_FACTOR 10           /* spin runs do this many times more round trips */
#define WARMUP_ITERS 500         /* untimed round trips before each measurement */
#define RUN_BUDGET_NS 100000000u /* a timed run stops after this long, whatever its count */
#define BUDGET_CHECK_EVERY 64    /* round trips between clock reads */
#define COLD_GAP_NS 200000u      /* sleep before each "cold" round trip */
#define CACHE_LINE 64

/* The shared page. The spin words sit on their own cache lines so that each round trip moves
 * exactly one line each way and neither side's polling disturbs the other's store. */
typedef struct shared {
    sem_t ping;
    sem_t pong;
    _Atomic uint32_t stop; /* set by the parent (before a last ping) to end the child */
    _Alignas(CACHE_LINE) _Atomic uint64_t ping_seq; /* written by the parent only */
    _Alignas(CACHE_LINE) _Atomic uint64_t pong_seq; /* written by the child only */
    _Alignas(CACHE_LINE) char pad[CACHE_LINE];
} shared;

typedef enum mode { MODE_SEM, MODE_SPIN } mode;

/* Where the two processes run: CPU numbers, or -1 for wherever the scheduler likes. */
typedef struct placement {
    int parent_cpu;
    int child_cpu;
} placement;

typedef struct stats {
    double median;
    double min;
    double max;
} stats;

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Returns 0, or -errno. Retries EINTR. */
static int
sem_wait_nointr(sem_t *sem)
{
    int r;
    do {
        r = sem_wait(sem);
    } while (r == -1 && errno == EINTR);
    return r == 0 ? 0 : -errno;
}

/* Pins the calling process to `cpu` (-1: leaves it alone). Returns 0 or -errno. */
static int
pin_to(int cpu)
{
    cpu_set_t set;
    if (cpu < 0) {
        return 0;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

/* Busy-waits until *word == want or the stop flag is set. With a single CPU the other side
 * cannot run while we spin, so yield instead of burning the whole time slice (the figure is
 * then meaningless anyway; the JSON says "spin_yields"). Returns 1 if told to stop. */
static inline int
spin_until(shared *sh, _Atomic uint64_t *word, uint64_t want, int yield)
{
    while (atomic_load_explicit(word, memory_order_acquire) != want) {
        if (atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
            return 1;
        }
        if (yield) {
            sched_yield();
        } else {
            cpu_relax();
        }
    }
    return 0;
}

/* The child's side: answers pings until the parent sets `stop`. Returns 0 or -errno. */
static int
child_loop(shared *sh, mode m, int yield)
{
    for (uint64_t i = 1;; i++) {
        if (m == MODE_SEM) {
            int err = sem_wait_nointr(&sh->ping);
            if (err != 0) {
                return err;
            }
            /* The parent sets `stop` before its final post, and sem_post/sem_wait order
             * memory, so the flag is visible here once that post has been consumed. */
            if (atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
                return 0;
            }
            if (sem_post(&sh->pong) != 0) {
                return -errno;
            }
        } else {
            if (spin_until(sh, &sh->ping_seq, i, yield)) {
                return 0;
            }
            atomic_store_explicit(&sh->pong_seq, i, memory_order_release);
        }
    }
}

/* Sleeps `ns` nanoseconds (EINTR ends it early, which only shortens a gap). */
static void
sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

/* Runs up to `count` round trips from the parent's side, continuing the sequence from *seq,
 * stopping early once `budget_ns` has passed; with a `gap_ns`, sleeps that long before each
 * round trip. Stores the number done in *done and the time spent in round trips (gaps left
 * out) in *busy_ns. Returns 0 or -errno. */
static int
parent_round_trips(shared *sh, mode m, uint64_t count, uint64_t budget_ns, uint64_t gap_ns,
                   uint64_t *seq, int yield, uint64_t *done, uint64_t *busy_ns)
{
    uint64_t start = now_ns(), busy = 0, trip_start = start;
    uint64_t i;
    for (i = 0; i < count; i++) {
        uint64_t next = ++*seq;
        if (gap_ns > 0) {
            sleep_ns(gap_ns);
            trip_start = now_ns();
        }
        if (m == MODE_SEM) {
            if (sem_post(&sh->ping) != 0) {
                return -errno;
            }
            int err = sem_wait_nointr(&sh->pong);
            if (err != 0) {
                return err;
            }
        } else {
            /* The release store publishes the ping; the child's acquire load pairs with it,
             * and the same pairing in the other direction orders the pong. */
            atomic_store_explicit(&sh->ping_seq, next, memory_order_release);
            spin_until(sh, &sh->pong_seq, next, yield);
        }
        if (gap_ns > 0) {
            uint64_t end = now_ns();
            busy += end - trip_start;
            if (end - start >= budget_ns) {
                i++;
                break;
            }
        } else if ((i + 1) % BUDGET_CHECK_EVERY == 0 && now_ns() - start >= budget_ns) {
            i++;
            break;
        }
    }
    *done = i;
    *busy_ns = gap_ns > 0 ? busy : now_ns() - start;
    return 0;
}

static int
compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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

/* Forks a child that answers pings in mode `m`, times `repeats` runs of (up to) `iters` round
 * trips with both sides placed as `where` (and `gap_ns` of sleep before each), and stores the
 * mean round-trip time of each run, in microseconds, in rtt_us[]. Returns 0 or -errno. The
 * child is always reaped (killed first on error) and the parent's CPU affinity restored. */
static int
measure(shared *sh, mode m, placement where, uint64_t gap_ns, int repeats, uint64_t iters,
        int yield, double *rtt_us)
{
    uint64_t seq = 0, done = 0, busy = 0;
    pid_t child = -1;
    int err = 0, status = 0, restore = 0;
    cpu_set_t saved;

    atomic_store(&sh->stop, 0);
    atomic_store(&sh->ping_seq, 0);
    atomic_store(&sh->pong_seq, 0);
    /* Fresh semaphores for each measurement, so that no post is left over from the last. */
    if (sem_init(&sh->ping, 1, 0) != 0 || sem_init(&sh->pong, 1, 0) != 0) {
        return -errno;
    }
    if (sched_getaffinity(0, sizeof(saved), &saved) != 0) {
        err = -errno;
        goto out;
    }
    restore = 1;
    fflush(stdout);
    child = fork();
    if (child < 0) {
        err = -errno;
        goto out;
    }
    if (child == 0) {
        /* A child polling a page nobody will write again must not outlive its parent. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1 || pin_to(where.child_cpu) != 0) {
            _exit(1);
        }
        _exit(child_loop(sh, m, yield) == 0 ? 0 : 1);
    }
    err = pin_to(where.parent_cpu);
    if (err == 0) {
        err = parent_round_trips(sh, m, WARMUP_ITERS, RUN_BUDGET_NS / 4, gap_ns, &seq, yield, &done,
                                 &busy);
    }
    for (int r = 0; r < repeats && err == 0; r++) {
        err = parent_round_trips(sh, m, iters, RUN_BUDGET_NS, gap_ns, &seq, yield, &done, &busy);
        rtt_us[r] = (double)busy / 1e3 / (double)done;
    }
out:
    if (child > 0) {
        /* Set stop before the last post: the child reads it after consuming that post. */
        atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
        sem_post(&sh->ping);
        if (err != 0) {
            kill(child, SIGKILL);
        }
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        if (err == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            err = -ECHILD;
        }
    }
    if (restore) {
        sched_setaffinity(0, sizeof(saved), &saved);
    }
    sem_destroy(&sh->ping);
    sem_destroy(&sh->pong);
    return err;
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

/* Stores the first two CPUs this process may run on in cpus[] (cpus[1] = -1 if only one).
 * Returns 0 or -errno. */
static int
allowed_cpus(int cpus[2])
{
    cpu_set_t set;
    int found = 0;
    cpus[0] = cpus[1] = -1;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return -errno;
    }
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++) {
        if (CPU_ISSET(cpu, &set)) {
            cpus[found++] = cpu;
        }
    }
    return found > 0 ? 0 : -ENODEV;
}

static void
print_stats(const char *name, stats s)
{
    printf("  \"%s\": {\"median\": %.4f, \"min\": %.4f, \"max\": %.4f},\n", name, s.median, s.min,
           s.max);
}

int
main(int argc, char **argv)
{
    enum { SEM, SPIN, SEM_SAME, SEM_CROSS, SEM_COLD, SEM_COLD_CROSS, NKINDS };
    static const char *const names[NKINDS] = {
        "sem_rtt_us",           "spin_rtt_us",     "sem_same_cpu_rtt_us",
        "sem_cross_cpu_rtt_us", "sem_cold_rtt_us", "sem_cold_cross_cpu_rtt_us",
    };
    long repeats = DEFAULT_REPEATS, iters = DEFAULT_ITERS;
    shared *sh = MAP_FAILED;
    double *rtt[NKINDS] = {NULL};
    int cpus[2], other, single;
    placement anywhere = {-1, -1}, same, cross;
    int err = 0, rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
            err = parse_count(argv[++i], MAX_REPEATS, &repeats);
        } else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            err = parse_count(argv[++i], 100000000L / SPIN_FACTOR, &iters);
        } else {
            err = -EINVAL;
        }
        if (err != 0) {
            fprintf(stderr, "usage: %s [--repeats R] [--iters N]\n", argv[0]);
            return 2;
        }
    }

    for (int k = 0; k < NKINDS; k++) {
        rtt[k] = calloc((size_t)repeats, sizeof(double));
        if (rtt[k] == NULL) {
            err = -ENOMEM;
            goto out;
        }
    }
    err = allowed_cpus(cpus);
    if (err != 0) {
        goto out;
    }
    /* With one CPU there is no "other" CPU: the cross placements degrade to the same CPU and
     * the spinners yield. */
    single = cpus[1] < 0;
    other = single ? cpus[0] : cpus[1];
    same = (placement){cpus[0], cpus[0]};
    cross = (placement){cpus[0], other};

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        err = -errno;
        goto out;
    }
    /* Where the two sides run decides the semaphore figure several-fold under a hypervisor:
     * woken on the waker's CPU (about to sleep) a round trip is two context switches; woken on
     * another, idle CPU it is two cross-CPU wake-ups. Idleness matters too: an idle vCPU the
     * host has stopped polling takes longer to wake. So besides the unpinned figure (the
     * scheduler's choice, as for shmaccel's worker) both placements are measured pinned, and
     * "cold": after COLD_GAP_NS of sleep before each round trip, as a client calling a pool
     * that has gone back to sleep. Spinners go on two CPUs, or they would take turns. */
    err = measure(sh, MODE_SEM, anywhere, 0, (int)repeats, (uint64_t)iters, 0, rtt[SEM]);
    if (err == 0) {
        err = measure(sh, MODE_SPIN, cross, 0, (int)repeats, (uint64_t)iters * SPIN_FACTOR, single,
                      rtt[SPIN]);
    }
    if (err == 0) {
        err = measure(sh, MODE_SEM, same, 0, (int)repeats, (uint64_t)iters, 0, rtt[SEM_SAME]);
    }
    if (err == 0) {
        err = measure(sh, MODE_SEM, cross, 0, (int)repeats, (uint64_t)iters, 0, rtt[SEM_CROSS]);
    }
    if (err == 0) {
        err = measure(sh, MODE_SEM, anywhere, COLD_GAP_NS, (int)repeats, (uint64_t)iters, 0,
                      rtt[SEM_COLD]);
    }
    if (err == 0) {
        err = measure(sh, MODE_SEM, cross, COLD_GAP_NS, (int)repeats, (uint64_t)iters, 0,
                      rtt[SEM_COLD_CROSS]);
    }
    if (err != 0) {
        goto out;
    }

    printf("{\n");
    for (int k = 0; k < NKINDS; k++) {
        print_stats(names[k], summarize(rtt[k], (int)repeats));
    }
    printf("  \"repeats\": %ld,\n  \"sem_iters\": %ld,\n  \"spin_iters\": %ld,\n", repeats, iters,
           iters * SPIN_FACTOR);
    printf("  \"run_budget_ms\": %u,\n  \"cold_gap_us\": %u,\n", RUN_BUDGET_NS / 1000000u,
           COLD_GAP_NS / 1000u);
    printf("  \"cpus\": [%d, %d],\n  \"online_cpus\": %ld,\n  \"spin_yields\": %s\n}\n", cpus[0],
           other, sysconf(_SC_NPROCESSORS_ONLN), single ? "true" : "false");
    rc = fflush(stdout) == 0 ? 0 : 1;

out:
    if (err != 0) {
        fprintf(stderr, "pingpong: %s\n", strerror(-err));
    }
    if (sh != MAP_FAILED) {
        munmap(sh, sizeof(*sh));
    }
    for (int k = 0; k < NKINDS; k++) {
        free(rtt[k]);
    }
    return rc;
}
