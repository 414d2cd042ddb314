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
    PyTypeObject *PendingType;
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

/* The two sides of a request as blocks of the client's arena (client.c). */
typedef struct {
    sa_block *in, *out; /* references owned here */
    Py_buffer dst;      /* held while the result must still be copied to a foreign buffer */
    int copy_out;
    uint32_t dtype;
    uint64_t count;
    size_t nbytes;
} shim_io;

/* A list converted into an int64 or float64 block, computed in place (client.c). */
typedef struct {
    sa_block *block;
    Py_ssize_t n;
    int is_float;
} shim_list;

extern PyModuleDef shim_module;

/* client.c: checks src and dst (format, length, writability) and puts them in blocks: our
 * own SharedBlocks as they are, anything else copied in (or copied out by shim_finish_io).
 * Returns 0, 1 when there is nothing to compute (empty), or -1 with an exception set; io
 * holds nothing unless 0 is returned. Blocks are allocated by `deadline` (CLOCK_MONOTONIC ns,
 * UINT64_MAX: none), else TimeoutError. */
int shim_prepare_io(ClientObject *self, PyObject *src, PyObject *dst, uint64_t deadline,
                    shim_io *io);
/* client.c: copies the result out when `success` and a foreign dst was given; releases io. */
void shim_finish_io(shim_io *io, int success);
/* client.c: converts a list/tuple (int64, or float64 if any float). Returns 0, 1 when empty,
 * or -1 with TypeError/OverflowError set (TimeoutError: no block by `deadline`). */
int shim_prepare_list(ClientObject *self, int op, PyObject *seq, uint64_t deadline, shim_list *lp);
/* client.c: the computed list; shim_list_release: drops the block. */
PyObject *shim_list_result(const shim_list *lp);
void shim_list_release(shim_list *lp);
/* client.c: allocates with the GIL released, by `deadline` (UINT64_MAX: none); -1 with an
 * exception set on error (TimeoutError past the deadline, a signal handler's exception). */
int alloc_block(ClientObject *self, size_t nbytes, uint64_t deadline, sa_block **out);

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
/* pending.c: the Pending type, and Client.start() / Client.start_list(). */
extern PyType_Spec shim_pending_spec;
PyObject *shim_pending_start(ClientObject *client, PyObject *args);
PyObject *shim_pending_start_list(ClientObject *client, PyObject *args);

#endif /* SHIM_H */
