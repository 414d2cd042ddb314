/* block.c -- SharedBlock: a shared-memory allocation that Python sees through the buffer
 * protocol (memoryview, numpy.asarray: zero copy). The shmaccel.SharedArray class derives
 * from it. The memory returns to its arena when the object and every view of it are gone. */
#include "shim.h"

static void
Block_dealloc(BlockObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->block != NULL) {
        sa_block_unref(self->block);
        self->block = NULL;
    }
    Py_CLEAR(self->owner);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
Block_getbuffer(BlockObject *self, Py_buffer *view, int flags)
{
    view->buf = sa_block_data(self->block);
    view->obj = Py_NewRef(self);
    view->len = self->count * self->itemsize;
    view->readonly = 0;
    view->itemsize = self->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? (char *)shim_format_of(self->dtype) : NULL;
    view->ndim = 1;
    view->shape = (flags & PyBUF_ND) ? &self->count : NULL;
    view->strides = (flags & PyBUF_STRIDES) ? &self->itemsize : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static Py_ssize_t
Block_len(BlockObject *self)
{
    return self->count;
}

static PyObject *
Block_get_dtype(BlockObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(sa_dtype_name(self->dtype));
}

static PyObject *
Block_get_nbytes(BlockObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->count * self->itemsize);
}

static PyObject *
Block_get_itemsize(BlockObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->itemsize);
}

static PyObject *
Block_get_format(BlockObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(shim_format_of(self->dtype));
}

static PyObject *
Block_get_client(BlockObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)self->owner);
}

static PyGetSetDef Block_getset[] = {
    {"dtype", (getter)Block_get_dtype, NULL, "numpy-style dtype name, e.g. 'float64'.", NULL},
    {"nbytes", (getter)Block_get_nbytes, NULL, "Size of the data in bytes.", NULL},
    {"itemsize", (getter)Block_get_itemsize, NULL, "Size of one element in bytes.", NULL},
    {"format", (getter)Block_get_format, NULL, "Buffer-protocol format character.", NULL},
    {"_client", (getter)Block_get_client, NULL, "The session whose arena holds the data.", NULL},
    {NULL},
};

static PyType_Slot Block_slots[] = {
    {Py_tp_dealloc, Block_dealloc},
    {Py_tp_getset, Block_getset},
    {Py_bf_getbuffer, Block_getbuffer},
    {Py_sq_length, Block_len},
    {Py_tp_doc, "Memory in a shmaccel shared arena; create with shmaccel.empty()/array()."},
    {0, NULL},
};

PyType_Spec shim_block_spec = {
    .name = "shmaccel._shmaccel.SharedBlock",
    .basicsize = sizeof(BlockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Block_slots,
};
