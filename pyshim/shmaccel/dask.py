"""shmaccel for Dask arrays: square() and double() send every block to the shmaccel pool of the
node that computes it.

Each block is computed by shmaccel's module-level kernel inside the Dask worker process that
holds it, so it goes to that process's default pool: the named pool $SHMACCEL_POOL when the
worker's environment sets it (one pool per node, started with `shmaccel-pool start NAME`), else
a private worker that the process starts on first use. docs/dask.md shows how to deploy it.
"""

from __future__ import annotations

import math
from typing import Any, Literal, SupportsFloat, SupportsIndex

try:
    import dask.array as da
    import numpy as np
    import numpy.typing as npt
except ImportError as missing:
    raise ImportError(
        f"shmaccel.dask needs dask[array] and numpy ({missing}); install them with: "
        'pip install "dask[array,distributed]"'
    ) from missing

from . import DTYPES
from . import double as _double
from . import square as _square

__all__ = ["double", "square"]

_Op = Literal["double", "square"]


def square(darr: da.Array, *, timeout: float | None = None) -> da.Array:
    """Return a lazy dask array of darr * darr, element-wise, computed by shmaccel.

    Same shape, chunks and dtype as darr; nothing runs until it is computed. Then each block
    goes to the shmaccel pool of the process that computes it ($SHMACCEL_POOL there, else a
    private worker of that process). Fixed-width integers wrap around as in numpy.

    timeout: seconds that each block's call may take (None: no limit); a block that takes
    longer fails the computation with TimeoutError.

    Raises TypeError now, before any graph is built, when darr is not a dask.array.Array,
    when its dtype is not one of shmaccel.DTYPES in native byte order, or when its blocks are
    not plain numpy arrays (cupy, masked arrays); TypeError or ValueError for a bad timeout.
    Errors of a block's call (TimeoutError, PoolNotFoundError when $SHMACCEL_POOL names no
    running pool, MemoryError when /dev/shm is full) surface when the result is computed.

    Example:

        import dask.array as da
        import shmaccel.dask
        x = da.arange(10**7, chunks=10**6, dtype="float64")
        y = shmaccel.dask.square(x)   # lazy
        y.sum().compute()
    """
    return _map_blocks("square", darr, timeout)


def double(darr: da.Array, *, timeout: float | None = None) -> da.Array:
    """Return a lazy dask array of darr * 2, element-wise, computed by shmaccel.

    Everything else as in square(): same shape, chunks and dtype; TypeError for non-dask
    input or an unsupported dtype, raised when called, not later in a worker.

    Example:

        y = shmaccel.dask.double(da.ones((4000, 4000), chunks=1000, dtype="int32"))
    """
    return _map_blocks("double", darr, timeout)


def _map_blocks(op: _Op, darr: object, timeout: object) -> da.Array:
    """The graph of op over every block of darr, after checking everything a worker would."""
    if not isinstance(darr, da.Array):
        hint = f"; for a numpy array, list or buffer call shmaccel.{op}()"
        raise TypeError(
            f"shmaccel.dask.{op}() takes a dask.array.Array, not {type(darr).__name__}{hint}"
        )
    dtype = darr.dtype
    if not dtype.isnative or dtype.name not in DTYPES:
        fix = (
            f" (byte-swapped; darr.astype({dtype.name!r}) converts it)"
            if dtype.name in DTYPES
            else ""
        )
        raise TypeError(
            f"shmaccel.dask.{op}(): unsupported dtype {dtype.str!r} ({dtype.name}){fix}; "
            f"use one of {', '.join(DTYPES)}"
        )
    if type(darr._meta) is not np.ndarray:
        raise TypeError(
            f"shmaccel.dask.{op}() computes plain numpy blocks; this array's blocks are "
            f"{type(darr._meta).__module__}.{type(darr._meta).__qualname__}"
        )
    seconds = _check_timeout(timeout)
    # An explicit meta keeps map_blocks from calling the kernel on an empty sample to infer
    # one: that would start a pool in the process that only builds the graph.
    result: da.Array = da.map_blocks(  # type: ignore[no-untyped-call]  # dask leaves it untyped
        _apply_block,
        darr,
        op=op,
        timeout=seconds,
        dtype=dtype,
        meta=np.empty((0,) * darr.ndim, dtype=dtype),
        token=f"shmaccel-{op}",
    )
    return result


def _check_timeout(timeout: object) -> float | None:
    """timeout as float seconds (None stays None); the checks shmaccel's calls make."""
    if timeout is None:
        return None
    if not isinstance(timeout, (SupportsFloat, SupportsIndex)):
        raise TypeError(
            f"timeout must be None or a number of seconds, not {type(timeout).__name__}"
        )
    seconds = float(timeout)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("timeout must be None or a number >= 0")
    return seconds


def _apply_block(block: Any, op: _Op, timeout: float | None) -> npt.NDArray[Any]:
    """One block through the default pool of the process computing it (runs in the worker)."""
    if isinstance(block, np.generic):
        block = np.asarray(block)  # a 0-d array's block may be a numpy scalar
    # Checked again here: meta only promises the block type, and anything else would come
    # back from shmaccel as another type (a buffer as a SharedArray, a masked array unmasked).
    if type(block) is not np.ndarray:
        raise TypeError(
            f"shmaccel.dask.{op}(): got a block of type {type(block).__name__}, "
            f"not a numpy array"
        )
    kernel = _square if op == "square" else _double
    result: npt.NDArray[Any] = kernel(block, timeout=timeout)
    return result
