/* c_client.c -- example: square a float64 array in place on a named shmaccel pool, from C.
 *
 *   c_client POOLNAME [N]
 *
 * Attaches to the pool started with `scripts/shmaccel-pool start POOLNAME`, allocates N
 * float64 elements (default 1000000) in shared memory, fills them, has the pool square them in
 * place, checks every result and prints the worker's pid and the time the call took. Every
 * shmaccel function returns 0 (or more) on success and a negative code on failure, which
 * sa_strerror() turns into a message. Build and run: see examples/README.md.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime with -std=c11 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shmaccel.h"

/* sa_wait blocks for at most this long per call; we then simply wait again. A real program
 * would use these wake-ups to check for a shutdown request, report progress, etc. */
#define WAIT_SLICE_NS INT64_C(1000000000) /* 1 s */
/* Past this much waiting we give up on the request with sa_cancel. */
#define GIVE_UP_NS INT64_C(60000000000) /* 60 s */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses N: a positive integer whose float64 array fits in a size_t. Returns 0 or -1. */
static int
parse_count(const char *text, uint64_t *count)
{
    char *end;
    unsigned long long value;

    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value == 0
        || value > SIZE_MAX / sizeof(double)) {
        return -1;
    }
    *count = value;
    return 0;
}

/* Waits for the request behind `ticket`. sa_wait returns -ETIMEDOUT when the slice ran out
 * and -EINTR when a signal handler (installed without SA_RESTART) interrupted it: neither
 * means the request failed, so we wait again, up to GIVE_UP_NS in all. Returns 0 or a
 * negative code. */
static int
wait_for(sa_client *client, const sa_ticket *ticket)
{
    int64_t waited_ns = 0;
    int err, cancelled;

    for (;;) {
        err = sa_wait(client, ticket, WAIT_SLICE_NS);
        if (err == -ETIMEDOUT) {
            waited_ns += WAIT_SLICE_NS;
            if (waited_ns >= GIVE_UP_NS) {
                break;
            }
        } else if (err != -EINTR) {
            break;
        }
    }
    /* 0, the request's own error, SA_EWORKERDIED and SA_ECLOSED all consume the ticket. */
    if (err == 0 || err == SA_EWORKERDIED || err == SA_ECLOSED) {
        return err;
    }
    /* Otherwise give the request up. Cancelling a ticket that sa_wait already consumed is
     * harmless (-ECANCELED); one that finished in the meantime returns its status (0: the
     * result is valid). The pool holds its own reference on the block until it has stopped
     * writing to it, so freeing the block afterwards is safe either way. */
    cancelled = sa_cancel(client, ticket);
    return cancelled == -ECANCELED ? err : cancelled;
}

int
main(int argc, char **argv)
{
    const char *pool_name;
    uint64_t count = 1000000;
    char socket_path[256];
    sa_client *client = NULL; /* failure sentinels: `out:` frees whatever was made */
    sa_block *block = NULL;
    sa_ticket ticket;
    sa_worker_info info;
    double *x, started, elapsed;
    uint64_t wrong = 0;
    int err, status = 1;

    if (argc < 2 || argc > 3 || (argc == 3 && parse_count(argv[2], &count) < 0)) {
        fprintf(stderr, "usage: %s POOLNAME [N]   (N > 0 float64 elements, default 1000000)\n",
                argv[0]);
        return 2;
    }
    pool_name = argv[1];

    /* 1. Find the pool's socket (in $XDG_RUNTIME_DIR/shmaccel or /tmp/shmaccel-<uid>) and
     *    attach: the pool gives us a seat and maps its control segment into our process. */
    err = sa_pool_socket_path(pool_name, socket_path, sizeof(socket_path));
    if (err < 0) {
        fprintf(stderr,
                "c_client: bad pool name '%s': %s (1-64 chars of [A-Za-z0-9._-], "
                "not starting with '.')\n",
                pool_name, sa_strerror(err));
        goto out;
    }
    err = sa_client_connect(socket_path, &client);
    if (err == -ENOENT) {
        fprintf(stderr,
                "c_client: no pool named '%s' is running (%s: %s)\n"
                "start one with: scripts/shmaccel-pool start %s\n",
                pool_name, socket_path, sa_strerror(err), pool_name);
        goto out;
    }
    if (err < 0) {
        fprintf(stderr, "c_client: cannot attach to pool '%s': %s\n", pool_name, sa_strerror(err));
        goto out;
    }

    /* 2. Allocate the array in shared memory: the pool reads and writes it where it is, with
     *    no copy. The block starts with one reference, ours. */
    err = sa_block_alloc(client, (size_t)count * sizeof(double), &block);
    if (err < 0) {
        fprintf(stderr, "c_client: cannot allocate %llu float64: %s\n", (unsigned long long)count,
                sa_strerror(err));
        goto out;
    }
    x = sa_block_data(block);
    for (uint64_t i = 0; i < count; i++) {
        x[i] = (double)(i % 1000) * 0.5;
    }

    /* 3. Square in place: the same block as input and output. sa_submit returns as soon as
     *    the request is queued (it waits up to 1 s for a free slot if all 64 of ours are busy);
     *    sa_wait then blocks on a semaphore until the pool's threads are done. sa_run() does
     *    both in one call, with no timeout. */
    started = now_s();
    err = sa_submit(client, SA_OP_SQUARE, SA_FLOAT64, count, block, block, WAIT_SLICE_NS, &ticket);
    if (err < 0) {
        fprintf(stderr, "c_client: submit failed: %s\n", sa_strerror(err));
        goto out;
    }
    err = wait_for(client, &ticket);
    elapsed = now_s() - started;
    if (err < 0) {
        fprintf(stderr, "c_client: square failed: %s\n", sa_strerror(err));
        goto out;
    }

    /* 4. Check every element against the same product computed here. */
    for (uint64_t i = 0; i < count; i++) {
        double v = (double)(i % 1000) * 0.5;
        wrong += x[i] != v * v;
    }
    if (wrong != 0) {
        fprintf(stderr, "c_client: %llu of %llu results are wrong\n", (unsigned long long)wrong,
                (unsigned long long)count);
        goto out;
    }

    err = sa_client_info(client, &info);
    if (err < 0) {
        fprintf(stderr, "c_client: cannot read the pool's figures: %s\n", sa_strerror(err));
        goto out;
    }
    printf("squared %llu float64 in place on pool '%s' (worker pid %d, %u threads) "
           "in %.3f ms: all correct\n",
           (unsigned long long)count, pool_name, (int)info.worker_pid, info.threads, elapsed * 1e3);
    status = 0;

out:
    /* Blocks first, then the client: sa_client_close frees the arenas once the last block
     * is unreferenced. Closing ends our session; the pool keeps running for others. */
    if (block != NULL) {
        sa_block_unref(block);
    }
    if (client != NULL) {
        sa_client_close(client);
    }
    return status;
}
