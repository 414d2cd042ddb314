"""shmaccel: element-wise array kernels on every core, in a C worker process over POSIX shared
memory, with the GIL released while you wait.

    import shmaccel
    shmaccel.square([1, 2, 3])          # [1, 4, 9]
    a = shmaccel.array(range(10**6), dtype="float64")
    shmaccel.double(a, out=a)           # in place, zero copy
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from ._array import DTYPES, SharedArray
from ._errors import Error, PoolClosedError, PoolNotFoundError, WorkerDiedError
from ._pool import OPS, Pool
from ._worker import worker_path

__version__ = "0.1.0"

__all__ = [
    "DTYPES", "OPS", "Error", "Pool", "PoolClosedError", "PoolNotFoundError", "SharedArray",
    "WorkerDiedError", "array", "cpu_count", "default_pool", "double", "empty", "square",
    "worker_path", "zeros",
]

_default: Pool | None = None
_default_lock = threading.Lock()


def default_pool() -> Pool:
    """The pool that the module-level functions use: the named pool $SHMACCEL_POOL when set,
    else a private worker started on first use (and started afresh if its worker died)."""
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
    """Return data * 2 element-wise, computed in the worker pool.

    data: a list/tuple of ints (-> list of ints, int64 arithmetic; OverflowError rather than
    wrap-around) or floats (-> list of floats); a SharedArray (-> SharedArray, zero copy); an
    array.array (-> same typecode); a numpy array (-> same dtype and shape); another buffer
    (-> SharedArray). out=: a writable buffer of the same length and format to fill and
    return (may be data, for in place). timeout=: seconds, TimeoutError past it.
    Fixed-width integers wrap around as in numpy.
    """
    pool = _default  # read without the lock: the common case, a live default pool
    if pool is None or pool.closed:
        pool = default_pool()
    return pool.double(data, out=out, timeout=timeout)


def square(data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
    """Return data * data element-wise, computed in the worker pool (see double())."""
    pool = _default
    if pool is None or pool.closed:
        pool = default_pool()
    return pool.square(data, out=out, timeout=timeout)


def empty(n: int, dtype: Any = "float64", *, pool: Pool | None = None) -> SharedArray:
    """An uninitialised SharedArray of n elements."""
    return _pool(pool).empty(n, dtype)


def zeros(n: int, dtype: Any = "float64", *, pool: Pool | None = None) -> SharedArray:
    """A SharedArray of n zeros."""
    return _pool(pool).zeros(n, dtype)


def array(obj: Any, dtype: Any = None, *, pool: Pool | None = None) -> SharedArray:
    """A SharedArray holding a copy of obj (a sequence of numbers or a buffer)."""
    return _pool(pool).array(obj, dtype)


def cpu_count() -> int:
    """CPUs this process may run on (the default pool size)."""
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
