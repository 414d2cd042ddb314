"""SharedArray: an array in a pool's shared arena, and the dtype helpers around it."""

from __future__ import annotations

import sys
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
    """Normalise a dtype given as a name, a Python type or a numpy dtype to a shmaccel name."""
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

    Passing it to shmaccel.square()/double() copies nothing. It supports the buffer protocol
    (numpy.asarray(a) and memoryview(a) are zero-copy views), len(), indexing, iteration and
    tolist(). Its memory returns to the arena when it and every view of it are gone.
    Create one with shmaccel.empty(), zeros() or array().
    """

    __slots__ = ()

    def __getitem__(self, index):
        return memoryview(self)[index]

    def __setitem__(self, index, value) -> None:
        memoryview(self)[index] = value

    def __iter__(self):
        return iter(memoryview(self).tolist())

    def tolist(self) -> list:
        """The elements as a list of Python ints or floats."""
        return memoryview(self).tolist()

    def __repr__(self) -> str:
        items = memoryview(self)[:8].tolist()
        more = ", ..." if len(self) > 8 else ""
        return f"SharedArray({items!r:.200}{more}, dtype={self.dtype!r}, len={len(self)})"
