"""Type stubs for shmaccel's public API (PEP 561: shipped with the py.typed marker).

The kernels' result type follows the input's: a list or tuple of ints gives list[int], of
floats list[float]; a SharedArray, array.array or numpy array gives the same kind back (numpy:
same shape and dtype); any other buffer gives a SharedArray; with out= the result is out itself.
numpy is optional: without it installed the numpy overloads degrade to Any, so the stub checks
either way. Self-contained on purpose: importing the private modules here would make mypy read
their partly annotated sources. tests/test_typing.py keeps it in step with the runtime.
"""

# The overloads are tried in order and the first match wins. An array.array (from Python 3.12
# a numpy array too) is also a Buffer, whose overload comes last: mypy calls that an unsafe
# overlap. Without numpy installed the numpy overload takes Any, so the Buffer one can never
# match: mypy says so when it checks this file from a source tree (never when installed).
# mypy: disable-error-code="overload-overlap, overload-cannot-match"

from array import array as _PyArray
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Final, SupportsIndex, TypeAlias, TypedDict, TypeVar, final, overload

# numpy is optional at runtime; without it every numpy.* type below is Any.
import numpy  # type: ignore[import-not-found, unused-ignore]
from typing_extensions import Buffer, Self

__all__ = [
    "DTYPES", "OPS", "Error", "Pool", "PoolClosedError", "PoolNotFoundError", "SharedArray",
    "WorkerDiedError", "array", "cpu_count", "default_pool", "double", "empty", "square",
    "worker_path", "zeros",
]

__version__: Final[str]
DTYPES: Final[tuple[str, ...]]  # "int8" ... "uint64", "float32", "float64"
OPS: Final[tuple[str, ...]]  # "double", "square": the names Pool.run()/submit()/arun() take

_T = TypeVar("_T")
_IntT = TypeVar("_IntT", bound=int)  # bool too: a list of bools gives list[int]
_FloatT = TypeVar("_FloatT", bound=float)
_ElemT = TypeVar("_ElemT", int, float)  # array.array of a numeric typecode
_ShapeT = TypeVar("_ShapeT", bound=tuple[int, ...])
_DTypeT = TypeVar("_DTypeT", bound=numpy.dtype[Any])
# numpy declares ndarray.__buffer__ only for Python >= 3.12, hence ndarray beside Buffer.
_OutT = TypeVar("_OutT", bound=Buffer | numpy.ndarray[Any, Any])

_Seq: TypeAlias = list[_T] | tuple[_T, ...]
# Anything a kernel takes: a list or tuple of numbers (of type _FloatT), a buffer, an ndarray.
_Input: TypeAlias = _Seq[_FloatT] | Buffer | numpy.ndarray[Any, Any]
# A dtype: a name from DTYPES, int (int64), float (float64), or a numpy dtype or scalar type.
_DTypeLike: TypeAlias = str | type[int] | type[float] | numpy.dtype[Any] | type[numpy.generic]


class Error(Exception):
    """Base class of shmaccel errors."""


class WorkerDiedError(Error):
    """The worker process died while a call was in flight."""


class PoolClosedError(Error):
    """The pool was closed or is stopping."""


class PoolNotFoundError(Error, FileNotFoundError):
    """No pool of that name is running."""


@final
class SharedArray:
    """A one-dimensional array in a pool's shared arena (create with empty/zeros/array).

    Elements are typed float, which in PEP 484 also admits int: the dtype is a runtime value.
    """

    @property
    def dtype(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def itemsize(self) -> int: ...
    @property
    def format(self) -> str: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: SupportsIndex) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> memoryview[float]: ...
    @overload
    def __setitem__(self, index: SupportsIndex, value: float) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Buffer) -> None: ...
    def __iter__(self) -> Iterator[float]: ...
    def tolist(self) -> list[float]: ...
    # The C buffer protocol (memoryview(a), numpy.asarray(a)); a dunder only from Python 3.12.
    def __buffer__(self, flags: int, /) -> memoryview: ...


class _SessionStats(TypedDict):
    seat: int
    pid: int
    requests: int
    elements: int
    errors: int
    in_flight: int


class _PoolStats(TypedDict):
    worker_pid: int
    threads: int
    clients: int
    seat: int
    requests: int
    elements: int
    errors: int
    client_requests: int
    client_elements: int
    client_errors: int
    client_in_flight: int
    uptime_s: float
    busy_pct: float
    sessions: list[_SessionStats]


class Pool:
    """A worker pool session: Pool() starts a private worker, Pool("name") attaches to a
    named one (PoolNotFoundError when none runs)."""

    name: str | None
    worker_pid: int
    threads: int

    def __init__(self, name: str | None = None, *, threads: int | None = None) -> None: ...

    # -- the kernels: the same overloads as the module-level double()/square() ------------

    @overload
    def double(self, data: _Input[_FloatT], *, out: _OutT,
               timeout: float | None = None) -> _OutT: ...
    @overload
    def double(self, data: _Seq[_IntT], *, out: None = None,
               timeout: float | None = None) -> list[int]: ...
    @overload
    def double(self, data: _Seq[_FloatT], *, out: None = None,
               timeout: float | None = None) -> list[float]: ...
    @overload
    def double(self, data: SharedArray, *, out: None = None,
               timeout: float | None = None) -> SharedArray: ...
    @overload
    def double(self, data: _PyArray[_ElemT], *, out: None = None,
               timeout: float | None = None) -> _PyArray[_ElemT]: ...
    @overload
    def double(self, data: numpy.ndarray[_ShapeT, _DTypeT], *, out: None = None,
               timeout: float | None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
    @overload
    def double(self, data: Buffer, *, out: None = None,
               timeout: float | None = None) -> SharedArray: ...

    @overload
    def square(self, data: _Input[_FloatT], *, out: _OutT,
               timeout: float | None = None) -> _OutT: ...
    @overload
    def square(self, data: _Seq[_IntT], *, out: None = None,
               timeout: float | None = None) -> list[int]: ...
    @overload
    def square(self, data: _Seq[_FloatT], *, out: None = None,
               timeout: float | None = None) -> list[float]: ...
    @overload
    def square(self, data: SharedArray, *, out: None = None,
               timeout: float | None = None) -> SharedArray: ...
    @overload
    def square(self, data: _PyArray[_ElemT], *, out: None = None,
               timeout: float | None = None) -> _PyArray[_ElemT]: ...
    @overload
    def square(self, data: numpy.ndarray[_ShapeT, _DTypeT], *, out: None = None,
               timeout: float | None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
    @overload
    def square(self, data: Buffer, *, out: None = None,
               timeout: float | None = None) -> SharedArray: ...

    # op: a name from OPS (ValueError otherwise).
    @overload
    def run(self, op: str, data: _Input[_FloatT], *, out: _OutT,
            timeout: float | None = None) -> _OutT: ...
    @overload
    def run(self, op: str, data: _Seq[_IntT], *, out: None = None,
            timeout: float | None = None) -> list[int]: ...
    @overload
    def run(self, op: str, data: _Seq[_FloatT], *, out: None = None,
            timeout: float | None = None) -> list[float]: ...
    @overload
    def run(self, op: str, data: SharedArray, *, out: None = None,
            timeout: float | None = None) -> SharedArray: ...
    @overload
    def run(self, op: str, data: _PyArray[_ElemT], *, out: None = None,
            timeout: float | None = None) -> _PyArray[_ElemT]: ...
    @overload
    def run(self, op: str, data: numpy.ndarray[_ShapeT, _DTypeT], *, out: None = None,
            timeout: float | None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
    @overload
    def run(self, op: str, data: Buffer, *, out: None = None,
            timeout: float | None = None) -> SharedArray: ...

    # -- many requests in flight: futures and asyncio (no timeout=: wait on the future) ----

    @overload
    def submit(self, op: str, data: _Input[_FloatT], *, out: _OutT) -> Future[_OutT]: ...
    @overload
    def submit(self, op: str, data: _Seq[_IntT], *, out: None = None) -> Future[list[int]]: ...
    @overload
    def submit(self, op: str, data: _Seq[_FloatT], *,
               out: None = None) -> Future[list[float]]: ...
    @overload
    def submit(self, op: str, data: SharedArray, *, out: None = None) -> Future[SharedArray]: ...
    @overload
    def submit(self, op: str, data: _PyArray[_ElemT], *,
               out: None = None) -> Future[_PyArray[_ElemT]]: ...
    @overload
    def submit(self, op: str, data: numpy.ndarray[_ShapeT, _DTypeT], *,
               out: None = None) -> Future[numpy.ndarray[_ShapeT, _DTypeT]]: ...
    @overload
    def submit(self, op: str, data: Buffer, *, out: None = None) -> Future[SharedArray]: ...

    @overload
    async def arun(self, op: str, data: _Input[_FloatT], *, out: _OutT) -> _OutT: ...
    @overload
    async def arun(self, op: str, data: _Seq[_IntT], *, out: None = None) -> list[int]: ...
    @overload
    async def arun(self, op: str, data: _Seq[_FloatT], *, out: None = None) -> list[float]: ...
    @overload
    async def arun(self, op: str, data: SharedArray, *, out: None = None) -> SharedArray: ...
    @overload
    async def arun(self, op: str, data: _PyArray[_ElemT], *,
                   out: None = None) -> _PyArray[_ElemT]: ...
    @overload
    async def arun(self, op: str, data: numpy.ndarray[_ShapeT, _DTypeT], *,
                   out: None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
    @overload
    async def arun(self, op: str, data: Buffer, *, out: None = None) -> SharedArray: ...

    @overload
    async def asquare(self, data: _Input[_FloatT], *, out: _OutT) -> _OutT: ...
    @overload
    async def asquare(self, data: _Seq[_IntT], *, out: None = None) -> list[int]: ...
    @overload
    async def asquare(self, data: _Seq[_FloatT], *, out: None = None) -> list[float]: ...
    @overload
    async def asquare(self, data: SharedArray, *, out: None = None) -> SharedArray: ...
    @overload
    async def asquare(self, data: _PyArray[_ElemT], *, out: None = None) -> _PyArray[_ElemT]: ...
    @overload
    async def asquare(self, data: numpy.ndarray[_ShapeT, _DTypeT], *,
                      out: None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
    @overload
    async def asquare(self, data: Buffer, *, out: None = None) -> SharedArray: ...

    @overload
    async def adouble(self, data: _Input[_FloatT], *, out: _OutT) -> _OutT: ...
    @overload
    async def adouble(self, data: _Seq[_IntT], *, out: None = None) -> list[int]: ...
    @overload
    async def adouble(self, data: _Seq[_FloatT], *, out: None = None) -> list[float]: ...
    @overload
    async def adouble(self, data: SharedArray, *, out: None = None) -> SharedArray: ...
    @overload
    async def adouble(self, data: _PyArray[_ElemT], *, out: None = None) -> _PyArray[_ElemT]: ...
    @overload
    async def adouble(self, data: numpy.ndarray[_ShapeT, _DTypeT], *,
                      out: None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
    @overload
    async def adouble(self, data: Buffer, *, out: None = None) -> SharedArray: ...

    # Results in order; a mix of input kinds gives list[Any].
    @overload
    def map(self, op: str, iterable: Iterable[_Seq[_IntT]]) -> list[list[int]]: ...
    @overload
    def map(self, op: str, iterable: Iterable[_Seq[_FloatT]]) -> list[list[float]]: ...
    @overload
    def map(self, op: str, iterable: Iterable[SharedArray]) -> list[SharedArray]: ...
    @overload
    def map(self, op: str, iterable: Iterable[_PyArray[_ElemT]]) -> list[_PyArray[_ElemT]]: ...
    @overload
    def map(self, op: str, iterable: Iterable[numpy.ndarray[_ShapeT, _DTypeT]]
            ) -> list[numpy.ndarray[_ShapeT, _DTypeT]]: ...
    @overload
    def map(self, op: str, iterable: Iterable[Buffer]) -> list[SharedArray]: ...
    @overload
    def map(self, op: str, iterable: Iterable[_Input[Any]]) -> list[Any]: ...

    # -- memory ---------------------------------------------------------------------------

    def empty(self, n: SupportsIndex, dtype: _DTypeLike = "float64") -> SharedArray: ...
    def zeros(self, n: SupportsIndex, dtype: _DTypeLike = "float64") -> SharedArray: ...
    # dtype=None: int64 for a sequence of ints, float64 if it holds a float; a buffer's own.
    def array(self, obj: Iterable[float] | Buffer | numpy.ndarray[Any, Any],
              dtype: _DTypeLike | None = None) -> SharedArray: ...

    # -- life cycle -----------------------------------------------------------------------

    def stats(self) -> _PoolStats: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


def default_pool() -> Pool: ...
def worker_path() -> str: ...
def cpu_count() -> int: ...

@overload
def double(data: _Input[_FloatT], *, out: _OutT, timeout: float | None = None) -> _OutT: ...
@overload
def double(data: _Seq[_IntT], *, out: None = None,
           timeout: float | None = None) -> list[int]: ...
@overload
def double(data: _Seq[_FloatT], *, out: None = None,
           timeout: float | None = None) -> list[float]: ...
@overload
def double(data: SharedArray, *, out: None = None,
           timeout: float | None = None) -> SharedArray: ...
@overload
def double(data: _PyArray[_ElemT], *, out: None = None,
           timeout: float | None = None) -> _PyArray[_ElemT]: ...
@overload
def double(data: numpy.ndarray[_ShapeT, _DTypeT], *, out: None = None,
           timeout: float | None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
@overload
def double(data: Buffer, *, out: None = None,
           timeout: float | None = None) -> SharedArray: ...

@overload
def square(data: _Input[_FloatT], *, out: _OutT, timeout: float | None = None) -> _OutT: ...
@overload
def square(data: _Seq[_IntT], *, out: None = None,
           timeout: float | None = None) -> list[int]: ...
@overload
def square(data: _Seq[_FloatT], *, out: None = None,
           timeout: float | None = None) -> list[float]: ...
@overload
def square(data: SharedArray, *, out: None = None,
           timeout: float | None = None) -> SharedArray: ...
@overload
def square(data: _PyArray[_ElemT], *, out: None = None,
           timeout: float | None = None) -> _PyArray[_ElemT]: ...
@overload
def square(data: numpy.ndarray[_ShapeT, _DTypeT], *, out: None = None,
           timeout: float | None = None) -> numpy.ndarray[_ShapeT, _DTypeT]: ...
@overload
def square(data: Buffer, *, out: None = None,
           timeout: float | None = None) -> SharedArray: ...

def empty(n: SupportsIndex, dtype: _DTypeLike = "float64", *,
          pool: Pool | None = None) -> SharedArray: ...
def zeros(n: SupportsIndex, dtype: _DTypeLike = "float64", *,
          pool: Pool | None = None) -> SharedArray: ...
def array(obj: Iterable[float] | Buffer | numpy.ndarray[Any, Any],
          dtype: _DTypeLike | None = None, *, pool: Pool | None = None) -> SharedArray: ...
