"""SharedArray: an array in a pool's shared arena, and the dtype helpers around it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from . import _shmaccel

DTYPES: tuple[str, ...] = _shmaccel.DTYPES

# array.array typecodes with the same layout as each dtype (LP64 Linux).
TYPECODES = {
    "int8": "b", "int16": "h", "int32": "i", "int64": "q",
    "uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q",
    "float32": "f", "float64": "d",
}


def dtype_name(dtype: Any) -> str:
    """Return the shmaccel dtype name of a dtype given as a name, float, int or numpy dtype.

    float means float64 and int means int64; anything else other than a str needs numpy to
    have been imported. Raises TypeError when the result is not one of DTYPES.

    >>> dtype_name(float), dtype_name("int8")
    ('float64', 'int8')
    >>> dtype_name("float16")
    Traceback (most recent call last):
    TypeError: unsupported dtype 'float16': use one of int8, int16, ..., float64
    """
    if isinstance(dtype, str):
        name = dtype
    elif dtype is float:
        name = "float64"
    elif dtype is int:
        name = "int64"
    else:
        np = sys.modules.get("numpy")
        if np is None:
            raise TypeError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        name = np.dtype(dtype).name
    if name not in DTYPES:
        raise TypeError(f"unsupported dtype {name!r}: use one of {', '.join(DTYPES)}")
    return name


class SharedArray(_shmaccel.SharedBlock):
    """A one-dimensional array whose memory lives in a shmaccel shared arena.

    Create one with shmaccel.empty(), zeros() or array() (or the Pool methods of the same
    names); calling SharedArray() raises TypeError. Passed to square()/double() of the pool
    that made it, its data is not copied: the worker reads and writes it where it is. (A
    SharedArray of another pool, or of a pool whose worker has since been replaced, is copied
    like any other buffer.)

    It supports the buffer protocol (numpy.asarray(a) and memoryview(a) are zero-copy views),
    len(), a[i] (a Python int or float; IndexError out of range), a[i] = v (TypeError or
    ValueError when v does not fit the dtype), a[i:j] (a memoryview), iteration and tolist().
    Attributes: dtype (a name from shmaccel.DTYPES), nbytes, itemsize, format (the buffer
    format character). Its memory returns to the arena when it and every view of it are
    gone; it stays readable after its pool is closed.

    >>> a = shmaccel.zeros(4, "int32")
    >>> a[0] = 7
    >>> a.dtype, len(a), a.nbytes, a.tolist()
    ('int32', 4, 16, [7, 0, 0, 0])
    >>> import numpy as np
    >>> np.asarray(a)               # a view of the same memory, not a copy
    array([7, 0, 0, 0], dtype=int32)
    """

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        return memoryview(self)[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        memoryview(self)[index] = value

    def __iter__(self) -> Iterator[Any]:
        return iter(memoryview(self).tolist())

    def tolist(self) -> list[Any]:
        """Return the elements as a new list of Python ints or floats. Raises nothing.

        >>> shmaccel.array([1.5, 2.0]).tolist()
        [1.5, 2.0]
        """
        return memoryview(self).tolist()

    def __repr__(self) -> str:
        items = memoryview(self)[:8].tolist()
        more = ", ..." if len(self) > 8 else ""
        return f"SharedArray({items!r:.200}{more}, dtype={self.dtype!r}, len={len(self)})"
