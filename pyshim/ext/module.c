/* module.c -- the _shmaccel extension module: state, exceptions, error mapping, formats.
 *
 * The one place where shmaccel's negative error codes become Python exceptions.
 */
#include "shim.h"

#include <string.h>

shim_state *
shim_state_of(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &shim_module);
    return module == NULL ? NULL : (shim_state *)PyModule_GetState(module);
}

PyObject *
shim_raise(shim_state *st, int code)
{
    switch (code) {
    case SA_EWORKERDIED:
        PyErr_SetString(st->WorkerDiedError,
                        "the shmaccel worker process died; the call did not complete");
        break;
    case SA_ECLOSED:
        PyErr_SetString(st->PoolClosedError, "the shmaccel pool is closed");
        break;
    case -ETIMEDOUT:
        PyErr_SetString(PyExc_TimeoutError, "the shmaccel call did not finish in time");
        break;
    case -ENOMEM:
        PyErr_SetString(PyExc_MemoryError,
                        "out of shared memory for shmaccel (is /dev/shm full or too small?)");
        break;
    case -ENOENT:
        PyErr_SetString(st->PoolNotFoundError, "no shmaccel pool is running there");
        break;
    case -EINVAL:
        PyErr_SetString(PyExc_ValueError, "invalid argument");
        break;
    default:
        if (code < 0 && code > SA__ERRBASE) {
            PyObject *args = Py_BuildValue("(is)", -code, sa_strerror(code));
            if (args != NULL) {
                PyErr_SetObject(PyExc_OSError, args);
                Py_DECREF(args);
            }
        } else {
            PyErr_Format(st->Error, "shmaccel: %s (code %d)", sa_strerror(code), code);
        }
        break;
    }
    return NULL;
}

static const char *const formats[SA_DTYPE_MAX + 1] = {
    [SA_INT8] = "b",   [SA_INT16] = "h",  [SA_INT32] = "i",  [SA_INT64] = "q",   [SA_UINT8] = "B",
    [SA_UINT16] = "H", [SA_UINT32] = "I", [SA_UINT64] = "Q", [SA_FLOAT32] = "f", [SA_FLOAT64] = "d",
};

const char *
shim_format_of(uint32_t dtype)
{
    return formats[dtype];
}

int
shim_dtype_of_view(const Py_buffer *view)
{
    const char *f = view->format == NULL ? "B" : view->format;
    const char *code = f;
    int is_signed, is_float = 0;

    /* Native or little-endian standard sizes are the machine's own layout; a big-endian or
     * compound format is not an array of one of our dtypes. */
    if (*code == '@' || *code == '=' || *code == '<') {
        code++;
    }
    if (code[0] == '\0' || code[1] != '\0') {
        goto unsupported;
    }
    switch (*code) {
    case 'b':
    case 'h':
    case 'i':
    case 'l':
    case 'q':
    case 'n':
        is_signed = 1;
        break;
    case 'B':
    case 'H':
    case 'I':
    case 'L':
    case 'Q':
    case 'N':
        is_signed = 0;
        break;
    case 'f':
    case 'd':
        is_signed = 1;
        is_float = 1;
        break;
    default:
        goto unsupported;
    }
    switch (view->itemsize) {
    case 1:
        return is_float ? -1 : (is_signed ? SA_INT8 : SA_UINT8);
    case 2:
        if (!is_float) {
            return is_signed ? SA_INT16 : SA_UINT16;
        }
        break;
    case 4:
        return is_float ? SA_FLOAT32 : (is_signed ? SA_INT32 : SA_UINT32);
    case 8:
        return is_float ? SA_FLOAT64 : (is_signed ? SA_INT64 : SA_UINT64);
    default:
        break;
    }
unsupported:
    PyErr_Format(PyExc_TypeError,
                 "unsupported buffer format '%s' (itemsize %zd): shmaccel handles int8..int64, "
                 "uint8..uint64, float32 and float64",
                 f, view->itemsize);
    return -1;
}

int
shim_op_of(PyObject *name)
{
    const char *s;
    int op;
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "op must be a str such as 'square', not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    if ((s = PyUnicode_AsUTF8(name)) == NULL) {
        return -1;
    }
    op = sa_op_from_name(s);
    if (op < 0) {
        PyErr_Format(PyExc_ValueError, "unknown op %R", name);
        return -1;
    }
    return op;
}

static int
add_exception(PyObject *m, PyObject **slot, const char *name, PyObject *bases, const char *doc)
{
    *slot = PyErr_NewExceptionWithDoc(name, doc, bases, NULL);
    if (*slot == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(m, strrchr(name, '.') + 1, *slot);
}

static int
shim_exec(PyObject *m)
{
    shim_state *st = PyModule_GetState(m);
    PyObject *bases = NULL, *names = NULL;
    int rc = -1;

    if (add_exception(m, &st->Error, "shmaccel.Error", NULL,
                      "Base class of shmaccel's own errors.\n\n"
                      "Raised as such for failures with no class of their own: no worker program\n"
                      "found, a named pool with no free seat (--max-clients), a request above the\n"
                      "pool's size limit, a protocol or version mismatch, a bus error reading an\n"
                      "arena; the message names the cause. TypeError, ValueError, OverflowError,\n"
                      "TimeoutError, MemoryError and OSError are raised as themselves. Example:\n\n"
                      "    try:\n"
                      "        shmaccel.square(data)\n"
                      "    except shmaccel.Error as e:      # any of shmaccel's own\n"
                      "        print(e)\n")
        < 0) {
        return -1;
    }
    if (add_exception(m, &st->WorkerDiedError, "shmaccel.WorkerDiedError", st->Error,
                      "The worker process died while a call was in flight (or could not start).\n\n"
                      "Raised within one 50 ms wait slice of the death, by every call, future and\n"
                      "await in flight on that pool. The default pool starts a new worker on the\n"
                      "next call; an explicit Pool stays dead: make a new one. Example:\n\n"
                      "    try:\n"
                      "        pool.square(a, out=a)\n"
                      "    except shmaccel.WorkerDiedError:\n"
                      "        pool = shmaccel.Pool()  # a may be partly computed\n")
            < 0
        || add_exception(m, &st->PoolClosedError, "shmaccel.PoolClosedError", st->Error,
                         "The pool was closed or is stopping.\n\n"
                         "Raised by calls on a Pool after close() (also an inherited Pool in a\n"
                         "forked child) and by new calls on a named pool that\n"
                         "`shmaccel-pool stop` is stopping; futures still pending when close()\n"
                         "runs fail with it.\n\n"
                         "    >>> pool.close()\n"
                         "    >>> pool.square([1])\n"
                         "    Traceback (most recent call last):\n"
                         "    shmaccel.PoolClosedError: the shmaccel pool is closed\n")
               < 0) {
        return -1;
    }
    bases = PyTuple_Pack(2, st->Error, PyExc_FileNotFoundError);
    if (bases == NULL
        || add_exception(m, &st->PoolNotFoundError, "shmaccel.PoolNotFoundError", bases,
                         "No pool of that name is running (also a FileNotFoundError).\n\n"
                         "Raised by Pool(name), and by the module-level functions when\n"
                         "$SHMACCEL_POOL names a pool that is not running (or was stopped).\n"
                         "Example:\n\n"
                         "    try:\n"
                         "        pool = shmaccel.Pool(\"mypool\")\n"
                         "    except shmaccel.PoolNotFoundError:\n"
                         "        pool = shmaccel.Pool()  # a private one\n")
               < 0) {
        goto out;
    }
    st->BlockType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &shim_block_spec, NULL);
    st->ClientType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &shim_client_spec, NULL);
    st->PendingType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &shim_pending_spec, NULL);
    if (st->BlockType == NULL || st->ClientType == NULL || st->PendingType == NULL
        || PyModule_AddType(m, st->BlockType) < 0 || PyModule_AddType(m, st->ClientType) < 0
        || PyModule_AddType(m, st->PendingType) < 0) {
        goto out;
    }
    names = PyTuple_New(SA_OP_MAX);
    if (names == NULL) {
        goto out;
    }
    for (int op = 1; op <= SA_OP_MAX; op++) {
        PyTuple_SET_ITEM(names, op - 1, PyUnicode_FromString(sa_op_name((uint32_t)op)));
    }
    if (PyModule_AddObjectRef(m, "OPS", names) < 0) {
        goto out;
    }
    Py_CLEAR(names);
    names = PyTuple_New(SA_DTYPE_MAX);
    if (names == NULL) {
        goto out;
    }
    for (int d = 1; d <= SA_DTYPE_MAX; d++) {
        PyTuple_SET_ITEM(names, d - 1, PyUnicode_FromString(sa_dtype_name((uint32_t)d)));
    }
    if (PyModule_AddObjectRef(m, "DTYPES", names) < 0
        || PyModule_AddStringConstant(m, "C_VERSION", SA_VERSION_STRING) < 0
        || PyModule_AddIntConstant(m, "MAX_THREADS", SA_MAX_THREADS) < 0
        || PyModule_AddIntConstant(m, "MAX_CLIENTS", SA_MAX_CLIENTS) < 0) {
        goto out;
    }
    rc = 0;
out:
    Py_XDECREF(bases);
    Py_XDECREF(names);
    return rc;
}

static int
shim_traverse(PyObject *m, visitproc visit, void *arg)
{
    shim_state *st = PyModule_GetState(m);
    Py_VISIT(st->Error);
    Py_VISIT(st->WorkerDiedError);
    Py_VISIT(st->PoolNotFoundError);
    Py_VISIT(st->PoolClosedError);
    Py_VISIT(st->ClientType);
    Py_VISIT(st->BlockType);
    Py_VISIT(st->PendingType);
    return 0;
}

static int
shim_clear(PyObject *m)
{
    shim_state *st = PyModule_GetState(m);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->WorkerDiedError);
    Py_CLEAR(st->PoolNotFoundError);
    Py_CLEAR(st->PoolClosedError);
    Py_CLEAR(st->ClientType);
    Py_CLEAR(st->BlockType);
    Py_CLEAR(st->PendingType);
    return 0;
}

static void
shim_free(void *m)
{
    shim_clear((PyObject *)m);
}

/* dtype_of(obj) -> str: the shmaccel dtype of a buffer, or TypeError naming its format. */
static PyObject *
shim_dtype_of(PyObject *module, PyObject *obj)
{
    Py_buffer view;
    int d;
    (void)module;
    if (PyObject_GetBuffer(obj, &view, PyBUF_FORMAT | PyBUF_STRIDES) < 0) {
        return NULL;
    }
    d = shim_dtype_of_view(&view);
    PyBuffer_Release(&view);
    return d < 0 ? NULL : PyUnicode_FromString(sa_dtype_name((uint32_t)d));
}

/* pool_socket_path(name) -> str, or ValueError for a name that is not 1-64 characters of
 * [A-Za-z0-9._-] starting with something other than '.'. Touches no file. */
static PyObject *
shim_pool_socket_path(PyObject *module, PyObject *arg)
{
    char path[512];
    const char *name;
    Py_ssize_t len;
    int err;
    (void)module;
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "pool name must be a str, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if ((name = PyUnicode_AsUTF8AndSize(arg, &len)) == NULL) {
        return NULL;
    }
    err = (size_t)len != strlen(name) ? -EINVAL : sa_pool_socket_path(name, path, sizeof(path));
    if (err == -EINVAL) {
        PyErr_Format(PyExc_ValueError,
                     "invalid pool name %R: use 1-64 characters of A-Z a-z 0-9 . _ - "
                     "not starting with '.'",
                     arg);
        return NULL;
    }
    if (err < 0) {
        return shim_raise(PyModule_GetState(module), err);
    }
    return PyUnicode_DecodeFSDefault(path);
}

static PyMethodDef shim_functions[] = {
    {"dtype_of", shim_dtype_of, METH_O,
     "dtype_of(buffer) -> the shmaccel dtype name of a buffer's format.\n\n"
     "Raises TypeError for an object without the buffer protocol or a format that is not one\n"
     "of shmaccel.DTYPES.\n\n"
     "    >>> _shmaccel.dtype_of(array.array('d'))\n"
     "    'float64'\n"},
    {"pool_socket_path", shim_pool_socket_path, METH_O,
     "pool_socket_path(name) -> path of the named pool's socket (touches no file).\n\n"
     "Raises TypeError for a name that is not a str, ValueError for an invalid name (1-64\n"
     "characters of A-Z a-z 0-9 . _ - not starting with '.'), PermissionError when the\n"
     "runtime directory belongs to another user or is open to others.\n\n"
     "    >>> _shmaccel.pool_socket_path('mypool')\n"
     "    '/run/user/1000/shmaccel/mypool.sock'\n"},
    {NULL},
};

static PyModuleDef_Slot shim_slots[] = {
    {Py_mod_exec, shim_exec},
    {0, NULL},
};

PyModuleDef shim_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmaccel._shmaccel",
    .m_doc = "C core of shmaccel: sessions with worker pools and shared-memory blocks.",
    .m_size = sizeof(shim_state),
    .m_methods = shim_functions,
    .m_slots = shim_slots,
    .m_traverse = shim_traverse,
    .m_clear = shim_clear,
    .m_free = shim_free,
};

PyMODINIT_FUNC
PyInit__shmaccel(void)
{
    return PyModuleDef_Init(&shim_module);
}
