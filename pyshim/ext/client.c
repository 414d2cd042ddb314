/* client.c -- the Client type: one session with a worker pool, as Python sees it.
 *
 * Converts Python objects to C (buffers, lists) and back, and waits with the GIL released.
 * Every wait is cut into slices: between slices the GIL is retaken to run signal handlers
 * (Ctrl-C raises KeyboardInterrupt) and to check the caller's timeout. The protocol itself
 * lives in the C client library (src/client*.c).
 */
#include "shim.h"

#include <string.h>
#include <time.h>

#define SLICE_NS 50000000 /* signal checks at least every 50 ms */
#define COPY_GIL_FREE_BYTES (256 * 1024)
#ifndef GIL_HELD_WAIT_NS      /* -D for experiments (scripts/bench_concurrency.py notes) */
#define GIL_HELD_WAIT_NS 5000 /* see run_request */
#endif
#define GIL_HELD_MAX_BYTES 65536 /* ... for calls on this much data or less */
#define OUT_BUFFER_FLAGS (PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) /* out= */

static shim_state *
state_of(ClientObject *self)
{
    return shim_state_of(Py_TYPE(self));
}

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Parses timeout= (None or seconds >= 0) into an absolute deadline. Returns 0 or -1. */
static int
parse_deadline(PyObject *timeout, uint64_t *deadline)
{
    double secs;
    if (timeout == Py_None) {
        *deadline = UINT64_MAX;
        return 0;
    }
    secs = PyFloat_AsDouble(timeout);
    if (secs == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(secs >= 0)) {
        PyErr_SetString(PyExc_ValueError, "timeout must be None or a number >= 0");
        return -1;
    }
    *deadline = secs > 1e9 ? UINT64_MAX : now_ns() + (uint64_t)(secs * 1e9);
    return 0;
}

static int64_t
next_slice(uint64_t deadline)
{
    uint64_t now = now_ns();
    if (deadline == UINT64_MAX) {
        return SLICE_NS;
    }
    if (now >= deadline) {
        return 0;
    }
    return deadline - now < SLICE_NS ? (int64_t)(deadline - now) : SLICE_NS;
}

static int
client_usable(ClientObject *self)
{
    if (self->client == NULL) {
        shim_raise(state_of(self), SA_ECLOSED);
        return 0;
    }
    return 1;
}

/* Submits a request with the GIL released, in slices (all slots may be busy). Returns 0, or
 * -1 with an exception set. */
static int
submit_released(ClientObject *self, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in,
                sa_block *out, uint64_t deadline, sa_ticket *ticket)
{
    int err;
    for (;;) {
        int64_t slice = next_slice(deadline);
        Py_BEGIN_ALLOW_THREADS
        err = sa_submit(self->client, op, dtype, count, in, out, slice, ticket);
        Py_END_ALLOW_THREADS
        if (err != -ETIMEDOUT && err != -EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (now_ns() >= deadline) {
            break; /* err is -ETIMEDOUT: no free slot in time */
        }
    }
    if (err < 0) {
        shim_raise(state_of(self), err);
        return -1;
    }
    return 0;
}

/* Submits a request and waits for it. Returns 0, or -1 with an exception set (the request is
 * then cancelled, its slot reclaimed safely).
 *
 * A call on GIL_HELD_MAX_BYTES or less (8192 float64) usually completes within a few
 * microseconds: it is submitted, and waited for GIL_HELD_WAIT_NS, with the GIL held. Handing
 * the GIL to another thread and getting it back costs a futex wake-up each way, more than
 * such a call itself: with 4 threads making 10^3-element calls, releasing it around each made
 * the hand-offs, not the pool, bound the call rate (110-150 k calls/s, against 660 k with it
 * held; CPython's own lock and semaphore acquires try first with the GIL held too). Past that
 * (a busy or stopped pool), and for bigger calls from the start, the wait goes on with the
 * GIL released, in slices that let signal handlers and the deadline run. */
static int
run_request(ClientObject *self, uint32_t op, uint32_t dtype, uint64_t count, sa_block *in,
            sa_block *out, uint64_t deadline)
{
    sa_client *c = self->client;
    sa_ticket ticket;
    int err = -ETIMEDOUT;

    if (count * sa_dtype_size(dtype) <= GIL_HELD_MAX_BYTES
        && (err = sa_submit(c, op, dtype, count, in, out, 0, &ticket)) == 0) {
        uint64_t now = now_ns();
        int64_t held = deadline <= now                     ? 0
                       : deadline - now < GIL_HELD_WAIT_NS ? (int64_t)(deadline - now)
                                                           : GIL_HELD_WAIT_NS;
        err = sa_wait(c, &ticket, held);
    } else if (err != -ETIMEDOUT) {
        shim_raise(state_of(self), err); /* nothing submitted */
        return -1;
    } else if (submit_released(self, op, dtype, count, in, out, deadline, &ticket) < 0) {
        return -1;
    }
    while (err == -ETIMEDOUT || err == -EINTR) {
        int64_t slice = next_slice(deadline);
        Py_BEGIN_ALLOW_THREADS
        err = sa_wait(c, &ticket, slice);
        Py_END_ALLOW_THREADS
        if (err != -ETIMEDOUT && err != -EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            sa_cancel(c, &ticket);
            return -1;
        }
        if (now_ns() >= deadline) {
            err = sa_cancel(c, &ticket);
            if (err == -ECANCELED) {
                err = -ETIMEDOUT;
            }
            return err < 0 ? (shim_raise(state_of(self), err), -1) : 0;
        }
    }
    if (err < 0 && err != SA_EWORKERDIED && err != SA_ECLOSED && err > SA__ERRBASE) {
        /* A system error from the wait itself (not the request's status): the ticket is
         * still ours, so give the slot back rather than leak it. */
        sa_cancel(c, &ticket);
    }
    if (err < 0) {
        shim_raise(state_of(self), err);
        return -1;
    }
    return 0;
}

/* Allocates a block by `deadline`: from the arenas already there with the GIL held (no wait,
 * no syscall: releasing the GIL around it would hand the GIL to another thread on every
 * copying call), else with the GIL released (a new arena needs a round trip to the worker),
 * running signal handlers when a signal interrupts that round trip. */
int
alloc_block(ClientObject *self, size_t nbytes, uint64_t deadline, sa_block **out)
{
    int err;
    nbytes = nbytes == 0 ? 1 : nbytes; /* an empty buffer still gets a block */
    err = sa_block_try_alloc(self->client, nbytes, out);
    if (err != -EAGAIN) {
        return err < 0 ? (shim_raise(state_of(self), err), -1) : 0;
    }
    for (;;) {
        uint64_t now = now_ns();
        int64_t wait = deadline == UINT64_MAX ? -1
                       : now >= deadline      ? 0
                                              : (int64_t)(deadline - now);
        Py_BEGIN_ALLOW_THREADS
        err = sa_block_alloc_wait(self->client, nbytes, wait, out);
        Py_END_ALLOW_THREADS
        if (err != -EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
    if (err < 0) {
        shim_raise(state_of(self), err);
        return -1;
    }
    return 0;
}

static void
copy_bytes(void *dst, const void *src, size_t n)
{
    if (n >= COPY_GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        memcpy(dst, src, n);
        Py_END_ALLOW_THREADS
    } else {
        memcpy(dst, src, n);
    }
}

/* Replaces the error of a failed writable, C-contiguous buffer request on `dst` by the one
 * shmaccel documents, whatever the exporter raised (memoryview: BufferError, numpy:
 * ValueError): TypeError when dst is read-only, ValueError when it is not C-contiguous. Any
 * other error (no buffer protocol at all: TypeError; an exporter refusing for its own reason)
 * is left as the exporter raised it. */
static void
explain_bad_out(PyObject *dst)
{
    Py_buffer probe, again;

    if (!PyErr_ExceptionMatches(PyExc_BufferError) && !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return;
    }
    PyErr_Clear();
    if (PyObject_GetBuffer(dst, &probe, PyBUF_FULL_RO) < 0) {
        return; /* that error stands */
    }
    if (probe.readonly) {
        PyErr_Format(PyExc_TypeError, "out must be a writable buffer; %.100s is read-only",
                     Py_TYPE(dst)->tp_name);
    } else if (!PyBuffer_IsContiguous(&probe, 'C')) {
        PyErr_SetString(PyExc_ValueError, "out must be C-contiguous");
    } else if (PyObject_GetBuffer(dst, &again, OUT_BUFFER_FLAGS) == 0) {
        /* It accepts the request now: whatever it refused for is gone. */
        PyBuffer_Release(&again);
        PyErr_Format(PyExc_BufferError,
                     "%.100s refused a writable buffer for out=", Py_TYPE(dst)->tp_name);
    } /* else: the exporter's own error, raised again by the same request */
    PyBuffer_Release(&probe);
}

/* ---- construction ------------------------------------------------------------------- */

static PyObject *
Client_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"worker", "socket", "threads", NULL};
    const char *worker = NULL, *socket_path = NULL;
    Py_ssize_t threads = 0;
    sa_client *c = NULL;
    ClientObject *self;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$zzn:Client", kwlist, &worker, &socket_path,
                                     &threads)) {
        return NULL;
    }
    if ((worker == NULL) == (socket_path == NULL)) {
        PyErr_SetString(PyExc_TypeError, "Client() takes exactly one of worker= or socket=");
        return NULL;
    }
    if (threads < 0 || threads > SA_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "threads must be 0 (one per CPU) to %d", SA_MAX_THREADS);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    err = worker != NULL ? sa_client_spawn(worker, (unsigned)threads, &c)
                         : sa_client_connect(socket_path, &c);
    Py_END_ALLOW_THREADS
    if (err < 0) {
        return shim_raise(shim_state_of(type), err);
    }
    self = (ClientObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        sa_client_close(c);
        return NULL;
    }
    self->client = c;
    return (PyObject *)self;
}

static void
Client_dealloc(ClientObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->client != NULL) {
        sa_client *c = self->client;
        self->client = NULL;
        Py_BEGIN_ALLOW_THREADS
        sa_client_close(c);
        Py_END_ALLOW_THREADS
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
Client_shutdown(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (self->client != NULL) {
        Py_BEGIN_ALLOW_THREADS
        sa_client_shutdown(self->client);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *
Client_forget_after_fork(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (self->client != NULL) {
        sa_client_forget_after_fork(self->client);
    }
    Py_RETURN_NONE;
}

static PyObject *
Client_get_dead(ClientObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->client == NULL || sa_client_dead(self->client));
}

static PyObject *
Client_info(ClientObject *self, PyObject *unused)
{
    sa_worker_info info;
    int err;
    (void)unused;
    if (!client_usable(self)) {
        return NULL;
    }
    if ((err = sa_client_info(self->client, &info)) < 0) {
        return shim_raise(state_of(self), err);
    }
    return Py_BuildValue(
        "{s:i,s:I,s:I,s:I,s:K,s:K,s:K,s:K,s:K,s:K,s:I,s:d,s:d}", "worker_pid", (int)info.worker_pid,
        "threads", info.threads, "clients", info.clients, "seat", info.seat, "requests",
        (unsigned long long)info.requests, "elements", (unsigned long long)info.elements, "errors",
        (unsigned long long)info.errors, "client_requests", (unsigned long long)info.my_requests,
        "client_elements", (unsigned long long)info.my_elements, "client_errors",
        (unsigned long long)info.my_errors, "client_in_flight", info.my_in_flight, "uptime_s",
        info.uptime_s, "busy_pct", info.busy_pct);
}

/* ---- blocks ------------------------------------------------------------------------- */

/* alloc(cls, count, dtype, zero=False, timeout=None) -> instance of cls (a SharedBlock
 * subclass); TimeoutError when a new arena is not accepted within timeout seconds. */
static PyObject *
Client_alloc(ClientObject *self, PyObject *args)
{
    shim_state *st = state_of(self);
    PyTypeObject *cls;
    Py_ssize_t count;
    const char *dtype_name;
    int zero = 0, dtype;
    size_t itemsize, nbytes;
    sa_block *block = NULL;
    BlockObject *obj;
    PyObject *timeout = Py_None;
    uint64_t deadline;

    if (!PyArg_ParseTuple(args, "O!ns|pO:alloc", &PyType_Type, &cls, &count, &dtype_name, &zero,
                          &timeout)
        || parse_deadline(timeout, &deadline) < 0) {
        return NULL;
    }
    if (!PyType_IsSubtype(cls, st->BlockType)) {
        PyErr_SetString(PyExc_TypeError, "alloc() needs a SharedBlock subclass");
        return NULL;
    }
    if ((dtype = sa_dtype_from_name(dtype_name)) < 0) {
        PyErr_Format(PyExc_ValueError,
                     "unknown dtype '%s' (use int8..int64, uint8..uint64, float32, float64)",
                     dtype_name);
        return NULL;
    }
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "negative array length");
        return NULL;
    }
    itemsize = sa_dtype_size((uint32_t)dtype);
    if (__builtin_mul_overflow((size_t)count, itemsize, &nbytes) || nbytes > (SIZE_MAX >> 2)) {
        PyErr_SetString(PyExc_OverflowError, "array too large");
        return NULL;
    }
    if (!client_usable(self) || alloc_block(self, nbytes, deadline, &block) < 0) {
        return NULL;
    }
    if (zero) {
        if (nbytes >= COPY_GIL_FREE_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            memset(sa_block_data(block), 0, nbytes);
            Py_END_ALLOW_THREADS
        } else {
            memset(sa_block_data(block), 0, nbytes);
        }
    }
    obj = (BlockObject *)cls->tp_alloc(cls, 0);
    if (obj == NULL) {
        sa_block_unref(block);
        return NULL;
    }
    obj->block = block;
    obj->owner = (ClientObject *)Py_NewRef(self);
    obj->dtype = (uint32_t)dtype;
    obj->count = count;
    obj->itemsize = (Py_ssize_t)itemsize;
    return (PyObject *)obj;
}

/* Our own block behind `obj`, or NULL when obj is something else (or another client's). */
static BlockObject *
own_block(ClientObject *self, PyObject *obj)
{
    shim_state *st = state_of(self);
    if (PyObject_TypeCheck(obj, st->BlockType) && ((BlockObject *)obj)->owner == self) {
        return (BlockObject *)obj;
    }
    return NULL;
}

int
shim_prepare_io(ClientObject *self, PyObject *src, PyObject *dst, uint64_t deadline, shim_io *io)
{
    Py_buffer sv = {0};
    BlockObject *src_blk = own_block(self, src), *dst_blk = own_block(self, dst);
    uint32_t dst_dtype;
    Py_ssize_t count, dst_count;
    int d, rc = -1;

    memset(io, 0, sizeof(*io));
    if (src_blk != NULL) {
        io->dtype = src_blk->dtype;
        count = src_blk->count;
    } else {
        if (PyObject_GetBuffer(src, &sv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            return -1;
        }
        if ((d = shim_dtype_of_view(&sv)) < 0) {
            goto out;
        }
        io->dtype = (uint32_t)d;
        count = sv.len / sv.itemsize;
    }
    if (dst_blk != NULL) {
        dst_dtype = dst_blk->dtype;
        dst_count = dst_blk->count;
    } else {
        if (PyObject_GetBuffer(dst, &io->dst, OUT_BUFFER_FLAGS) < 0) {
            explain_bad_out(dst);
            goto out;
        }
        io->copy_out = 1;
        if ((d = shim_dtype_of_view(&io->dst)) < 0) {
            goto out;
        }
        dst_dtype = (uint32_t)d;
        dst_count = io->dst.len / io->dst.itemsize;
    }
    if (dst_dtype != io->dtype || dst_count != count) {
        PyErr_Format(PyExc_ValueError, "out must match the input: got %zd x %s for %zd x %s",
                     dst_count, sa_dtype_name(dst_dtype), count, sa_dtype_name(io->dtype));
        goto out;
    }
    io->count = (uint64_t)count;
    io->nbytes = (size_t)count * sa_dtype_size(io->dtype);
    if (count == 0) {
        rc = 1;
        goto out;
    }
    if (src_blk != NULL) {
        io->in = src_blk->block;
        sa_block_ref(io->in);
    } else {
        if (alloc_block(self, io->nbytes, deadline, &io->in) < 0) {
            goto out;
        }
        copy_bytes(sa_block_data(io->in), sv.buf, io->nbytes);
    }
    if (dst_blk != NULL) {
        io->out = dst_blk->block;
        sa_block_ref(io->out);
    } else if (src_blk == NULL) {
        io->out = io->in; /* compute in place in our private copy, then copy out once */
        sa_block_ref(io->out);
    } else if (alloc_block(self, io->nbytes, deadline, &io->out) < 0) {
        goto out;
    }
    rc = 0;
out:
    if (sv.obj != NULL) {
        PyBuffer_Release(&sv);
    }
    if (rc != 0) {
        shim_finish_io(io, 0);
    }
    return rc;
}

void
shim_finish_io(shim_io *io, int success)
{
    if (success && io->copy_out && io->out != NULL) {
        copy_bytes(io->dst.buf, sa_block_data(io->out), io->nbytes);
    }
    if (io->in != NULL) {
        sa_block_unref(io->in);
    }
    if (io->out != NULL) {
        sa_block_unref(io->out);
    }
    io->in = io->out = NULL;
    if (io->dst.obj != NULL) {
        PyBuffer_Release(&io->dst);
    }
    io->copy_out = 0;
}

/* run(op, src, dst, timeout): dst[:] = op(src). src is any buffer of a supported format; dst
 * a writable one of the same format and length (it may be src). Our own SharedBlocks are used
 * in place (zero copy); anything else goes through a block of the arena. */
static PyObject *
Client_run(ClientObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *op_obj, *src, *dst, *timeout;
    shim_io io;
    uint64_t deadline;
    int op, rc;

    /* METH_FASTCALL: the hot path of every small call, without a tuple or a format string. */
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "run() takes exactly 4 arguments (%zd given)", nargs);
        return NULL;
    }
    op_obj = args[0];
    src = args[1];
    dst = args[2];
    timeout = args[3];
    if ((op = shim_op_of(op_obj)) < 0 || parse_deadline(timeout, &deadline) < 0
        || !client_usable(self)) {
        return NULL;
    }
    if ((rc = shim_prepare_io(self, src, dst, deadline, &io)) != 0) {
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    rc = run_request(self, (uint32_t)op, io.dtype, io.count, io.in, io.out, deadline);
    shim_finish_io(&io, rc == 0);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* ---- lists -------------------------------------------------------------------------- */

/* Fills int64s from the items; every input and result must fit in int64. */
static int
fill_int64(int op, PyObject **items, Py_ssize_t n, int64_t *dst)
{
    int64_t lo, hi; /* the inputs whose result fits: two comparisons instead of a call each */
    if (sa_op_int64_bounds((uint32_t)op, &lo, &hi) < 0) {
        PyErr_SetString(PyExc_ValueError, "unknown op");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
        if (overflow) {
            PyErr_Format(PyExc_OverflowError, "element %zd (%R) does not fit in int64", i,
                         items[i]);
            return -1;
        }
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (v < lo || v > hi) {
            PyErr_Format(PyExc_OverflowError, "%s of element %zd (%lld) overflows int64",
                         sa_op_name((uint32_t)op), i, v);
            return -1;
        }
        dst[i] = v;
    }
    return 0;
}

static int
fill_float64(PyObject **items, Py_ssize_t n, double *dst)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = PyFloat_AsDouble(items[i]);
        if (v == -1.0 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_OverflowError, "element %zd does not fit in a float", i);
            }
            return -1;
        }
        dst[i] = v;
    }
    return 0;
}

/* The common case in one pass: exact ints (each within the op's int64 bounds) and exact
 * floats, stored as int64 until the first float, then as float64 (the ints before it converted
 * in place, rounding as float(int) does). Returns 1 when done (*is_float set), 0 when some
 * element needs the careful path (nothing raised, dst partly written). */
static int
fill_common(int op, PyObject **items, Py_ssize_t n, void *dst, int *is_float)
{
    int64_t *ints = dst, lo, hi;
    double *floats = dst;
    Py_ssize_t i;

    if (sa_op_int64_bounds((uint32_t)op, &lo, &hi) < 0) {
        return 0;
    }
    for (i = 0; i < n && PyLong_CheckExact(items[i]); i++) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
        if (overflow || v < lo || v > hi) {
            return 0;
        }
        ints[i] = v;
    }
    *is_float = i < n;
    if (i == n) {
        return 1;
    }
    for (Py_ssize_t j = 0; j < i; j++) {
        floats[j] = (double)ints[j];
    }
    for (; i < n; i++) {
        PyObject *it = items[i];
        if (PyFloat_CheckExact(it)) {
            floats[i] = PyFloat_AS_DOUBLE(it);
        } else if (PyLong_CheckExact(it)) {
            double d = PyLong_AsDouble(it);
            if (d == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            floats[i] = d;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Any other list: checks every element's type first (TypeError before any OverflowError),
 * snapshotting the list when converting may run Python code, then converts. Returns 0 or -1;
 * *fast may be replaced by the snapshot. */
static int
fill_careful(int op, PyObject **fast, shim_list *lp)
{
    PyObject **items = PySequence_Fast_ITEMS(*fast);
    lp->is_float = 0;
    for (Py_ssize_t i = 0; i < lp->n; i++) {
        PyObject *it = items[i];
        if (PyFloat_Check(it)) {
            lp->is_float = 1;
        } else if (!PyLong_Check(it) && !PyIndex_Check(it)) {
            PyErr_Format(PyExc_TypeError,
                         "element %zd has type %.100s; shmaccel lists hold int and float only", i,
                         Py_TYPE(it)->tp_name);
            return -1;
        }
        if (!PyLong_CheckExact(it) && !PyFloat_CheckExact(it) && !PyBool_Check(it)
            && PyList_CheckExact(*fast)) {
            /* Converting this element runs Python code (__index__, __float__) that could
             * change the list under us: work on a snapshot instead. */
            PyObject *snapshot = PyList_AsTuple(*fast);
            if (snapshot == NULL) {
                return -1;
            }
            Py_SETREF(*fast, snapshot);
            items = PySequence_Fast_ITEMS(*fast);
        }
    }
    return lp->is_float ? fill_float64(items, lp->n, sa_block_data(lp->block))
                        : fill_int64(op, items, lp->n, sa_block_data(lp->block));
}

int
shim_prepare_list(ClientObject *self, int op, PyObject *seq, uint64_t deadline, shim_list *lp)
{
    PyObject *fast;

    memset(lp, 0, sizeof(*lp));
    if ((fast = PySequence_Fast(seq, "expected a list or tuple")) == NULL) {
        return -1;
    }
    lp->n = PySequence_Fast_GET_SIZE(fast);
    if (lp->n == 0) {
        Py_DECREF(fast);
        return 1;
    }
    if ((size_t)lp->n > SIZE_MAX / 8) {
        PyErr_SetString(PyExc_OverflowError, "list too long");
        goto fail;
    }
    if (alloc_block(self, (size_t)lp->n * 8, deadline, &lp->block) < 0) {
        goto fail;
    }
    if (!fill_common(op, PySequence_Fast_ITEMS(fast), lp->n, sa_block_data(lp->block),
                     &lp->is_float)
        && fill_careful(op, &fast, lp) < 0) {
        goto fail;
    }
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    shim_list_release(lp);
    return -1;
}

PyObject *
shim_list_result(const shim_list *lp)
{
    PyObject *result = PyList_New(lp->n);
    if (result == NULL) {
        return NULL;
    }
    const void *data = sa_block_data(lp->block);
    for (Py_ssize_t i = 0; i < lp->n; i++) {
        PyObject *v = lp->is_float ? PyFloat_FromDouble(((const double *)data)[i])
                                   : PyLong_FromLongLong(((const int64_t *)data)[i]);
        if (v == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, v);
    }
    return result;
}

void
shim_list_release(shim_list *lp)
{
    if (lp->block != NULL) {
        sa_block_unref(lp->block);
        lp->block = NULL;
    }
}

/* run_list(op, seq, timeout) -> list: ints (and bools) as int64, any float makes it float64. */
static PyObject *
Client_run_list(ClientObject *self, PyObject *args)
{
    PyObject *op_obj, *seq, *timeout, *result = NULL;
    shim_list lp;
    uint64_t deadline;
    int op, rc;

    if (!PyArg_ParseTuple(args, "OOO:run_list", &op_obj, &seq, &timeout)) {
        return NULL;
    }
    if ((op = shim_op_of(op_obj)) < 0 || parse_deadline(timeout, &deadline) < 0
        || !client_usable(self)) {
        return NULL;
    }
    if ((rc = shim_prepare_list(self, op, seq, deadline, &lp)) != 0) {
        return rc < 0 ? NULL : PyList_New(0);
    }
    if (run_request(self, (uint32_t)op, lp.is_float ? SA_FLOAT64 : SA_INT64, (uint64_t)lp.n,
                    lp.block, lp.block, deadline)
        == 0) {
        result = shim_list_result(&lp);
    }
    shim_list_release(&lp);
    return result;
}

static PyObject *
Client_sessions(ClientObject *self, PyObject *unused)
{
    sa_seat_info seats[1024];
    PyObject *list;
    int n;
    (void)unused;
    if (!client_usable(self)) {
        return NULL;
    }
    if ((n = sa_client_seats(self->client, seats, 1024)) < 0) {
        return shim_raise(state_of(self), n);
    }
    if ((list = PyList_New(n)) == NULL) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        PyObject *d =
            Py_BuildValue("{s:I,s:i,s:K,s:K,s:K,s:I}", "seat", seats[i].seat, "pid",
                          (int)seats[i].pid, "requests", (unsigned long long)seats[i].requests,
                          "elements", (unsigned long long)seats[i].elements, "errors",
                          (unsigned long long)seats[i].errors, "in_flight", seats[i].in_flight);
        if (d == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, d);
    }
    return list;
}

static PyObject *
Client_notify_fd(ClientObject *self, PyObject *unused)
{
    int fd;
    (void)unused;
    if (!client_usable(self)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    fd = sa_client_notify_fd(self->client);
    Py_END_ALLOW_THREADS
    return fd < 0 ? shim_raise(state_of(self), fd) : PyLong_FromLong(fd);
}

static PyMethodDef Client_methods[] = {
    {"start", (PyCFunction)shim_pending_start, METH_VARARGS,
     "start(op, src, dst) -> Pending: like run() but returns at once; see Pending.poll()."},
    {"start_list", (PyCFunction)shim_pending_start_list, METH_VARARGS,
     "start_list(op, seq) -> Pending: like run_list() but returns at once."},
    {"notify_fd", (PyCFunction)Client_notify_fd, METH_NOARGS,
     "The socket that becomes readable when a started request finishes (owned by the client)."},
    {"run", (PyCFunction)(void (*)(void))Client_run, METH_FASTCALL,
     "run(op, src, dst, timeout): dst[:] = op(src) in the worker; waits with the GIL released."},
    {"run_list", (PyCFunction)Client_run_list, METH_VARARGS,
     "run_list(op, seq, timeout) -> list: op over a list of ints (int64) or floats (float64)."},
    {"alloc", (PyCFunction)Client_alloc, METH_VARARGS,
     "alloc(cls, count, dtype, zero=False) -> cls instance backed by the shared arena."},
    {"info", (PyCFunction)Client_info, METH_NOARGS, "Figures from the control segment."},
    {"sessions", (PyCFunction)Client_sessions, METH_NOARGS,
     "Per-client figures of every session attached to the pool (a list of dicts)."},
    {"shutdown", (PyCFunction)Client_shutdown, METH_NOARGS,
     "End the session (a private worker exits); later calls raise PoolClosedError."},
    {"_forget_after_fork", (PyCFunction)Client_forget_after_fork, METH_NOARGS,
     "In a forked child: drop the parent's session without disturbing it."},
    {NULL},
};

static PyGetSetDef Client_getset[] = {
    {"dead", (getter)Client_get_dead, NULL, "True once the worker is gone or the session closed.",
     NULL},
    {NULL},
};

static PyType_Slot Client_slots[] = {
    {Py_tp_new, Client_new},
    {Py_tp_dealloc, Client_dealloc},
    {Py_tp_methods, Client_methods},
    {Py_tp_getset, Client_getset},
    {Py_tp_doc, "Client(*, worker=path | socket=path, threads=0): a session with a worker pool."},
    {0, NULL},
};

PyType_Spec shim_client_spec = {
    .name = "shmaccel._shmaccel.Client",
    .basicsize = sizeof(ClientObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Client_slots,
};
