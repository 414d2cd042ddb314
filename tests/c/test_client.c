/* test_client.c -- the C client against real worker processes: results, concurrency, big
 * split requests, tampered slots, cancellation, worker death, named pools. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctest.h"
#include "internal.h"

extern char **environ;

/* A worker started here gets this many 10 ms looks to start listening (10 s: a loaded machine
 * may take a while to run a new process; a worker that never listens still fails the test). */
#define START_WAIT_TRIES 1000

static const char *
worker(void)
{
    const char *w = getenv("SHMACCEL_WORKER");
    return w != NULL ? w : "build/shmaccel-worker";
}

static sa_client *
spawn(unsigned threads)
{
    sa_client *c = NULL;
    int err = sa_client_spawn(worker(), threads, &c);
    if (err < 0) {
        fprintf(stderr, "  spawn %s: %s\n", worker(), sa_strerror(err));
    }
    return c;
}

static int
process_gone(pid_t pid)
{
    for (int i = 0; i < 400; i++) {
        if (kill(pid, 0) < 0 && errno == ESRCH) {
            return 1;
        }
        usleep(5000);
    }
    return 0;
}

static void
client_runs_every_op_and_dtype(void)
{
    sa_client *c = spawn(2);
    sa_block *in = NULL, *out = NULL;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_block_alloc(c, 1000 * 8, &in), 0);
    CHECK_EQ(sa_block_alloc(c, 1000 * 8, &out), 0);
    for (uint32_t op = 1; op <= SA_OP_MAX; op++) {
        int32_t *x = sa_block_data(in), *y = sa_block_data(out);
        for (int i = 0; i < 1000; i++) {
            x[i] = i - 500;
        }
        CHECK_EQ(sa_run(c, op, SA_INT32, 1000, in, out), 0);
        for (int i = 0; i < 1000; i++) {
            CHECK_EQ(y[i], op == SA_OP_DOUBLE ? x[i] * 2 : x[i] * x[i]);
        }
        double *dx = sa_block_data(in);
        for (int i = 0; i < 1000; i++) {
            dx[i] = i * 0.5;
        }
        CHECK_EQ(sa_run(c, op, SA_FLOAT64, 1000, in, in), 0); /* in place */
        for (int i = 0; i < 1000; i++) {
            double v = i * 0.5;
            CHECK(dx[i] == (op == SA_OP_DOUBLE ? v * 2 : v * v));
        }
    }
    sa_block_unref(in);
    sa_block_unref(out);
    sa_client_close(c);
}

/* sa_block_try_alloc takes room from the arenas there are, and never waits: not for the
 * arena lock, not for a new arena (-EAGAIN for both, nothing allocated). */
static void
try_alloc_takes_room_it_has_and_never_waits(void)
{
    sa_client *c = spawn(1);
    sa_block *first = NULL, *b = NULL, *x = NULL;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_block_alloc(c, 64, &first), 0); /* an arena with room */
    CHECK_EQ(sa_block_try_alloc(c, 1000 * 8, &b), 0);
    CHECK(b != NULL && b != first);
    if (b != NULL) {
        double *v = sa_block_data(b);
        for (int i = 0; i < 1000; i++) {
            v[i] = i;
        }
        CHECK_EQ(sa_run(c, SA_OP_DOUBLE, SA_FLOAT64, 1000, b, b), 0);
        CHECK(v[999] == 1998.0);
        sa_block_unref(b);
    }
    size_t mapped = c->mapped, used = first->arena->used;
    CHECK_EQ(sa_block_try_alloc(c, (size_t)1 << 30, &x), -EAGAIN); /* would need an arena */
    CHECK_EQ(c->mapped, mapped);
    CHECK_EQ(first->arena->used, used);
    /* The lock held, as another thread in the middle of an allocation would: trylock fails
     * for its owner too (POSIX), and this client runs no thread of its own that takes it. */
    pthread_mutex_lock(&c->lock);
    CHECK_EQ(sa_block_try_alloc(c, 64, &x), -EAGAIN);
    sa_block_unref(first); /* deferred: the lock is held */
    CHECK(atomic_load(&c->deferred) != NULL);
    pthread_mutex_unlock(&c->lock);
    CHECK(x == NULL);
    CHECK_EQ(sa_block_try_alloc(c, 0, &x), -EINVAL);
    CHECK_EQ(sa_block_try_alloc(c, SIZE_MAX, &x), -EINVAL);
    CHECK(x == NULL);
    CHECK_EQ(sa_block_try_alloc(c, 64, &x), 0); /* and frees the deferred block */
    CHECK(atomic_load(&c->deferred) == NULL);
    if (x != NULL) {
        sa_block_unref(x);
        x = NULL;
    }
    sa_client_shutdown(c);
    CHECK_EQ(sa_block_try_alloc(c, 64, &x), SA_ECLOSED);
    CHECK(x == NULL);
    sa_client_close(c);
}

static void
client_splits_big_requests_correctly(void)
{
    const size_t n = 3000017;
    sa_client *c = spawn(2);
    sa_block *b = NULL;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_block_alloc(c, n * 8, &b), 0);
    int64_t *x = sa_block_data(b);
    for (size_t i = 0; i < n; i++) {
        x[i] = (int64_t)i;
    }
    CHECK_EQ(sa_run(c, SA_OP_SQUARE, SA_INT64, n, b, b), 0);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad += x[i] != (int64_t)(i * i);
    }
    CHECK_EQ(bad, 0);
    sa_block_unref(b);
    sa_client_close(c);
}

typedef struct {
    sa_client *c;
    int seed;
    int errors;
} thread_arg;

static void *
hammer(void *p)
{
    thread_arg *a = p;
    for (int k = 0; k < 300; k++) {
        size_t n = (size_t)((a->seed * 7919 + k * 104729) % 20000) + 1;
        sa_block *b = NULL;
        if (sa_block_alloc(a->c, n * 4, &b) < 0) {
            a->errors++;
            continue;
        }
        float *x = sa_block_data(b);
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)(i % 1000) + (float)a->seed;
        }
        if (sa_run(a->c, SA_OP_DOUBLE, SA_FLOAT32, n, b, b) < 0) {
            a->errors++;
        }
        for (size_t i = 0; i < n; i++) {
            if (x[i] != 2 * ((float)(i % 1000) + (float)a->seed)) {
                a->errors++;
                break;
            }
        }
        sa_block_unref(b);
    }
    return NULL;
}

static void
client_serves_many_threads_at_once(void)
{
    enum { T = 16 };
    sa_client *c = spawn(2);
    pthread_t tids[T];
    thread_arg args[T];
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    for (int t = 0; t < T; t++) {
        args[t] = (thread_arg){c, t, 0};
        pthread_create(&tids[t], NULL, hammer, &args[t]);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(tids[t], NULL);
        CHECK_EQ(args[t].errors, 0);
    }
    sa_worker_info info;
    CHECK_EQ(sa_client_info(c, &info), 0);
    CHECK_EQ(info.my_requests, T * 300);
    CHECK_EQ(info.errors, 0);
    sa_client_close(c);
}

/* Writes a raw request into a claimed slot, as a buggy or hostile client would. */
static int
raw_request(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, uint32_t arena,
            uint64_t in_off, uint64_t out_off)
{
    sa_slot *slot = &c->area->slots[SA_SLOTS_PER_CLIENT - 1];
    uint64_t word = atomic_load(&slot->state);
    uint64_t gen = sa_slot_word_gen(word);
    sa_ticket t = {SA_SLOTS_PER_CLIENT - 1, gen};
    int r;

    if (sa_slot_word_state(word) != SA_SLOT_FREE) {
        return -999;
    }
    sem_wait(&c->area->slot_free);
    atomic_store(&slot->state, sa_slot_word(gen, SA_SLOT_CLAIMED));
    atomic_store(&slot->op, op);
    atomic_store(&slot->dtype, dtype);
    atomic_store(&slot->count, count);
    atomic_store(&slot->in_arena, arena);
    atomic_store(&slot->out_arena, arena);
    atomic_store(&slot->in_offset, in_off);
    atomic_store(&slot->out_offset, out_off);
    atomic_store(&slot->state, sa_slot_word(gen, SA_SLOT_SUBMITTED));
    atomic_fetch_or(&c->area->pending, UINT64_C(1) << (SA_SLOTS_PER_CLIENT - 1));
    sem_post(&c->ctl->wake);
    r = sa_wait(c, &t, 5000000000);
    return r;
}

static void
worker_rejects_malformed_slots_and_survives(void)
{
    sa_client *c = spawn(2);
    sa_block *b = NULL;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_block_alloc(c, 4096, &b), 0);
    uint32_t id = b->arena->id;
    uint64_t size = b->arena->size;
    CHECK_EQ(raw_request(c, 77, SA_FLOAT64, 1, id, 0, 0), SA_EBADOP);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, 99, 1, id, 0, 0), SA_EBADDTYPE);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, SA_FLOAT64, 1, 500, 0, 0), SA_EBADARENA);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, SA_FLOAT64, 1, 5000, 0, 0), SA_EBADARENA);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, SA_FLOAT64, size / 8 + 1, id, 0, 0), SA_EBOUNDS);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, SA_FLOAT64, 2, id, size - 8, 0), SA_EBOUNDS);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, SA_FLOAT64, 1, id, UINT64_MAX - 7, 0), SA_EBOUNDS);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, SA_FLOAT64, UINT64_MAX / 2, id, 0, 0), SA_ETOOBIG);
    CHECK_EQ(raw_request(c, SA_OP_SQUARE, SA_FLOAT64, 16, id, 0, 8), SA_EOVERLAP);
    /* Still alive and correct. */
    double *x = sa_block_data(b);
    x[0] = 3;
    CHECK_EQ(sa_run(c, SA_OP_SQUARE, SA_FLOAT64, 1, b, b), 0);
    CHECK(x[0] == 9);
    sa_worker_info info;
    CHECK_EQ(sa_client_info(c, &info), 0);
    CHECK_EQ(info.errors, 9);
    sa_block_unref(b);
    sa_client_close(c);
}

static void
cancelled_request_never_completes_a_later_one(void)
{
    const size_t big = 40u << 20; /* 40 M float32: long enough to still be running */
    /* The first big request stalls for 300 ms just before it completes, so at least one round
     * cancels a request that is certainly still running, whatever the scheduler does to this
     * thread. Later rounds take what comes: a client preempted for longer than the kernel takes
     * sees the big request finish, and that round then has nothing to cancel. */
    setenv("SHMACCEL_FAULT", "worker-before-complete:sleep=300", 1);
    sa_client *c = spawn(1);
    unsetenv("SHMACCEL_FAULT");
    sa_block *b = NULL, *s = NULL;
    sa_ticket t;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_block_alloc(c, big * 4, &b), 0);
    CHECK_EQ(sa_block_alloc(c, 64, &s), 0);
    int cancelled = 0;
    for (int round = 0; round < 20; round++) {
        CHECK_EQ(sa_submit(c, SA_OP_DOUBLE, SA_FLOAT32, big, b, b, -1, &t), 0);
        int w = sa_wait(c, &t, 100000);
        CHECK(w == -ETIMEDOUT || (w == 0 && round > 0));
        if (w == -ETIMEDOUT) {
            int r = sa_cancel(c, &t);
            CHECK(r == -ECANCELED || r == 0);
            cancelled++;
        }
        /* A small request right after: it must see its own completion, not the big one's. */
        float *x = sa_block_data(s);
        x[0] = 5;
        CHECK_EQ(sa_run(c, SA_OP_SQUARE, SA_FLOAT32, 1, s, s), 0);
        CHECK(x[0] == 25);
    }
    CHECK(cancelled >= 1);
    sa_block_unref(b);
    sa_block_unref(s);
    sa_client_close(c);
}

static void
worker_death_is_reported_not_hung(void)
{
    sa_client *c = spawn(1);
    sa_block *b = NULL;
    sa_worker_info info;
    sa_ticket t;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_block_alloc(c, (size_t)200 << 20, &b), 0);
    CHECK_EQ(sa_client_info(c, &info), 0);
    CHECK_EQ(sa_submit(c, SA_OP_DOUBLE, SA_FLOAT32, 50u << 20, b, b, -1, &t), 0);
    kill(info.worker_pid, SIGKILL);
    uint64_t start = sa__now_ns();
    int r;
    do {
        r = sa_wait(c, &t, 2000000000);
    } while (r == -EINTR);
    CHECK(r == SA_EWORKERDIED || r == 0); /* 0 if it finished before the kill */
    CHECK(sa__now_ns() - start < 1500000000u);
    CHECK(sa_client_dead(c));
    /* The consumed ticket gave back its references: ours is the only one left. */
    CHECK_EQ(atomic_load(&b->refs), 1);
    sa_block_unref(b);
    sa_client_close(c);
    CHECK(process_gone(info.worker_pid));
}

static void
private_worker_exits_when_client_closes(void)
{
    sa_client *c = spawn(1);
    sa_worker_info info;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_client_info(c, &info), 0);
    CHECK(kill(info.worker_pid, 0) == 0);
    sa_client_close(c);
    CHECK(process_gone(info.worker_pid));
}

static void
spawn_refuses_thread_counts_above_the_limit(void)
{
    sa_client *c = NULL;
    CHECK_EQ(sa_client_spawn(worker(), SA_MAX_THREADS + 1, &c), -EINVAL);
    CHECK_EQ(sa_client_spawn(worker(), UINT_MAX, &c), -EINVAL);
    CHECK(c == NULL); /* *out untouched, no worker started */
}

static void
named_pool_serves_two_clients(void)
{
    char name[64], path[512];
    pid_t pid;
    sa_client *a = NULL, *b = NULL;
    int err = -1;

    snprintf(name, sizeof(name), "ctest-%d", (int)getpid());
    char *argv[] = {(char *)worker(), "--name", name, "--threads", "2", NULL};
    CHECK_EQ(posix_spawn(&pid, worker(), NULL, NULL, argv, environ), 0);
    CHECK_EQ(sa_pool_socket_path(name, path, sizeof(path)), 0);
    for (int i = 0; i < START_WAIT_TRIES && err < 0; i++) {
        err = sa_client_connect(path, &a);
        if (err < 0) {
            usleep(10000);
        }
    }
    CHECK_EQ(err, 0);
    CHECK_EQ(sa_client_connect(path, &b), 0);
    if (a != NULL && b != NULL) {
        sa_worker_info ia, ib;
        sa_block *x = NULL;
        CHECK_EQ(sa_client_info(a, &ia), 0);
        CHECK_EQ(sa_client_info(b, &ib), 0);
        CHECK_EQ(ia.worker_pid, pid);
        CHECK_EQ(ib.worker_pid, pid);
        CHECK(ia.seat != ib.seat);
        CHECK_EQ(ib.clients, 2);
        CHECK_EQ(sa_block_alloc(b, 8, &x), 0);
        *(int64_t *)sa_block_data(x) = -7;
        CHECK_EQ(sa_run(b, SA_OP_DOUBLE, SA_INT64, 1, x, x), 0);
        CHECK_EQ(*(int64_t *)sa_block_data(x), -14);
        sa_block_unref(x);
    }
    if (a != NULL) {
        sa_client_close(a);
    }
    if (b != NULL) {
        sa_client_close(b);
    }
    CHECK_EQ(sa_client_connect("/nonexistent/dir/x.sock", &a), -ENOENT);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(access(path, F_OK) != 0); /* socket removed */
}

static void
worker_survives_resubmission_of_a_running_slot(void)
{
    const size_t n = 64u << 20; /* 64 M float32: still running when we tamper */
    sa_client *c = spawn(2);
    sa_block *b = NULL, *s = NULL;
    sa_ticket t;
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK_EQ(sa_block_alloc(c, n * 4, &b), 0);
    CHECK_EQ(sa_block_alloc(c, 64, &s), 0);
    for (int round = 0; round < 5; round++) {
        CHECK_EQ(sa_submit(c, SA_OP_DOUBLE, SA_FLOAT32, n, b, b, -1, &t), 0);
        sa_slot *slot = &c->area->slots[t.slot];
        uint64_t running = sa_slot_word(t.generation, SA_SLOT_RUNNING);
        for (int spin = 0; spin < 1000000 && atomic_load(&slot->state) != running; spin++) {
        }
        /* A buggy client marks its running slot submitted again and rings the bell. */
        atomic_store(&slot->state, sa_slot_word(t.generation, SA_SLOT_SUBMITTED));
        atomic_fetch_or(&c->area->pending, UINT64_C(1) << t.slot);
        sem_post(&c->ctl->wake);
        int r;
        do {
            r = sa_wait(c, &t, 10000000000);
        } while (r == -EINTR);
        CHECK_EQ(r, 0);
    }
    sa_worker_info info;
    CHECK_EQ(sa_client_info(c, &info), 0); /* the worker is alive */
    float *x = sa_block_data(s);
    x[0] = 3;
    CHECK_EQ(sa_run(c, SA_OP_SQUARE, SA_FLOAT32, 1, s, s), 0);
    CHECK(x[0] == 9);
    sa_block_unref(b);
    sa_block_unref(s);
    sa_client_close(c);
}

static pid_t
start_named(const char *name, char *path, size_t len)
{
    pid_t pid;
    char *argv[] = {(char *)worker(), "--name", (char *)name, "--threads", "2", NULL};
    if (posix_spawn(&pid, worker(), NULL, NULL, argv, environ) != 0) {
        return -1;
    }
    sa_pool_socket_path(name, path, len);
    for (int i = 0; i < START_WAIT_TRIES && access(path, F_OK) != 0; i++) {
        usleep(10000);
    }
    return pid;
}

static void
half_a_message_does_not_stall_the_pool(void)
{
    char name[64], path[512];
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    sa_client *good = NULL;
    snprintf(name, sizeof(name), "ctest-half-%d", (int)getpid());
    pid_t pid = start_named(name, path, sizeof(path));
    CHECK(pid > 0);

    /* A client that connects, says hello, then sends one byte of a 24-byte message and
     * nothing more. The socket's file appears when the worker binds it, a moment before it
     * listens: until then connect() is refused. */
    int bad = -1;
    strcpy(addr.sun_path, path);
    for (int i = 0; i < START_WAIT_TRIES && bad < 0; i++) {
        bad = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(bad, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
            close(bad);
            bad = -1;
            usleep(10000);
        }
    }
    CHECK(bad >= 0);
    usleep(50000);
    CHECK_EQ(send(bad, "x", 1, 0), 1);
    usleep(10000);

    /* Others are still served: they connect and compute. */
    uint64_t start = sa__now_ns();
    CHECK_EQ(sa_client_connect(path, &good), 0);
    CHECK(sa__now_ns() - start < 5000000000u);
    if (good != NULL) {
        sa_block *x = NULL;
        CHECK_EQ(sa_block_alloc(good, 8, &x), 0);
        *(double *)sa_block_data(x) = 1.5;
        CHECK_EQ(sa_run(good, SA_OP_DOUBLE, SA_FLOAT64, 1, x, x), 0);
        CHECK(*(double *)sa_block_data(x) == 3.0);
        sa_block_unref(x);
        sa_client_close(good);
    }
    close(bad);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

CTEST_MAIN("client", CTEST_CASE(client_runs_every_op_and_dtype),
           CTEST_CASE(try_alloc_takes_room_it_has_and_never_waits),
           CTEST_CASE(client_splits_big_requests_correctly),
           CTEST_CASE(client_serves_many_threads_at_once),
           CTEST_CASE(worker_rejects_malformed_slots_and_survives),
           CTEST_CASE(cancelled_request_never_completes_a_later_one),
           CTEST_CASE(worker_death_is_reported_not_hung),
           CTEST_CASE(private_worker_exits_when_client_closes),
           CTEST_CASE(spawn_refuses_thread_counts_above_the_limit),
           CTEST_CASE(named_pool_serves_two_clients),
           CTEST_CASE(worker_survives_resubmission_of_a_running_slot),
           CTEST_CASE(half_a_message_does_not_stall_the_pool))
