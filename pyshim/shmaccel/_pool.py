"""Pool: a session with a shmaccel worker pool, private (started here) or named (shared)."""

from __future__ import annotations

import array
import asyncio
import operator
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from . import _shmaccel
from ._array import TYPECODES, SharedArray, dtype_name
from ._async import Deliver, Dispatcher
from ._errors import PoolNotFoundError
from ._worker import worker_path

OPS: tuple[str, ...] = _shmaccel.OPS

_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _deadline(timeout: Any) -> float | None:
    """time.monotonic() at which `timeout` seconds from now end; None for None."""
    if timeout is None:
        return None
    if not (hasattr(type(timeout), "__float__") or hasattr(type(timeout), "__index__")):
        raise TypeError(
            f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
    secs = float(timeout)
    if not secs >= 0:
        raise ValueError("timeout must be None or a number >= 0")
    return time.monotonic() + secs


def check_threads(threads: object) -> None:
    """Raise TypeError unless `threads` is an int (not a bool), ValueError unless it is
    1 .. MAX_THREADS (1024), before any worker is started.

    >>> check_threads(0)
    Traceback (most recent call last):
    ValueError: threads must be 1 to 1024, got 0
    """
    if not isinstance(threads, int) or isinstance(threads, bool):
        raise TypeError(f"threads must be an int, not {type(threads).__name__}")
    if not 1 <= threads <= _shmaccel.MAX_THREADS:
        raise ValueError(f"threads must be 1 to {_shmaccel.MAX_THREADS}, got {threads}")


class Pool:
    """A session with a shmaccel worker pool: the kernels, memory in its arena, its figures.

    Pool() starts a private worker process with `threads` pool threads (default: one per
    CPU this process may run on, shmaccel.cpu_count()) that exits when the pool is closed or
    this process ends, however it ends (even by kill -9). Pool("name") attaches to the named
    pool started by `shmaccel-pool start name` (threads= is then ignored: the pool has its own).

    Attributes: name (None for a private pool), threads, worker_pid, closed. A Pool is a
    context manager that closes it on exit, and may be used from any number of threads. In
    a child process after fork() an inherited Pool is closed (PoolClosedError): open a new one.

    Raises TypeError (threads not an int, name not a str), ValueError (threads not 1 to
    1024, invalid pool name: 1-64 characters of A-Z a-z 0-9 . _ - not starting with '.'),
    PoolNotFoundError (no pool of that name is running), PermissionError (the runtime
    directory or socket belongs to another user or is open to others), shmaccel.Error (no
    worker program found; a named pool with no free seat, see --max-clients),
    WorkerDiedError (a private worker failed to start).

    >>> with shmaccel.Pool(threads=2) as pool:
    ...     pool.square([1, 2, 3])
    [1, 4, 9]
    >>> shmaccel.Pool("mypool")          # after: shmaccel-pool start mypool
    <shmaccel.Pool name='mypool' worker_pid=18317 threads=4 open>
    """

    def __init__(self, name: str | None = None, *, threads: int | None = None) -> None:
        self.name = name
        self._completions: Dispatcher | None = None
        self._lock = threading.Lock()
        if name is None:
            if threads is not None:
                check_threads(threads)
            self._client = _shmaccel.Client(worker=worker_path(), threads=threads or 0)
        else:
            try:
                path = _shmaccel.pool_socket_path(name)
            except PermissionError as refused:
                raise PermissionError(
                    refused.errno,
                    f"refused to look for shmaccel pool {name!r}: its runtime directory "
                    f"belongs to another user or is open to others ({refused.strerror}); "
                    f"check its owner and mode, or choose another XDG_RUNTIME_DIR",
                ) from None
            try:
                self._client = _shmaccel.Client(socket=path)
            except PoolNotFoundError:
                raise PoolNotFoundError(
                    f"no shmaccel pool named {name!r} is running "
                    f"(start one with: shmaccel-pool start {name})"
                ) from None
            except PermissionError as refused:
                # The socket is not ours: another user's listener (refused by SO_PEERCRED) or
                # a directory we may not enter. Never used, never touched.
                raise PermissionError(
                    refused.errno,
                    f"refused to attach to shmaccel pool {name!r}: {path} belongs to another "
                    f"user or is not accessible ({refused.strerror}); check its owner, or "
                    f"choose another XDG_RUNTIME_DIR",
                    path,
                ) from None
        info = self._client.info()
        self.worker_pid: int = info["worker_pid"]
        self.threads: int = info["threads"]
        _live_pools.add(self)

    # -- the kernels ------------------------------------------------------------------------

    # double() and square() repeat run()'s hot path: a Python call less per small call.

    def double(self, data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
        """Return data * 2 element-wise, computed by this pool.

        Same inputs, results, out=, timeout= and errors as shmaccel.double(), which calls
        this method on the default pool.

        >>> pool.double([1, 2, 3])
        [2, 4, 6]
        """
        if out is not None and type(data) is SharedArray and type(out) is SharedArray:
            self._client.run("double", data, out, timeout)
            return out
        return self.run("double", data, out=out, timeout=timeout)

    def square(self, data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
        """Return data * data element-wise, computed by this pool.

        Same inputs, results, out=, timeout= and errors as shmaccel.square().

        >>> a = pool.array([1.0, 2.0, 3.0])
        >>> pool.square(a, out=a).tolist()  # in place, zero copy
        [1.0, 4.0, 9.0]
        """
        if out is not None and type(data) is SharedArray and type(out) is SharedArray:
            self._client.run("square", data, out, timeout)
            return out
        return self.run("square", data, out=out, timeout=timeout)

    def run(self, op: str, data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
        """Apply the kernel named `op` (one of shmaccel.OPS) to `data` and return the result.

        run("square", x) is pool.square(x): same inputs, results, out=, timeout= and errors,
        plus ValueError for an unknown op and TypeError for an op that is not a str.

        >>> pool.run("double", [1, 2])
        [2, 4]
        >>> [pool.run(op, [3]) for op in shmaccel.OPS]
        [[6], [9]]
        """
        if out is not None and type(data) is SharedArray and type(out) is SharedArray:
            # The hot path of small calls: both in our arena (checked in C), nothing to plan.
            self._client.run(op, data, out, timeout)
            return out
        deadline = _deadline(timeout)
        kind, src, dst, make = self._plan(op, data, out, timeout)
        if deadline is not None:
            # What is left of it once the result's memory is there (the C side's clock too).
            timeout = max(0.0, deadline - time.monotonic())
        if kind == "list":
            return make(self._client.run_list(op, src, timeout))
        self._client.run(op, src, dst, timeout)
        return make(None)

    def _plan(self, op: str, data: Any, out: Any,
              timeout: float | None = None) -> tuple[str, Any, Any, Callable[[Any], Any]]:
        """How to compute op(data): ("list", seq, None, make) or ("buffer", src, dst, make),
        where make(list_or_None) builds the result once the worker is done. Memory for the
        result is allocated within `timeout` (a stopped worker may have to accept a new arena)."""
        client = self._client
        if isinstance(data, (list, tuple)):
            if out is None:
                return "list", data, None, lambda values: values
            return "list", data, None, lambda values: _store_list(values, out)
        if isinstance(data, SharedArray) and data._client is client:
            if out is None:
                out = client.alloc(SharedArray, len(data), data.dtype, False, timeout)
            return "buffer", data, out, lambda _: out
        if isinstance(data, array.array):
            if out is None:
                out = array.array(data.typecode, bytes(len(data) * data.itemsize))
            return "buffer", data, out, lambda _: out
        np = sys.modules.get("numpy")
        if np is not None and isinstance(data, np.ndarray):
            if not data.dtype.isnative or data.dtype.name not in TYPECODES:
                raise TypeError(f"unsupported dtype {data.dtype.str!r} ({data.dtype.name})")
            src = np.ascontiguousarray(data)
            if out is not None:
                return "buffer", src, out, lambda _: out
            # The result lives in the arena: the worker writes it there and numpy views it,
            # so it is never copied out.
            result = client.alloc(SharedArray, src.size, src.dtype.name, False, timeout)
            shape = data.shape
            return "buffer", src, result, lambda _: np.frombuffer(result, dtype=src.dtype).reshape(
                shape)
        try:
            view = memoryview(data)
        except TypeError:
            raise TypeError(
                f"shmaccel.{op}() takes a list, tuple, SharedArray, array.array, numpy array "
                f"or buffer, not {type(data).__name__}"
            ) from None
        if not view.c_contiguous:
            flat = memoryview(view.tobytes()).cast("B")
            # typeshed types cast() for literal formats only; this one is known at run time.
            view = flat.cast(view.format, view.shape)  # type: ignore[call-overload]
        if out is None:
            out = client.alloc(SharedArray, view.nbytes // view.itemsize, _shmaccel.dtype_of(view),
                               False, timeout)
        return "buffer", view, out, lambda _: out

    def _start(self, op: str, data: Any, out: Any, settle: Deliver) -> Any:
        """Starts op(data) in the background; settle(result, error) is called once."""
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}: use one of {', '.join(OPS)}")
        kind, src, dst, make = self._plan(op, data, out)
        client = self._client
        pending = client.start_list(op, src) if kind == "list" else client.start(op, src, dst)

        def deliver(finished: Any, error: BaseException | None) -> None:
            if error is not None:
                settle(None, error)
                return
            try:
                value = make(finished.result())
            except BaseException as e:
                settle(None, e)
                return
            settle(value, None)

        self._dispatcher().add(pending, deliver)
        return pending

    def _dispatcher(self) -> Dispatcher:
        with self._lock:
            if self._completions is None:
                # A closed or dead session refuses the notify socket with its own error
                # (PoolClosedError, or WorkerDiedError if its worker died): no thread starts.
                self._completions = Dispatcher(self._client)
            return self._completions

    def submit(self, op: str, data: Any, *, out: Any = None) -> Future[Any]:
        """Start `op` on `data` and return a concurrent.futures.Future of its result.

        It returns at once: the request is submitted when the session has a free slot (64 per
        process) and queued until then. No thread per request: the pool's one completion
        thread settles every future. The result is what run(op, data, out=out) returns.

        submit() itself raises nothing: every error (those of run(); PoolClosedError after
        close(); WorkerDiedError when the worker dies) is the future's exception. There is no
        timeout=: future.result(timeout) stops waiting but does not cancel the request, and
        future.cancel() returns False (the future is already running).

        >>> futures = [pool.submit("square", [i]) for i in range(3)]
        >>> [f.result() for f in futures]
        [[0], [1], [4]]
        """
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()

        def settle(value: Any, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        try:
            self._start(op, data, out, settle)
        except BaseException as e:
            future.set_exception(e)
        return future

    async def arun(self, op: str, data: Any, *, out: Any = None) -> Any:
        """Coroutine: run `op` on `data` without blocking the event loop; returns its result.

        The result and errors are those of run(op, data, out=out), raised by the await. The
        loop itself learns of the completion (it watches the pool's notify socket with
        add_reader), so no thread waits per request. There is no timeout=: use
        asyncio.wait_for(); cancelling the await cancels the request (a running one is
        abandoned: it never writes into memory reused later).

        >>> async def main(pool):
        ...     return await pool.arun("square", [1, 2, 3])
        >>> asyncio.run(main(pool))
        [1, 4, 9]
        """
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        self._dispatcher().attach_loop(loop)
        future = loop.create_future()

        def set_now(value: Any, error: BaseException | None) -> None:
            if future.done():
                return  # the await was cancelled
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        def settle(value: Any, error: BaseException | None) -> None:
            if threading.get_ident() == loop_thread:
                set_now(value, error)
                return
            try:
                loop.call_soon_threadsafe(set_now, value, error)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits this any more (a cancelled await)

        pending = self._start(op, data, out, settle)
        try:
            return await future
        except asyncio.CancelledError:
            pending.cancel()
            raise

    async def asquare(self, data: Any, *, out: Any = None) -> Any:
        """Coroutine: await data * data; arun("square", data, out=out) (results, errors).

        >>> results = await asyncio.gather(*(pool.asquare(x) for x in arrays))
        """
        return await self.arun("square", data, out=out)

    async def adouble(self, data: Any, *, out: Any = None) -> Any:
        """Coroutine: await data * 2; arun("double", data, out=out) (results, errors).

        >>> await pool.adouble([1, 2])
        [2, 4]
        """
        return await self.arun("double", data, out=out)

    def map(self, op: str, iterable: Any) -> list[Any]:
        """Apply `op` to each item of `iterable`, all in flight at once; return the results
        as a list, in order.

        Each item may be any input that run() takes. Raises the first failed item's error (in
        the iterable's order) once that item is done; the other requests still complete.

        >>> pool.map("double", [[1, 2], [3], array.array("i", [4])])
        [[2, 4], [6], array('i', [8])]
        """
        futures = [self.submit(op, data) for data in iterable]
        return [f.result() for f in futures]

    # -- memory -----------------------------------------------------------------------------

    def empty(self, n: int, dtype: Any = "float64") -> SharedArray:
        """Return an uninitialised SharedArray of n elements of dtype in this pool's arena.

        n: an int. dtype: a name from shmaccel.DTYPES, float, int or a numpy dtype. Raises
        TypeError (n not an int, unsupported dtype), ValueError (n < 0), MemoryError (no room in
        /dev/shm: memory is reserved here, never a SIGBUS later), PoolClosedError,
        WorkerDiedError.

        >>> pool.empty(3, "float32").dtype
        'float32'
        """
        return self._client.alloc(SharedArray, operator.index(n), dtype_name(dtype))

    def zeros(self, n: int, dtype: Any = "float64") -> SharedArray:
        """Return a SharedArray of n zeros of dtype in this pool's arena (see empty()).

        >>> pool.zeros(2, int).tolist()
        [0, 0]
        """
        return self._client.alloc(SharedArray, operator.index(n), dtype_name(dtype), True)

    def array(self, obj: Any, dtype: Any = None) -> SharedArray:
        """Return a SharedArray in this pool's arena holding a copy of `obj`.

        obj: an iterable of numbers or a buffer (array.array, numpy array of any shape,
        flattened, bytes). dtype None keeps a buffer's dtype and makes numbers int64, or
        float64 if any is a float; a given dtype converts. Raises TypeError (unsupported
        dtype or element), OverflowError (a value that does not fit the dtype) and the
        errors of empty().

        >>> pool.array([1, 2.5])
        SharedArray([1.0, 2.5], dtype='float64', len=2)
        """
        if not isinstance(obj, (list, tuple)):
            try:
                memoryview(obj).release()
            except TypeError:
                obj = list(obj)
        if isinstance(obj, (list, tuple)):
            if dtype is None:
                floats = any(isinstance(x, float) for x in obj)
                dtype = "float64" if floats else "int64"
            name = dtype_name(dtype)
            result = self.empty(len(obj), name)
            if obj:
                memoryview(result)[:] = memoryview(array.array(TYPECODES[name], obj))
            return result
        view = memoryview(obj)
        src_dtype = _shmaccel.dtype_of(view)
        name = src_dtype if dtype is None else dtype_name(dtype)
        count = view.nbytes // view.itemsize
        if name != src_dtype:
            if view.ndim > 1:  # (a run-time format: typeshed's cast() takes literal ones only)
                view = view.cast("B").cast(view.format)  # type: ignore[call-overload]
            return self.array(view.tolist(), name)
        result = self.empty(count, name)
        if count:
            data = view.cast("B") if view.c_contiguous else view.tobytes()
            memoryview(result).cast("B")[:] = data
        return result

    # -- life cycle -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return a dict of the pool's figures, read from shared memory (a snapshot).

        Pool-wide: worker_pid, threads, clients (attached sessions), requests (completed),
        elements, errors, uptime_s, busy_pct (kernel time / (uptime x threads), percent).
        This session: seat, client_requests, client_elements, client_errors,
        client_in_flight. sessions: a list of dicts (seat, pid, requests, elements, errors,
        in_flight), one per attached session, this one included.

        Raises PoolClosedError after close() or once a named pool was stopped (as calls do),
        WorkerDiedError once the worker is gone otherwise.

        >>> s = pool.stats()
        >>> s["threads"], s["client_requests"], len(s["sessions"])
        (2, 0, 1)
        """
        stats = self._client.info()
        stats["sessions"] = self._client.sessions()
        return stats

    @property
    def closed(self) -> bool:
        """True once the pool is closed, its worker is gone or a named pool is stopping.

        Raises nothing. A closed pool stays closed: make a new Pool (the module-level
        functions do so by themselves).

        >>> pool.close(); pool.closed
        True
        """
        return self._client.dead

    def close(self) -> None:
        """End the session: a private worker exits; a named pool goes on serving others.

        Calls made afterwards raise PoolClosedError; futures and awaits still pending fail
        with it. Arrays already allocated stay readable. Idempotent; raises nothing. Leaving
        a `with Pool() as pool:` block calls it.

        >>> pool = shmaccel.Pool()
        >>> pool.close()
        >>> pool.square([1])
        Traceback (most recent call last):
        shmaccel.PoolClosedError: the shmaccel pool is closed
        """
        self._client.shutdown()
        with self._lock:
            completions, self._completions = self._completions, None
        if completions is not None:
            completions.close()  # requests still in flight fail with PoolClosedError

    def __enter__(self) -> Pool:
        """Return the pool itself: `with shmaccel.Pool() as pool: ...`."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the pool (see close()); exceptions from the block propagate."""
        self.close()

    def __repr__(self) -> str:
        kind = f"name={self.name!r}" if self.name else "private"
        state = "closed" if self.closed else "open"
        return f"<shmaccel.Pool {kind} worker_pid={self.worker_pid} threads={self.threads} {state}>"

    def _forget_after_fork(self) -> None:
        self._client._forget_after_fork()
        self._completions = None  # its thread does not exist in the child
        self._lock = threading.Lock()


def _store_list(values: list[Any], out: Any) -> Any:
    view = memoryview(out)
    if view.readonly:
        raise TypeError(f"out must be writable; {type(out).__name__} is read-only")
    name = _shmaccel.dtype_of(view)
    if view.nbytes // view.itemsize != len(values):
        raise ValueError(
            f"out has {view.nbytes // view.itemsize} elements, the input {len(values)}")
    want = "float64" if any(isinstance(v, float) for v in values) else "int64"
    if name != want:
        raise ValueError(f"out must be {want} for this list, not {name}")
    code = TYPECODES[want]  # a str: typeshed types cast() for literal formats only
    view.cast("B").cast(code)[:] = array.array(code, values)  # type: ignore[call-overload]
    return out


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
