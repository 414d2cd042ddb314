/* pending.c -- Pending: a request in flight that no thread waits for.
 *
 * Futures and asyncio keep many requests going at once: each is a Pending, submitted with
 * SA_SUBMIT_NOTIFY as soon as its session has a free slot, and polled without blocking when
 * the session's notify socket says something finished. poll() never waits. */
#include "shim.h"

enum { QUEUED, SUBMITTED, FINISHED, FAILED };

typedef struct {
    PyObject_HEAD
    ClientObject *client;
    uint32_t op;
    int state;
    int error; /* the code it failed with */
    int is_list;
    shim_io io;   /* buffers (is_list == 0) */
    shim_list lp; /* lists (is_list == 1) */
    sa_ticket ticket;
    PyObject *list_result;
} PendingObject;

static shim_state *
state_of(PendingObject *self)
{
    return shim_state_of(Py_TYPE(self));
}

/* Drops the blocks (and, for buffers, copies the result out when success). */
static void
release(PendingObject *self, int success)
{
    if (self->is_list) {
        if (success && self->list_result == NULL) {
            self->list_result = shim_list_result(&self->lp);
        }
        shim_list_release(&self->lp);
    } else {
        shim_finish_io(&self->io, success);
    }
}

static PyObject *
fail(PendingObject *self, int code)
{
    self->state = FAILED;
    self->error = code;
    release(self, 0);
    return shim_raise(state_of(self), code);
}

/* Submits if a slot is free; stays QUEUED if not. Returns 0, or -1 with an exception set. */
static int
try_submit(PendingObject *self)
{
    sa_block *in = self->is_list ? self->lp.block : self->io.in;
    sa_block *out = self->is_list ? self->lp.block : self->io.out;
    uint32_t dtype = self->is_list ? (self->lp.is_float ? SA_FLOAT64 : SA_INT64) : self->io.dtype;
    uint64_t count = self->is_list ? (uint64_t)self->lp.n : self->io.count;
    int err = sa_submit_ex(self->client->client, self->op, dtype, count, in, out, 0,
                           SA_SUBMIT_NOTIFY, &self->ticket);
    if (err == 0) {
        self->state = SUBMITTED;
        return 0;
    }
    if (err == -ETIMEDOUT || err == -EINTR) {
        return 0; /* no free slot yet: a completion will bring us back */
    }
    fail(self, err);
    return -1;
}

static PyObject *
Pending_poll(PendingObject *self, PyObject *unused)
{
    int err;
    (void)unused;
    switch (self->state) {
    case QUEUED:
        if (try_submit(self) < 0) {
            return NULL;
        }
        Py_RETURN_FALSE;
    case SUBMITTED:
        err = sa_wait(self->client->client, &self->ticket, 0);
        if (err == -ETIMEDOUT || err == -EINTR) {
            Py_RETURN_FALSE;
        }
        if (err == 0) {
            self->state = FINISHED;
            release(self, 1);
            if (self->is_list && self->list_result == NULL) {
                self->state = FAILED;
                return NULL;
            }
            Py_RETURN_TRUE;
        }
        if (err != SA_EWORKERDIED && err != SA_ECLOSED && err > SA__ERRBASE) {
            sa_cancel(self->client->client, &self->ticket); /* a wait error: give the slot back */
        }
        return fail(self, err);
    case FINISHED:
        Py_RETURN_TRUE;
    default:
        return shim_raise(state_of(self), self->error);
    }
}

static PyObject *
Pending_result(PendingObject *self, PyObject *unused)
{
    (void)unused;
    if (self->state != FINISHED) {
        PyErr_SetString(PyExc_RuntimeError, "the request has not finished");
        return NULL;
    }
    return Py_NewRef(self->list_result != NULL ? self->list_result : Py_None);
}

static PyObject *
Pending_cancel(PendingObject *self, PyObject *unused)
{
    (void)unused;
    if (self->state == SUBMITTED) {
        /* The library keeps the blocks referenced until the worker is done with them. */
        sa_cancel(self->client->client, &self->ticket);
    }
    if (self->state == QUEUED || self->state == SUBMITTED) {
        self->state = FAILED;
        self->error = -ECANCELED;
        release(self, 0);
    }
    Py_RETURN_NONE;
}

static PyObject *
Pending_get_submitted(PendingObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->state != QUEUED);
}

static void
Pending_dealloc(PendingObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(Pending_cancel(self, NULL));
    Py_CLEAR(self->list_result);
    Py_CLEAR(self->client);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* A new, QUEUED Pending for `op_obj` on `client`, or NULL with an exception set. */
static PendingObject *
pending_new(ClientObject *client, PyObject *op_obj)
{
    shim_state *st = shim_state_of(Py_TYPE(client));
    PendingObject *self;
    int op = shim_op_of(op_obj);

    if (op < 0) {
        return NULL;
    }
    if (client->client == NULL) {
        shim_raise(st, SA_ECLOSED);
        return NULL;
    }
    self = (PendingObject *)st->PendingType->tp_alloc(st->PendingType, 0);
    if (self == NULL) {
        return NULL;
    }
    self->client = (ClientObject *)Py_NewRef(client);
    self->op = (uint32_t)op;
    self->state = QUEUED;
    return self;
}

/* After preparing (rc from shim_prepare_io/shim_prepare_list): submits, or finishes at once
 * an empty request. Returns self, or NULL (self released) with an exception set. */
static PyObject *
pending_begin(PendingObject *self, int rc)
{
    if (rc < 0 || (rc == 0 && try_submit(self) < 0)) {
        Py_DECREF(self);
        return NULL;
    }
    if (rc == 1) {
        self->state = FINISHED; /* empty: nothing to compute */
        if (self->is_list && (self->list_result = PyList_New(0)) == NULL) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

PyObject *
shim_pending_start(ClientObject *client, PyObject *args)
{
    PyObject *op_obj, *src, *dst;
    PendingObject *self;

    if (!PyArg_ParseTuple(args, "OOO:start", &op_obj, &src, &dst)
        || (self = pending_new(client, op_obj)) == NULL) {
        return NULL;
    }
    return pending_begin(self, shim_prepare_io(client, src, dst, UINT64_MAX, &self->io));
}

PyObject *
shim_pending_start_list(ClientObject *client, PyObject *args)
{
    PyObject *op_obj, *seq;
    PendingObject *self;

    if (!PyArg_ParseTuple(args, "OO:start_list", &op_obj, &seq)
        || (self = pending_new(client, op_obj)) == NULL) {
        return NULL;
    }
    self->is_list = 1;
    return pending_begin(self,
                         shim_prepare_list(client, (int)self->op, seq, UINT64_MAX, &self->lp));
}

static PyMethodDef Pending_methods[] = {
    {"poll", (PyCFunction)Pending_poll, METH_NOARGS,
     "Submit if still queued, then check without blocking: True once finished, False while "
     "pending; raises the request's error."},
    {"result", (PyCFunction)Pending_result, METH_NOARGS,
     "The list computed (list requests) or None (the result is in the output buffer)."},
    {"cancel", (PyCFunction)Pending_cancel, METH_NOARGS, "Give up on the request."},
    {NULL},
};

static PyGetSetDef Pending_getset[] = {
    {"submitted", (getter)Pending_get_submitted, NULL, "Whether it holds a slot yet.", NULL},
    {NULL},
};

static PyType_Slot Pending_slots[] = {
    {Py_tp_dealloc, Pending_dealloc},
    {Py_tp_methods, Pending_methods},
    {Py_tp_getset, Pending_getset},
    {Py_tp_doc, "A request in flight; made by Client.start() / start_list()."},
    {0, NULL},
};

PyType_Spec shim_pending_spec = {
    .name = "shmaccel._shmaccel.Pending",
    .basicsize = sizeof(PendingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Pending_slots,
};
