/* pool.c -- the worker's thread pool: claims submitted slots, runs kernels, posts completions.
 *
 * Every pool thread sleeps on the control segment's counting semaphore `wake` (one post per
 * submission). Awake, it first helps with any big job that still has chunks to hand out, then
 * claims a SUBMITTED slot, visiting seats round robin so that no client starves another. A
 * small request runs inline on the claiming thread; a large one is cut into chunks that every
 * thread takes from (the claimer posts `wake` to rouse the others), and whichever thread
 * finishes the last chunk completes the slot. After running out of work one thread at a time
 * spins briefly for new submissions before sleeping again, which saves the wake-up latency
 * of back-to-back small calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* clang-format off */
#define SPLIT_MIN_BYTES (1u << 20)   /* below this a request runs on one thread */
#define CHUNK_BYTES (256u << 10)     /* a big request is cut into chunks of this size: the
                                        longest a new request waits for a thread */
#define SLICE_BYTES (16u << 10)      /* between two slices of a big kernel call a thread looks
                                        for new requests: the longest one waits for a thread
                                        that is busy with a big job (about a microsecond) */
#define URGENT_CLAIMS 4              /* new requests served between two slices, at most */
#define SPIN_NS 50000                /* how long a thread looks for new work before sleeping */
#define SPIN_INLINE_BYTES (64u << 10) /* the spinner runs requests up to this size (a few
                                         microseconds) still announced as spinning */
#define IDLE_RESCAN_NS 100000000     /* an idle thread looks for work at least this often */
/* clang-format on */

void
sa__arena_unref(sa__arena *a)
{
    if (a != NULL && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
        munmap(a->base, a->size);
        free(a);
    }
}

/* Looks up arena `id` of `seat` and takes a reference on it, or returns NULL. */
static sa__arena *
arena_get(sa__seat *seat, uint32_t id)
{
    sa__arena *a = NULL;
    if (id >= SA__MAX_ARENAS) {
        return NULL;
    }
    pthread_mutex_lock(&seat->lock);
    a = seat->arenas[id];
    if (a != NULL) {
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&seat->lock);
    return a;
}

/* Publishes the result of `job` and hands the slot back. The slot may have been abandoned by
 * its client (timeout, Ctrl-C, death) while running: then nobody waits for `done`, and the
 * worker frees the slot itself, bumping the generation, so that the client's next request in
 * that slot can never be mistaken for this one.
 *
 * The job is released before the posts: a post that wakes the client often makes the
 * scheduler hand it this thread's CPU on the spot, and a job still marked busy then would
 * hold the client's next request in the same slot until this thread ran again (tens of
 * microseconds on a loaded machine; tests/test_fairness.py shows it). */
static void
complete(sa__worker *w, sa__job *job, int status)
{
    /* Copies: once job->busy is released below, another thread may reuse the job. */
    const uint32_t seat = job->seat, slot_idx = job->slot;
    const int notify = job->notify;
    sa_client_area *area = sa_control_area(w->ctl, seat);
    sa_slot *slot = &area->slots[slot_idx];
    uint64_t expected = job->word;
    uint64_t gen = sa_slot_word_gen(job->word);

    sa__arena_unref(job->in_arena);
    sa__arena_unref(job->out_arena);
    job->in_arena = job->out_arena = NULL;

    atomic_fetch_add_explicit(&w->ctl->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&area->requests, 1, memory_order_relaxed);
    if (status == 0) {
        atomic_fetch_add_explicit(&w->ctl->elements, job->req.count, memory_order_relaxed);
        atomic_fetch_add_explicit(&area->elements, job->req.count, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&w->ctl->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&area->errors, 1, memory_order_relaxed);
    }

    sa__fault_point("worker-before-complete");
    atomic_store_explicit(&slot->status, status, memory_order_relaxed);
    /* Release: the kernel's writes to the output and the status above happen before a client
     * that sees DONE (with an acquire load) reads them. */
    int published = atomic_compare_exchange_strong_explicit(
        &slot->state, &expected, sa_slot_word(gen, SA_SLOT_DONE), memory_order_release,
        memory_order_acquire);
    int abandoned = !published && expected == sa_slot_word(gen, SA_SLOT_ABANDONED);
    if (abandoned) {
        atomic_store_explicit(&slot->state, sa_slot_word(gen + 1, SA_SLOT_FREE),
                              memory_order_release);
    }
    /* Anything else means the client scribbled over its own state word: its slot, its loss.
     * From here on only the copies above are used. */
    atomic_store(&job->busy, 0);
    /* The client may have reused the slot between the state change and the store above, and
     * a claimer may have found the job busy: make sure that submission is seen. */
    if (sa_slot_word_state(atomic_load(&slot->state)) == SA_SLOT_SUBMITTED) {
        atomic_fetch_or(&area->pending, UINT64_C(1) << slot_idx);
        sa__announce_submission(w->ctl);
    }

    if (published) {
        sem_post(&slot->done);
        if (notify) {
            /* The seat's notify socket stays open while this job counts in seat->jobs.
             * MSG_DONTWAIT holds for this call whatever flags the client set on the socket,
             * so no client can make a pool thread block here; a full buffer (EAGAIN) still
             * reads as readable, and a descriptor that is no socket fails (ENOTSOCK). */
            int fd = atomic_load(&w->seats[seat].notify_fd);
            if (fd >= 0 && send(fd, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
                /* ignored: the client sees the state word on its next look */
            }
        }
        sa__fault_point("worker-after-complete");
    } else if (abandoned) {
        sem_post(&area->slot_free);
    }
    /* Only after the last post may the seat be reused (session.c seat_quiet re-initialises
     * the seat's semaphores). */
    atomic_fetch_sub_explicit(&w->seats[seat].jobs, 1, memory_order_release);
}

static void run_job(sa__worker *w, sa__job *job);
static sa__job *claim_next(sa__worker *w);

/* Per pool thread: set while a kernel call must run straight through, serving no new
 * requests between its slices (a call served in the middle of another, one level only; the
 * spinner's announced small request, see spin_step); and the last value of
 * ctl->submissions it acted on. */
static _Thread_local int tl_straight_through;
static _Thread_local uint64_t tl_submissions_seen;

/* Called between two slices of a kernel call: if a request was submitted since this thread
 * last looked, claims and runs a few (small ones inline, big ones only queued for their
 * chunks). A light client's call then waits about a slice behind a flood of big requests,
 * instead of a chunk. Returns the nanoseconds spent, which are not the interrupted kernel's. */
static uint64_t
serve_new_requests(sa__worker *w)
{
    /* Acquire: pairs with the release in sa__announce_submission, so the pending bit set
     * before it is seen by claim_next. */
    uint64_t now = atomic_load_explicit(&w->ctl->submissions, memory_order_acquire);
    if (now == tl_submissions_seen) {
        return 0;
    }
    tl_submissions_seen = now;
    uint64_t t0 = sa__now_ns();
    tl_straight_through = 1;
    for (int k = 0; k < URGENT_CLAIMS; k++) {
        sa__job *job = claim_next(w);
        if (job == NULL) {
            break;
        }
        run_job(w, job);
    }
    tl_straight_through = 0;
    return sa__now_ns() - t0;
}

/* One chunk's kernel work, cut into slices with new requests served in between. */
typedef struct chunk_work {
    sa__worker *w;
    sa__job *job;
    const char *in;
    char *out;
    size_t n;
    uint64_t elsewhere; /* ns spent serving other requests */
} chunk_work;

static void
run_slices(void *arg)
{
    chunk_work *c = arg;
    size_t itemsize = c->job->itemsize;
    size_t slice = tl_straight_through ? c->n : SLICE_BYTES / itemsize;
    for (size_t done = 0;;) {
        size_t m = c->n - done < slice ? c->n - done : slice;
        c->job->kernel(c->in + done * itemsize, c->out + done * itemsize, m);
        done += m;
        if (done == c->n) {
            break;
        }
        c->elsewhere += serve_new_requests(c->w);
    }
}

/* Runs chunk `idx` of `job`; completes the job if it was the last one outstanding. A chunk
 * whose client memory vanished (SIGBUS: the client truncated its arena) fails the whole
 * request with SA_EFAULT; its remaining chunks are skipped. */
static void
run_chunk(sa__worker *w, sa__job *job, size_t idx)
{
    size_t first = idx * job->chunk_elems;
    chunk_work c = {.w = w, .job = job, .n = job->chunk_elems};
    if (first + c.n > job->req.count) {
        c.n = (size_t)job->req.count - first;
    }
    c.in = job->in_arena->base + job->req.in_offset + first * job->itemsize;
    c.out = job->out_arena->base + job->req.out_offset + first * job->itemsize;
    uint64_t t0 = sa__now_ns();
    if (atomic_load_explicit(&job->failed, memory_order_relaxed) == 0) {
        int err = sa__guarded(run_slices, &c);
        int ok = 0;
        if (err < 0) {
            atomic_compare_exchange_strong(&job->failed, &ok, err);
        }
    }
    atomic_fetch_add_explicit(&w->ctl->busy_ns, sa__now_ns() - t0 - c.elsewhere,
                              memory_order_relaxed);
    sa__fault_point("worker-chunk-done");
    /* acq_rel: the thread that sees the last count also sees every other chunk's writes, and
     * its release in complete() passes them on to the client. nchunks is read before the
     * increment: after it, the last chunk's thread may complete the job and it may be reused
     * for the next request. */
    size_t nchunks = job->nchunks;
    if (atomic_fetch_add_explicit(&job->chunks_done, 1, memory_order_acq_rel) + 1 == nchunks) {
        complete(w, job, atomic_load_explicit(&job->failed, memory_order_relaxed));
    }
}

/* Takes one chunk from the oldest big job still handing them out. Returns 1 if it ran one. */
static int
help_big_job(sa__worker *w)
{
    sa__job *job;
    size_t idx;

    if (atomic_load_explicit(&w->big_count, memory_order_acquire) == 0) {
        return 0;
    }
    pthread_mutex_lock(&w->big_lock);
    job = w->big_jobs;
    if (job == NULL) {
        pthread_mutex_unlock(&w->big_lock);
        return 0;
    }
    idx = job->next_chunk++;
    if (job->next_chunk == job->nchunks) {
        w->big_jobs = job->next_big;
        atomic_fetch_sub_explicit(&w->big_count, 1, memory_order_release);
    }
    pthread_mutex_unlock(&w->big_lock);
    run_chunk(w, job, idx);
    return 1;
}

/* Prepares the job for a slot just moved to RUNNING: copies the request out of shared memory
 * once, validates the copy, and decides how to split it. Returns 0 or the error status. */
static int
prepare(sa__worker *w, sa__job *job, sa_slot *slot)
{
    sa__seat *seat = &w->seats[job->seat];
    sa_request *r = &job->req;
    uint64_t nbytes;
    int err;

    /* The one and only read of the request fields; a client rewriting them from now on
     * changes nothing the worker uses. */
    r->op = atomic_load_explicit(&slot->op, memory_order_relaxed);
    r->dtype = atomic_load_explicit(&slot->dtype, memory_order_relaxed);
    r->count = atomic_load_explicit(&slot->count, memory_order_relaxed);
    r->in_arena = atomic_load_explicit(&slot->in_arena, memory_order_relaxed);
    r->out_arena = atomic_load_explicit(&slot->out_arena, memory_order_relaxed);
    r->in_offset = atomic_load_explicit(&slot->in_offset, memory_order_relaxed);
    r->out_offset = atomic_load_explicit(&slot->out_offset, memory_order_relaxed);
    job->notify =
        (atomic_load_explicit(&slot->flags, memory_order_relaxed) & SA_SUBMIT_NOTIFY) != 0;

    job->in_arena = arena_get(seat, r->in_arena);
    job->out_arena = arena_get(seat, r->out_arena);
    if (job->in_arena == NULL || job->out_arena == NULL) {
        return SA_EBADARENA;
    }
    err = sa_request_validate(r, job->in_arena->size, job->out_arena->size, w->max_count);
    if (err < 0) {
        return err;
    }
    job->kernel = sa__kernel(r->op, r->dtype);
    job->itemsize = sa_dtype_size(r->dtype);
    nbytes = r->count * job->itemsize; /* validated: no overflow */
    job->nchunks = 1;
    job->chunk_elems = (size_t)r->count;
    if (nbytes >= SPLIT_MIN_BYTES) {
        /* Chunks even on one thread: between two chunks the thread looks for new requests,
         * so a small request never waits behind a whole big one. */
        job->chunk_elems = CHUNK_BYTES / job->itemsize;
        job->nchunks = (size_t)((r->count + job->chunk_elems - 1) / job->chunk_elems);
    }
    return 0;
}

/* Tries to take one submitted slot of `seat_idx`. Returns the job or NULL. */
static sa__job *
claim_from_seat(sa__worker *w, uint32_t seat_idx)
{
    sa_client_area *area = sa_control_area(w->ctl, seat_idx);
    /* seq_cst: the re-scan at the end of spin_for_work relies on it (Dekker). */
    uint64_t pending = atomic_load(&area->pending);
    /* Start after the slot taken last, so that none of the client's threads starves. */
    uint32_t start = atomic_load_explicit(&w->seats[seat_idx].next_slot, memory_order_relaxed)
                     % SA_SLOTS_PER_CLIENT;
    uint64_t rotated = start ? (pending >> start) | (pending << (64 - start)) : pending;

    while (rotated != 0) {
        uint32_t i = ((uint32_t)__builtin_ctzll(rotated) + start) % SA_SLOTS_PER_CLIENT;
        uint64_t bit = UINT64_C(1) << i;
        rotated &= rotated - 1;
        sa_slot *slot = &area->slots[i];
        uint64_t word;

        /* Clear the hint before looking at the state: a client that submits into this slot
         * after our load sets the bit again after its SUBMITTED store, so either we see
         * SUBMITTED below or the bit survives for the next scan. Both are seq_cst. */
        atomic_fetch_and(&area->pending, ~bit);
        word = atomic_load(&slot->state);
        if (sa_slot_word_state(word) != SA_SLOT_SUBMITTED) {
            continue;
        }
        uint64_t running = sa_slot_word(sa_slot_word_gen(word), SA_SLOT_RUNNING);
        sa__job *job = &w->jobs[(size_t)seat_idx * SA_SLOTS_PER_CLIENT + i];
        int idle = 0;
        /* The job is claimed in worker-private memory first: a client that sets SUBMITTED
         * again on a slot still running gets nothing until the first run is complete. */
        if (!atomic_compare_exchange_strong(&job->busy, &idle, 1)) {
            /* Still finishing its previous request (or resubmitted while running): keep the
             * hint for later; complete() re-arms it once the job is free. */
            atomic_fetch_or(&area->pending, bit);
            continue;
        }
        if (atomic_compare_exchange_strong_explicit(&slot->state, &word, running,
                                                    memory_order_acquire, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&w->seats[seat_idx].jobs, 1, memory_order_relaxed);
            atomic_store_explicit(&w->seats[seat_idx].next_slot, i + 1, memory_order_relaxed);
            job->word = running;
            job->seat = seat_idx;
            job->slot = i;
            sa__fault_point("worker-slot-claimed");
            return job;
        }
        atomic_store(&job->busy, 0);
    }
    return NULL;
}

/* Claims the next submitted slot, visiting live seats round robin. */
static sa__job *
claim_next(sa__worker *w)
{
    uint32_t n = w->max_clients;
    uint32_t start = atomic_load_explicit(&w->rr_cursor, memory_order_relaxed) % n;

    for (uint32_t k = 0; k < n; k++) {
        uint32_t s = (start + k) % n;
        unsigned word = atomic_load_explicit(&w->active_seats[s / 32], memory_order_acquire);
        if ((word & (1u << (s % 32))) == 0) {
            if (word == 0) {
                /* Skip to the next word, but not past the last seat: the loop wraps there. */
                uint32_t next = (s | 31) + 1;
                k += (next > n ? n : next) - s - 1;
            }
            continue;
        }
        sa__job *job = claim_from_seat(w, s);
        if (job != NULL) {
            /* Round robin: the next scan starts with the seat after this one. */
            atomic_store_explicit(&w->rr_cursor, s + 1, memory_order_relaxed);
            return job;
        }
    }
    return NULL;
}

static void run_prepared(sa__worker *w, sa__job *job, int err);

/* Runs a freshly claimed job: inline when small, else offered to every thread in chunks. */
static void
run_job(sa__worker *w, sa__job *job)
{
    sa_slot *slot = &sa_control_area(w->ctl, job->seat)->slots[job->slot];
    run_prepared(w, job, prepare(w, job, slot));
}

/* run_job once prepare() has returned `err` for the job. */
static void
run_prepared(sa__worker *w, sa__job *job, int err)
{
    if (err < 0) {
        complete(w, job, err);
        return;
    }
    job->next_chunk = 0;
    atomic_store_explicit(&job->chunks_done, 0, memory_order_relaxed);
    atomic_store_explicit(&job->failed, 0, memory_order_relaxed);
    if (job->nchunks == 1) {
        run_chunk(w, job, 0);
        return;
    }
    pthread_mutex_lock(&w->big_lock);
    sa__job **tail = &w->big_jobs;
    while (*tail != NULL) {
        tail = &(*tail)->next_big;
    }
    job->next_big = NULL;
    *tail = job;
    atomic_fetch_add_explicit(&w->big_count, 1, memory_order_release);
    pthread_mutex_unlock(&w->big_lock);
    for (uint32_t t = 1; t < w->threads; t++) {
        sem_post(&w->ctl->wake);
    }
    /* The chunks are taken by drain(), alternating with new requests. */
}

/* Does all the work in sight, one new request and one chunk of a big one in turn, so that
 * neither new requests nor big ones under way can starve. Returns 1 if it did any. */
static int
drain(sa__worker *w)
{
    int did = 0;
    for (;;) {
        sa__job *job = claim_next(w);
        int progress = job != NULL;
        if (job != NULL) {
            run_job(w, job);
        }
        progress |= help_big_job(w);
        if (!progress) {
            return did;
        }
        did = 1;
    }
}

/* The first live seat at or after `s`, or w->max_clients when there is none: a 32-seat word
 * with no live seat is skipped in one step, so the spinner's per-request looks below cost
 * a load per word, not per seat. */
static uint32_t
next_live_seat(sa__worker *w, uint32_t s)
{
    while (s < w->max_clients) {
        unsigned word =
            atomic_load_explicit(&w->active_seats[s / 32], memory_order_relaxed) >> (s % 32);
        if (word != 0) {
            s += (uint32_t)__builtin_ctz(word);
            return s < w->max_clients ? s : w->max_clients;
        }
        s = (s | 31) + 1;
    }
    return w->max_clients;
}

/* Tells every live seat whether a thread is spinning (see sa_client_area.worker_spinning). */
static void
announce_spinning(sa__worker *w, uint32_t on)
{
    for (uint32_t s = next_live_seat(w, 0); s < w->max_clients; s = next_live_seat(w, s + 1)) {
        atomic_store(&sa_control_area(w->ctl, s)->worker_spinning, on);
    }
}

/* Whether any live seat has a submission waiting (seq_cst loads, see spin_step). */
static int
any_pending(sa__worker *w)
{
    for (uint32_t s = next_live_seat(w, 0); s < w->max_clients; s = next_live_seat(w, s + 1)) {
        if (atomic_load(&sa_control_area(w->ctl, s)->pending)) {
            return 1;
        }
    }
    return 0;
}

/* One round of the spinner. Returns 1 if it did any work.
 *
 * A request of at most SPIN_INLINE_BYTES runs inline with the announcement left on: it takes
 * less than waking a thread would, and a client that submits meanwhile (a back-to-back
 * caller's next call) waits that long for the spinner instead of paying a futex post and
 * rousing a thread that would take its CPU. If more submissions wait already, one post
 * wakes a helper. (A client that blocks on its request posts when nobody has claimed it 50 us
 * into its wait, see client_req.c sa_wait, so a spinner descheduled in the middle delays it
 * by a wake-up; a poller such as a future waits for the idle threads' rescan instead.)
 *
 * Anything bigger, or a chunk of a big request, and the spinner stops announcing itself
 * first: clients post to `wake` and count their submission again, so requests arriving while
 * it computes go to the sleeping threads, or to itself between two slices, instead of
 * queueing behind its work. Requests submitted before the announcement was withdrawn were
 * not posted for: if any is waiting, post once for them (the withdrawal and the check are
 * seq_cst, as in the client). */
static int
spin_step(sa__worker *w)
{
    sa__job *job = claim_next(w);
    int err = 0;
    if (job == NULL && atomic_load_explicit(&w->big_count, memory_order_acquire) == 0) {
        return 0;
    }
    if (job != NULL) {
        err = prepare(w, job, &sa_control_area(w->ctl, job->seat)->slots[job->slot]);
        if (err == 0 && job->nchunks == 1
            && job->chunk_elems <= SPIN_INLINE_BYTES / job->itemsize) {
            if (any_pending(w)) {
                sa__announce_submission(w->ctl);
            }
            /* Straight through, without serving new requests between its slices: they would
             * stretch the time the announcement is on beyond this one small request. */
            tl_straight_through = 1;
            run_prepared(w, job, 0);
            tl_straight_through = 0;
            return 1;
        }
    }
    announce_spinning(w, 0);
    if (any_pending(w)) {
        sa__announce_submission(w->ctl);
    }
    if (job != NULL) {
        run_prepared(w, job, err);
    }
    drain(w);
    announce_spinning(w, 1);
    return 1;
}

/* One thread at a time polls for new submissions for a short while before sleeping. While it
 * does, clients skip their post to `wake`: a client issuing back-to-back small calls then
 * never pays for a futex wake-up, and no sleeping pool thread is woken for nothing. */
static void
spin_for_work(sa__worker *w)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&w->spinner, &expected, 1)) {
        return;
    }
    announce_spinning(w, 1);
    uint64_t until = sa__now_ns() + SPIN_NS;
    unsigned steps = 0;
    do {
        if (spin_step(w)) {
            until = sa__now_ns() + SPIN_NS;
        }
        sa__spin_step(&steps);
    } while (sa__now_ns() < until && !atomic_load_explicit(&w->stop, memory_order_relaxed));
    /* Clear the flag, then look once more: a client that saw the flag set did not post, and
     * its submission is visible to this scan (seq_cst on both sides). */
    announce_spinning(w, 0);
    drain(w);
    atomic_store(&w->spinner, 0);
}

static void *
pool_thread(void *arg)
{
    sa__worker *w = arg;
    while (!atomic_load_explicit(&w->stop, memory_order_acquire)) {
        /* A bounded sleep: wake-ups are posts, but should one ever be missing (a client
         * scribbling on its seat's flags), a request waits at most this long, never forever. */
        struct timespec ts = sa__deadline_in(IDLE_RESCAN_NS);
        int r;
        SA__NOINTR(r, sem_clockwait(&w->ctl->wake, CLOCK_MONOTONIC, &ts));
        if (atomic_load_explicit(&w->stop, memory_order_acquire)) {
            break;
        }
        if (drain(w) || r == 0) {
            spin_for_work(w);
        }
    }
    return NULL;
}

int
sa__pool_start(sa__worker *w)
{
    w->tids = calloc(w->threads, sizeof(*w->tids));
    if (w->tids == NULL) {
        return -ENOMEM;
    }
    for (uint32_t t = 0; t < w->threads; t++) {
        int err = pthread_create(&w->tids[t], NULL, pool_thread, w);
        if (err != 0) {
            w->threads = t; /* stop and join the ones that did start */
            sa__pool_stop(w);
            return SA__ERR(err);
        }
    }
    return 0;
}

void
sa__pool_stop(sa__worker *w)
{
    atomic_store_explicit(&w->stop, 1, memory_order_release);
    for (uint32_t t = 0; t < w->threads; t++) {
        sem_post(&w->ctl->wake);
    }
    for (uint32_t t = 0; t < w->threads; t++) {
        pthread_join(w->tids[t], NULL);
    }
    free(w->tids);
    w->tids = NULL;
}
