/* client_req.c -- requests: claim a slot, publish it, wake the worker, wait, cancel.
 *
 * The slot's state word is the truth and changes only by compare-and-swap; semaphores are
 * only the signal. Every wake-up re-checks the state word against the ticket's generation,
 * so a stray post (from a request abandoned earlier in the same slot) is harmless.
 */
#include <sched.h>
#include <semaphore.h>

#include "internal.h"

#define WAIT_SLICE_NS 50000000 /* hang-up checks happen at least this often while blocked */
#define SPIN_MAX_NS 50000      /* about what a futex sleep and wake-up cost across CPUs */
#define SPIN_MIN_NS 2000

/* Waits on `sem` until `deadline_ns` (CLOCK_MONOTONIC), in slices, watching for hang-up.
 * Returns 0 when it got the semaphore, -ETIMEDOUT, -EINTR (a signal: the caller may need
 * to see it), SA_EWORKERDIED or SA_ECLOSED. */
static int
sem_wait_until(sa_client *c, sem_t *sem, uint64_t deadline_ns)
{
    /* The hang-up check is a poll() syscall: do it only once a slice has passed without a
     * post, not before every wait. A dead worker is still noticed within one slice. */
    int check_socket = 0;
    for (;;) {
        uint64_t now = sa__now_ns();
        uint64_t until = deadline_ns;
        struct timespec ts;

        if (atomic_load_explicit(&c->closed, memory_order_relaxed)) {
            return atomic_load(&c->closed) == SA__CLOSED_DEAD ? SA_EWORKERDIED : SA_ECLOSED;
        }
        if (check_socket ? sa__client_check_alive(c)
                         : atomic_load_explicit(&c->dead, memory_order_relaxed)) {
            return SA_EWORKERDIED;
        }
        check_socket = 1;
        if (now >= deadline_ns) {
            return -ETIMEDOUT;
        }
        if (until - now > WAIT_SLICE_NS) {
            until = now + WAIT_SLICE_NS;
        }
        ts.tv_sec = (time_t)(until / 1000000000u);
        ts.tv_nsec = (long)(until % 1000000000u);
        if (sem_clockwait(sem, CLOCK_MONOTONIC, &ts) == 0) {
            return 0;
        }
        if (errno == EINTR) {
            return -EINTR;
        }
        if (errno != ETIMEDOUT) {
            return SA__ERR(errno);
        }
    }
}

static uint64_t
deadline_after(int64_t wait_ns)
{
    return wait_ns < 0 ? UINT64_MAX : sa__now_ns() + (uint64_t)wait_ns;
}

static void
release_refs(sa__cslot *cs)
{
    sa_block *in = cs->in, *out = cs->out;
    cs->in = cs->out = NULL;
    cs->abandoned = 0;
    if (in != NULL) {
        sa_block_unref(in);
    }
    if (out != NULL) {
        sa_block_unref(out);
    }
}

/* Claims a FREE slot of our seat. Returns the slot index, or a negative code. */
static int
claim_slot(sa_client *c, int64_t wait_ns)
{
    sa_client_area *area = c->area;
    uint64_t deadline = deadline_after(wait_ns);

    if (sem_trywait(&area->slot_free) != 0) {
        int err = sem_wait_until(c, &area->slot_free, deadline);
        if (err < 0) {
            return err;
        }
    }
    /* The semaphore says a FREE slot exists and is ours to find. */
    for (int round = 0; round < 1000; round++) {
        for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
            sa_slot *slot = &area->slots[i];
            uint64_t word = atomic_load_explicit(&slot->state, memory_order_relaxed);
            if (sa_slot_word_state(word) != SA_SLOT_FREE) {
                continue;
            }
            uint64_t claimed = sa_slot_word(sa_slot_word_gen(word), SA_SLOT_CLAIMED);
            if (atomic_compare_exchange_strong_explicit(
                    &slot->state, &word, claimed, memory_order_acquire, memory_order_relaxed)) {
                sa__cslot *cs = &c->slots[i];
                /* A slot abandoned while running comes back FREE only once the worker is done
                 * with it: only now may the blocks it used be released. */
                if (cs->abandoned) {
                    release_refs(cs);
                }
                cs->generation = sa_slot_word_gen(word);
                return (int)i;
            }
        }
        sched_yield();
    }
    /* The semaphore and the slots disagree: the shared area was scribbled on. */
    sem_post(&area->slot_free);
    return SA_EPROTO;
}

int
sa_submit(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in, sa_block *out,
          int64_t wait_ns, sa_ticket *ticket)
{
    return sa_submit_ex(c, op, dtype, count, in, out, wait_ns, 0, ticket);
}

int
sa_submit_ex(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in, sa_block *out,
             int64_t wait_ns, uint32_t flags, sa_ticket *ticket)
{
    size_t itemsize = sa_dtype_size(dtype);
    uint64_t nbytes;
    sa_slot *slot;
    sa__cslot *cs;
    int i;

    if (sa_op_name(op) == NULL) {
        return SA_EBADOP;
    }
    if (itemsize == 0) {
        return SA_EBADDTYPE;
    }
    if (in->client != c || out->client != c) {
        return SA_EBADARENA;
    }
    if (__builtin_mul_overflow(count, (uint64_t)itemsize, &nbytes) || nbytes > in->size
        || nbytes > out->size) {
        return SA_EBOUNDS;
    }
    if ((i = sa__client_unusable(c)) < 0) {
        return i;
    }
    i = claim_slot(c, wait_ns);
    if (i < 0) {
        return i;
    }
    sa__fault_point("client-slot-claimed");
    slot = &c->area->slots[i];
    cs = &c->slots[i];
    sa_block_ref(in);
    sa_block_ref(out);
    cs->in = in;
    cs->out = out;

    atomic_store_explicit(&slot->op, op, memory_order_relaxed);
    atomic_store_explicit(&slot->dtype, dtype, memory_order_relaxed);
    atomic_store_explicit(&slot->count, count, memory_order_relaxed);
    atomic_store_explicit(&slot->in_arena, in->arena->id, memory_order_relaxed);
    atomic_store_explicit(&slot->out_arena, out->arena->id, memory_order_relaxed);
    atomic_store_explicit(&slot->in_offset, in->offset, memory_order_relaxed);
    atomic_store_explicit(&slot->out_offset, out->offset, memory_order_relaxed);
    atomic_store_explicit(&slot->status, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->flags, flags, memory_order_relaxed);
    sa__fault_point("client-request-written");
    /* Publish: seq_cst so that the worker, which clears the pending bit before reading the
     * state (pool.c claim_from_seat), either sees SUBMITTED or sees the bit set again. The
     * store also releases the fields above and the input data written before the call. */
    uint64_t claimed = sa_slot_word(cs->generation, SA_SLOT_CLAIMED);
    if (!atomic_compare_exchange_strong(&slot->state, &claimed,
                                        sa_slot_word(cs->generation, SA_SLOT_SUBMITTED))) {
        /* The worker reclaimed the slot under us: the session was shut down meanwhile. */
        release_refs(cs);
        return SA_ECLOSED;
    }
    atomic_fetch_or(&c->area->pending, UINT64_C(1) << i);
    /* Dekker with pool.c spin_for_work: the spinner clears worker_spinning, then scans
     * `pending` once more (all seq_cst). Either it sees our bit, or we see 0 here and post. */
    if (!atomic_load(&c->area->worker_spinning)) {
        sa__announce_submission(c->ctl);
    }
    sa__fault_point("client-worker-woken");

    ticket->slot = (uint32_t)i;
    ticket->generation = cs->generation;
    return 0;
}

/* The request in `slot` is DONE: read its status, hand the slot back. */
static int
finish(sa_client *c, const sa_ticket *t)
{
    sa_slot *slot = &c->area->slots[t->slot];
    uint64_t done = sa_slot_word(t->generation, SA_SLOT_DONE);
    int status = atomic_load_explicit(&slot->status, memory_order_relaxed);

    release_refs(&c->slots[t->slot]);
    /* Only the ticket's holder moves DONE to FREE, but the worker could have reclaimed it in a
     * teardown; a failed CAS then just means someone else already freed it. */
    if (atomic_compare_exchange_strong_explicit(&slot->state, &done,
                                                sa_slot_word(t->generation + 1, SA_SLOT_FREE),
                                                memory_order_release, memory_order_relaxed)) {
        sem_post(&c->area->slot_free);
    }
    return status;
}

/* Folds one completion time into the client's moving average (1/8 weight; racy updates from
 * several threads only blur an estimate). */
static void
note_latency(sa_client *c, uint64_t took)
{
    uint64_t avg = atomic_load_explicit(&c->latency_ns, memory_order_relaxed);
    if (took > UINT32_MAX) {
        took = UINT32_MAX;
    }
    avg = avg - avg / 8 + took / 8;
    atomic_store_explicit(&c->latency_ns, avg, memory_order_relaxed);
}

static int
is_done(sa_client *c, const sa_ticket *t)
{
    uint64_t word = atomic_load_explicit(&c->area->slots[t->slot].state, memory_order_acquire);
    return word == sa_slot_word(t->generation, SA_SLOT_DONE);
}

int
sa_wait(sa_client *c, const sa_ticket *t, int64_t wait_ns)
{
    sa_slot *slot;
    uint64_t deadline, start, latency, spin;

    if (t->slot >= SA_SLOTS_PER_CLIENT) {
        return -EINVAL;
    }
    slot = &c->area->slots[t->slot];
    deadline = deadline_after(wait_ns);
    start = sa__now_ns();

    /* Adaptive spin: calls that usually finish within SPIN_MAX_NS poll the semaphore for up
     * to SPIN_MAX_NS before sleeping, since a sleep costs about that much in wake-up alone:
     * a call that is late (the worker's CPU lent to another process for a moment) then never
     * pays more than twice what it would have cost by sleeping at once. Calls that usually
     * take longer (big arrays, an overloaded pool) barely spin. */
    latency = atomic_load_explicit(&c->latency_ns, memory_order_relaxed);
    spin = latency > SPIN_MAX_NS ? SPIN_MIN_NS : SPIN_MAX_NS;
    unsigned steps = 0;
    for (;;) {
        if (sem_trywait(&slot->done) == 0) {
            if (is_done(c, t)) {
                if (wait_ns != 0) { /* a poll says nothing about how long calls take */
                    note_latency(c, sa__now_ns() - start);
                }
                return finish(c, t);
            }
            continue; /* a stray post from an older request in this slot */
        }
        uint64_t now = sa__now_ns();
        if (now - start >= spin || now >= deadline) {
            break;
        }
        sa__spin_step(&steps);
    }

    /* A request still unclaimed SPIN_MAX_NS into this wait was counted on a spinner (see pool.c
     * spin_step: it skipped the post at submission) that is descheduled or busy: one post then
     * wakes a sleeping pool thread for it. Only then: a post that races a spinner about to
     * claim the request wakes a thread that takes a CPU from the client or the spinner. */
    int nudged = atomic_load(&slot->state) != sa_slot_word(t->generation, SA_SLOT_SUBMITTED);
    for (;;) {
        uint64_t until = !nudged && start + SPIN_MAX_NS < deadline ? start + SPIN_MAX_NS : deadline;
        int err = sem_wait_until(c, &slot->done, until);
        if (err == -ETIMEDOUT && until != deadline) {
            nudged = 1;
            if (atomic_load(&slot->state) == sa_slot_word(t->generation, SA_SLOT_SUBMITTED)) {
                sa__announce_submission(c->ctl);
            }
            continue;
        }
        if (err == 0) {
            if (is_done(c, t)) {
                note_latency(c, sa__now_ns() - start);
                return finish(c, t);
            }
            continue;
        }
        /* The worker may have finished just as it died or as we gave up: a DONE result is
         * good whatever happened next. The post is left for the next user of the slot, who
         * re-checks the state word anyway. */
        if (is_done(c, t)) {
            return finish(c, t);
        }
        if (err == SA_EWORKERDIED || err == SA_ECLOSED) {
            /* The ticket is consumed. A dead or closed client allocates no new block, so its
             * memory cannot be handed to anyone else even if a job still writes it. */
            release_refs(&c->slots[t->slot]);
        }
        return err;
    }
}

int
sa_cancel(sa_client *c, const sa_ticket *t)
{
    sa_slot *slot;
    sa__cslot *cs;
    uint64_t word;

    if (t->slot >= SA_SLOTS_PER_CLIENT) {
        return -EINVAL;
    }
    slot = &c->area->slots[t->slot];
    cs = &c->slots[t->slot];
    word = atomic_load(&slot->state);
    for (;;) {
        if (sa_slot_word_gen(word) != t->generation) {
            return -ECANCELED; /* already reclaimed (e.g. by the worker's teardown) */
        }
        switch (sa_slot_word_state(word)) {
        case SA_SLOT_SUBMITTED:
            /* Not started: take it back. The worker's CAS to RUNNING can no longer succeed. */
            if (atomic_compare_exchange_weak(&slot->state, &word,
                                             sa_slot_word(t->generation + 1, SA_SLOT_FREE))) {
                release_refs(cs);
                sem_post(&c->area->slot_free);
                return -ECANCELED;
            }
            break;
        case SA_SLOT_RUNNING:
            /* Running: the worker still writes the output. Keep the blocks referenced until it
             * has freed the slot (see claim_slot), so that memory is never reused under it. */
            cs->abandoned = 1;
            if (atomic_compare_exchange_weak(&slot->state, &word,
                                             sa_slot_word(t->generation, SA_SLOT_ABANDONED))) {
                return -ECANCELED;
            }
            cs->abandoned = 0;
            break;
        case SA_SLOT_DONE:
            return finish(c, t);
        default:
            return -ECANCELED;
        }
    }
}

int
sa_run(sa_client *c, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in, sa_block *out)
{
    sa_ticket t;
    int err;
    do {
        err = sa_submit(c, op, dtype, count, in, out, -1, &t);
    } while (err == -EINTR);
    if (err < 0) {
        return err;
    }
    do {
        err = sa_wait(c, &t, -1);
    } while (err == -EINTR);
    return err;
}
