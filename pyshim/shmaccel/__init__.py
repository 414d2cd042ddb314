"""shmaccel: element-wise array kernels on every core, in a C worker process over POSIX shared
memory, with the GIL released while you wait.

    import shmaccel
    shmaccel.square([1, 2, 3])          # [1, 4, 9]
    a = shmaccel.array(range(10**6), dtype="float64")
    shmaccel.double(a, out=a)           # in place, zero copy

The user guide (docs/USER_GUIDE.md) describes every function, the result types, the errors,
named pools and the C client.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from . import _shmaccel
from ._array import DTYPES, SharedArray
from ._errors import Error, PoolClosedError, PoolNotFoundError, WorkerDiedError
from ._pool import OPS, Pool
from ._worker import worker_path

__version__: str = _shmaccel.C_VERSION  # the one version: SA_VERSION_STRING, shmaccel.h

__all__ = [
    "DTYPES", "OPS", "Error", "Pool", "PoolClosedError", "PoolNotFoundError", "SharedArray",
    "WorkerDiedError", "array", "cpu_count", "default_pool", "double", "empty", "square",
    "worker_path", "zeros",
]

_default: Pool | None = None
_default_lock = threading.Lock()


def default_pool() -> Pool:
    """Return the Pool that the module-level functions use, creating it on first use.

    It is the named pool $SHMACCEL_POOL when that variable is set (and not empty), else a
    private worker started on first use with one thread per CPU it may run on. A pool that was
    closed or whose worker died is replaced by a new one on the next call. After fork() the
    child gets its own default pool on first use.

    Raises PoolNotFoundError when $SHMACCEL_POOL names no running pool, ValueError when it is
    not a valid pool name, shmaccel.Error when no worker program is found (see worker_path()),
    WorkerDiedError when a private worker fails to start.

    >>> pool = shmaccel.default_pool()
    >>> pool.square([1, 2, 3])
    [1, 4, 9]
    >>> pool is shmaccel.default_pool()
    True
    """
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            old, _default = _default, None
            if old is not None:
                old.close()  # reaps a dead private worker
            _default = Pool(os.environ.get("SHMACCEL_POOL") or None)
        return _default


def _pool(pool: Pool | None) -> Pool:
    return pool if pool is not None else default_pool()


def double(data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
    """Return data * 2 element-wise, computed in the default pool's worker (see default_pool).

    The result's type follows the input's:
      list/tuple of ints (bools too) -> list of ints, computed as int64; OverflowError if an
          input or a result does not fit in int64 (Python ints never wrap)
      list/tuple with any float      -> list of floats (float64)
      SharedArray                    -> new SharedArray of the same dtype (input not copied)
      array.array                    -> array.array of the same typecode
      numpy.ndarray                  -> ndarray of the same dtype and shape
      any other buffer (bytes, ...)  -> SharedArray
    Fixed-width integer dtypes (all but lists) wrap around as in numpy.

    out=: a writable, C-contiguous buffer of the same dtype and number of elements (it may
    be data itself, for in place); it is filled and returned. For a list, out= must be int64
    (all ints) or float64 (any float).
    timeout=: seconds (None: no limit); TimeoutError if the call is not done by then. The
    request is cancelled; one already running still finishes writing a SharedArray out= (or
    data in place), while other out= buffers are only written on success.

    Raises TypeError (unsupported input, element type or dtype; read-only out=; timeout=
    not a number), ValueError (out= of another length or dtype, timeout < 0), OverflowError
    (list ints beyond int64), TimeoutError, MemoryError (no room in /dev/shm),
    WorkerDiedError (the worker died during the call), PoolClosedError, and the errors of
    default_pool().
    Ctrl-C raises KeyboardInterrupt within 50 ms.

    >>> shmaccel.double([1, 2, 3])
    [2, 4, 6]
    >>> shmaccel.double([1, 2.5])
    [2.0, 5.0]
    >>> a = shmaccel.array([1.0, 2.0])
    >>> shmaccel.double(a, out=a).tolist()      # in place, zero copy
    [2.0, 4.0]
    """
    pool = _default  # read without the lock: the common case, a live default pool
    if pool is None or pool._client.dead:  # pool.closed, without the property's call
        pool = default_pool()
    # Pool.double's zero-copy path, inlined: a small call takes about a microsecond, and each
    # Python call on the way adds a tenth of one.
    if out is not None and type(data) is SharedArray and type(out) is SharedArray:
        pool._client.run("double", data, out, timeout)
        return out
    return pool.run("double", data, out=out, timeout=timeout)


def square(data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
    """Return data * data element-wise, computed in the default pool's worker.

    Takes and returns the same kinds of data as double(), with the same out= and timeout=
    and the same errors. List ints raise OverflowError when a square leaves int64 (any int of
    absolute value above 3037000499); fixed-width dtypes wrap around as in numpy.

    >>> shmaccel.square([1, 2, 3])
    [1, 4, 9]
    >>> import array
    >>> shmaccel.square(array.array("b", [100]))  # int8 wraps around: 10000 mod 256
    array('b', [16])
    >>> shmaccel.square([2**32])
    Traceback (most recent call last):
    OverflowError: square of element 0 (4294967296) overflows int64
    """
    pool = _default  # as in double()
    if pool is None or pool._client.dead:
        pool = default_pool()
    if out is not None and type(data) is SharedArray and type(out) is SharedArray:
        pool._client.run("square", data, out, timeout)
        return out
    return pool.run("square", data, out=out, timeout=timeout)


def empty(n: int, dtype: Any = "float64", *, pool: Pool | None = None) -> SharedArray:
    """Return an uninitialised SharedArray of n elements of dtype in the pool's arena.

    dtype: a name from shmaccel.DTYPES, float (float64), int (int64) or a numpy dtype.
    pool: the Pool whose arena holds it (default: default_pool()).

    Raises TypeError for an unsupported dtype, ValueError for n < 0, MemoryError when
    /dev/shm has no room (memory is reserved now, never a SIGBUS later), PoolClosedError,
    WorkerDiedError.

    >>> a = shmaccel.empty(1000, "int32")
    >>> len(a), a.dtype, a.nbytes
    (1000, 'int32', 4000)
    """
    return _pool(pool).empty(n, dtype)


def zeros(n: int, dtype: Any = "float64", *, pool: Pool | None = None) -> SharedArray:
    """Return a SharedArray of n zeros of dtype (see empty() for the arguments and errors).

    >>> shmaccel.zeros(3, "int16").tolist()
    [0, 0, 0]
    """
    return _pool(pool).zeros(n, dtype)


def array(obj: Any, dtype: Any = None, *, pool: Pool | None = None) -> SharedArray:
    """Return a new SharedArray holding a copy of obj.

    obj: a list or tuple of numbers, any other iterable of numbers (range, generator), or a
    buffer (array.array, numpy array of any shape: flattened, bytes, memoryview).
    dtype: None keeps a buffer's dtype, and makes a sequence int64, or float64 if it holds
    any float; otherwise a name from shmaccel.DTYPES, float, int or a numpy dtype (values
    are converted). pool: as for empty().

    Raises TypeError (unsupported dtype or element), OverflowError (a value that does not
    fit the dtype), and the errors of empty().

    >>> shmaccel.array([1, 2, 3])
    SharedArray([1, 2, 3], dtype='int64', len=3)
    >>> shmaccel.array(range(4), dtype="float32").tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    return _pool(pool).array(obj, dtype)


def cpu_count() -> int:
    """Return the number of CPUs this process may run on (its sched_getaffinity set).

    It is also how many threads a pool started without threads= runs (the worker counts the
    CPUs it may run on the same way, at most 1024): a process pinned with taskset or a cpuset
    gets one thread per CPU it can use. Raises nothing in practice (OSError from
    sched_getaffinity only).

    >>> pool = shmaccel.Pool(threads=shmaccel.cpu_count())
    >>> pool.threads == shmaccel.cpu_count()
    True
    """
    return len(os.sched_getaffinity(0))


def _reset_after_fork() -> None:
    global _default, _default_lock
    _default = None
    _default_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


@atexit.register
def _close_default() -> None:
    if _default is not None:
        _default.close()
