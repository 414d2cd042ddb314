/* shim.h -- private to pyshim/ext: the extension's module state, object layouts, helpers. */
#ifndef SHIM_H
#define SHIM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "shmaccel.h"

typedef struct {
    PyObject *Error;
    PyObject *WorkerDiedError;
    PyObject *PoolNotFoundError;
    PyObject *PoolClosedError;
    PyTypeObject *ClientType;
    PyTypeObject *BlockType;
} shim_state;

/* A session with a worker pool (sa_client). */
typedef struct {
    PyObject_HEAD
    sa_client *client;
} ClientObject;

/* An allocation in one of a client's arenas, exported through the buffer protocol. */
typedef struct {
    PyObject_HEAD
    sa_block *block;
    ClientObject *owner; /* keeps the client (and so the arena mapping) alive */
    uint32_t dtype;
    Py_ssize_t count;
    Py_ssize_t itemsize;
} BlockObject;

extern PyModuleDef shim_module;

/* module.c: the module state reached from any of our types or their Python subclasses. */
shim_state *shim_state_of(PyTypeObject *type);
/* module.c: sets the Python exception for a negative shmaccel code; returns NULL. */
PyObject *shim_raise(shim_state *st, int code);
/* module.c: the dtype of a buffer from its format and itemsize, or -1 with TypeError set. */
int shim_dtype_of_view(const Py_buffer *view);
/* module.c: the buffer-protocol format character of a dtype. */
const char *shim_format_of(uint32_t dtype);
/* module.c: op number from a name ("double"), or -1 with ValueError set. */
int shim_op_of(PyObject *name);

/* block.c */
extern PyType_Spec shim_block_spec;
/* client.c */
extern PyType_Spec shim_client_spec;

#endif /* SHIM_H */
