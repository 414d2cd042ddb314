/* steady.c -- counts the allocations a C client makes per call once it is warm.
 *
 * Linked against build/libshmaccel.a with -Wl,--wrap for the allocator (malloc, calloc,
 * realloc, free, posix_memalign) and for the calls that would set up shared memory (mmap,
 * munmap, shm_open, memfd_create, ftruncate, posix_fallocate): every call the library or this
 * file makes to one of them goes through a counter here first. Calls glibc makes internally
 * (inside snprintf, posix_spawn...) are not seen; the heap's in-use bytes (mallinfo2) cover
 * those. The program starts a private worker, allocates two blocks of COUNT float64, runs
 * WARMUP squares from one into the other, then CALLS more, and prints one JSON object to stdout:
 * the counts during those CALLS, and under "before_steady" those of start-up and warm-up,
 * which show that the wrappers do see the library's calls. Errors go to stderr, exit status 1.
 *
 *   steady WORKER_PATH [--calls N] [--warmup W] [--count C] [--threads T]
 *       defaults: 1000000 calls, 10000 warm-up calls, 1000 elements, one thread per CPU
 *
 * Built by scripts/bench_steady.py (it prints the command line).
 */
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "shmaccel.h"

#define DEFAULT_CALLS 1000000u
#define DEFAULT_WARMUP 10000u
#define DEFAULT_COUNT 1000u

/* -- the counting wrappers ------------------------------------------------------------------
 * Each counter is bumped before the real call, relaxed: only the totals matter, read once the
 * calls are over (and the library may call from more than one thread). */

typedef enum counted {
    C_MALLOC,
    C_CALLOC,
    C_REALLOC,
    C_FREE,
    C_POSIX_MEMALIGN,
    C_MMAP,
    C_MUNMAP,
    C_SHM_OPEN,
    C_MEMFD_CREATE,
    C_FTRUNCATE,
    C_POSIX_FALLOCATE,
    C__COUNT
} counted;

static const char *const counted_name[C__COUNT] = {
    "malloc", "calloc",   "realloc",      "free",      "posix_memalign",  "mmap",
    "munmap", "shm_open", "memfd_create", "ftruncate", "posix_fallocate",
};

static _Atomic uint64_t counts[C__COUNT];

static inline void
bump(counted what)
{
    atomic_fetch_add_explicit(&counts[what], 1, memory_order_relaxed);
}

/* The real functions, as the linker names them under --wrap, and our replacements. */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
int __real_posix_memalign(void **p, size_t alignment, size_t size);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
int __real_shm_open(const char *name, int oflag, mode_t mode);
int __real_memfd_create(const char *name, unsigned int flags);
int __real_ftruncate(int fd, off_t len);
int __real_posix_fallocate(int fd, off_t off, off_t len);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);
int __wrap_posix_memalign(void **p, size_t alignment, size_t size);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_munmap(void *addr, size_t len);
int __wrap_shm_open(const char *name, int oflag, mode_t mode);
int __wrap_memfd_create(const char *name, unsigned int flags);
int __wrap_ftruncate(int fd, off_t len);
int __wrap_posix_fallocate(int fd, off_t off, off_t len);

void *
__wrap_malloc(size_t size)
{
    bump(C_MALLOC);
    return __real_malloc(size);
}

void *
__wrap_calloc(size_t n, size_t size)
{
    bump(C_CALLOC);
    return __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t size)
{
    bump(C_REALLOC);
    return __real_realloc(p, size);
}

void
__wrap_free(void *p)
{
    bump(C_FREE);
    __real_free(p);
}

int
__wrap_posix_memalign(void **p, size_t alignment, size_t size)
{
    bump(C_POSIX_MEMALIGN);
    return __real_posix_memalign(p, alignment, size);
}

void *
__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    bump(C_MMAP);
    return __real_mmap(addr, len, prot, flags, fd, off);
}

int
__wrap_munmap(void *addr, size_t len)
{
    bump(C_MUNMAP);
    return __real_munmap(addr, len);
}

int
__wrap_shm_open(const char *name, int oflag, mode_t mode)
{
    bump(C_SHM_OPEN);
    return __real_shm_open(name, oflag, mode);
}

int
__wrap_memfd_create(const char *name, unsigned int flags)
{
    bump(C_MEMFD_CREATE);
    return __real_memfd_create(name, flags);
}

int
__wrap_ftruncate(int fd, off_t len)
{
    bump(C_FTRUNCATE);
    return __real_ftruncate(fd, len);
}

int
__wrap_posix_fallocate(int fd, off_t off, off_t len)
{
    bump(C_POSIX_FALLOCATE);
    return __real_posix_fallocate(fd, off, len);
}

/* -- the measurement ------------------------------------------------------------------------ */

typedef struct options {
    const char *worker_path;
    uint64_t calls;
    uint64_t warmup;
    uint64_t count;
    unsigned threads;
} options;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses a non-negative integer no larger than `max`. Returns 0 or -1. */
static int
parse_u64(const char *text, uint64_t max, uint64_t *value)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v > max) {
        return -1;
    }
    *value = v;
    return 0;
}

static int
parse_options(int argc, char **argv, options *opt)
{
    uint64_t threads = 0;

    if (argc < 2 || argv[1][0] == '-') {
        return -1;
    }
    opt->worker_path = argv[1];
    opt->calls = DEFAULT_CALLS;
    opt->warmup = DEFAULT_WARMUP;
    opt->count = DEFAULT_COUNT;
    opt->threads = 0;
    for (int i = 2; i < argc; i += 2) {
        uint64_t *target;
        uint64_t max = UINT64_MAX / 2;

        if (i + 1 >= argc) {
            return -1;
        }
        if (strcmp(argv[i], "--calls") == 0) {
            target = &opt->calls;
        } else if (strcmp(argv[i], "--warmup") == 0) {
            target = &opt->warmup;
        } else if (strcmp(argv[i], "--count") == 0) {
            target = &opt->count;
            max = SIZE_MAX / sizeof(double);
        } else if (strcmp(argv[i], "--threads") == 0) {
            target = &threads;
            max = 1024;
        } else {
            return -1;
        }
        if (parse_u64(argv[i + 1], max, target) < 0) {
            return -1;
        }
    }
    if (opt->count == 0) {
        return -1;
    }
    opt->threads = (unsigned)threads;
    return 0;
}

/* Runs `calls` squares of `in` into `out`. Returns 0 or the first negative code. */
static int
run_calls(sa_client *client, const options *opt, uint64_t calls, sa_block *in, sa_block *out)
{
    for (uint64_t i = 0; i < calls; i++) {
        int err = sa_run(client, SA_OP_SQUARE, SA_FLOAT64, opt->count, in, out);
        if (err < 0) {
            return err;
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    options opt;
    sa_client *client = NULL; /* failure sentinels: `out:` frees whatever was made */
    sa_block *in = NULL, *out_block = NULL;
    uint64_t snapshot[C__COUNT], setup[C__COUNT];
    struct mallinfo2 heap_before, heap_after;
    double started, elapsed;
    double *x;
    int err, status = 1;

    if (parse_options(argc, argv, &opt) < 0) {
        fprintf(stderr,
                "usage: %s WORKER_PATH [--calls N] [--warmup W] [--count C] "
                "[--threads T]\n",
                argv[0]);
        return 2;
    }
    err = sa_client_spawn(opt.worker_path, opt.threads, &client);
    if (err < 0) {
        fprintf(stderr, "steady: cannot start the worker %s: %s\n", opt.worker_path,
                sa_strerror(err));
        goto out;
    }
    err = sa_block_alloc(client, (size_t)opt.count * sizeof(double), &in);
    if (err == 0) {
        err = sa_block_alloc(client, (size_t)opt.count * sizeof(double), &out_block);
    }
    if (err < 0) {
        fprintf(stderr, "steady: cannot allocate two blocks of %llu float64: %s\n",
                (unsigned long long)opt.count, sa_strerror(err));
        goto out;
    }
    x = sa_block_data(in);
    for (uint64_t i = 0; i < opt.count; i++) {
        x[i] = (double)(i % 1000) * 0.5;
    }

    err = run_calls(client, &opt, opt.warmup, in, out_block);
    if (err < 0) {
        fprintf(stderr, "steady: warm-up call failed: %s\n", sa_strerror(err));
        goto out;
    }
    /* The counters go on counting; the steady phase is the difference. */
    for (int i = 0; i < C__COUNT; i++) {
        snapshot[i] = setup[i] = atomic_load_explicit(&counts[i], memory_order_relaxed);
    }
    heap_before = mallinfo2();
    started = now_s();
    err = run_calls(client, &opt, opt.calls, in, out_block);
    elapsed = now_s() - started;
    heap_after = mallinfo2();
    if (err < 0) {
        fprintf(stderr, "steady: call failed: %s\n", sa_strerror(err));
        goto out;
    }
    for (int i = 0; i < C__COUNT; i++) {
        snapshot[i] = atomic_load_explicit(&counts[i], memory_order_relaxed) - snapshot[i];
    }

    printf("{\"calls\": %llu, \"warmup\": %llu, \"count\": %llu, \"seconds\": %.6f",
           (unsigned long long)opt.calls, (unsigned long long)opt.warmup,
           (unsigned long long)opt.count, elapsed);
    for (int i = 0; i < C__COUNT; i++) {
        printf(", \"%s\": %llu", counted_name[i], (unsigned long long)snapshot[i]);
    }
    /* What start-up and warm-up made: proof that the wrappers see the library's calls. */
    printf(", \"before_steady\": {");
    for (int i = 0; i < C__COUNT; i++) {
        printf("%s\"%s\": %llu", i ? ", " : "", counted_name[i], (unsigned long long)setup[i]);
    }
    printf("}, \"heap_in_use_change_bytes\": %lld}\n",
           (long long)heap_after.uordblks - (long long)heap_before.uordblks);
    status = 0;

out:
    /* Blocks first: the client frees its arenas once the last block is unreferenced. */
    if (in != NULL) {
        sa_block_unref(in);
    }
    if (out_block != NULL) {
        sa_block_unref(out_block);
    }
    if (client != NULL) {
        sa_client_close(client);
    }
    return status;
}
