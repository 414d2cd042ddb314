"""Pool: a session with a shmaccel worker pool, private (started here) or named (shared)."""

from __future__ import annotations

import array
import asyncio
import os
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any, Callable

from . import _shmaccel
from ._async import Dispatcher
from ._array import TYPECODES, SharedArray, dtype_name
from ._errors import PoolNotFoundError
from ._worker import worker_path

OPS: tuple[str, ...] = _shmaccel.OPS

_live_pools: "weakref.WeakSet[Pool]" = weakref.WeakSet()


def _deadline(timeout: Any) -> float | None:
    """time.monotonic() at which `timeout` seconds from now end; None for None."""
    if timeout is None:
        return None
    if not (hasattr(type(timeout), "__float__") or hasattr(type(timeout), "__index__")):
        raise TypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
    secs = float(timeout)
    if not secs >= 0:
        raise ValueError("timeout must be None or a number >= 0")
    return time.monotonic() + secs


class Pool:
    """A worker pool session.

    Pool() starts a private worker process (with `threads` pool threads, default one per
    CPU) that exits when the pool is closed or this process ends, however it ends.
    Pool("name") attaches to a pool started by `shmaccel-pool start name` and raises
    PoolNotFoundError when none runs.
    """

    def __init__(self, name: str | None = None, *, threads: int | None = None) -> None:
        self.name = name
        self._completions: Dispatcher | None = None
        self._lock = threading.Lock()
        if name is None:
            if threads is not None and (not isinstance(threads, int) or threads < 1):
                raise ValueError("threads must be a positive int")
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
        """Return data * 2 element-wise (see shmaccel.double)."""
        if out is not None and type(data) is SharedArray and type(out) is SharedArray:
            self._client.run("double", data, out, timeout)
            return out
        return self.run("double", data, out=out, timeout=timeout)

    def square(self, data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
        """Return data * data element-wise (see shmaccel.square)."""
        if out is not None and type(data) is SharedArray and type(out) is SharedArray:
            self._client.run("square", data, out, timeout)
            return out
        return self.run("square", data, out=out, timeout=timeout)

    def run(self, op: str, data: Any, *, out: Any = None, timeout: float | None = None) -> Any:
        """Apply the kernel named `op` to `data`; the result type follows the input's."""
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
              timeout: float | None = None) -> tuple[str, Any, Any, Callable]:
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
            view = memoryview(view.tobytes()).cast("B").cast(view.format, view.shape)
        if out is None:
            out = client.alloc(SharedArray, view.nbytes // view.itemsize, _shmaccel.dtype_of(view),
                               False, timeout)
        return "buffer", view, out, lambda _: out

    def _start(self, op: str, data: Any, out: Any, settle: Callable) -> Any:
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

    def submit(self, op: str, data: Any, *, out: Any = None) -> Future:
        """Start `op` on `data` and return a concurrent.futures.Future of the result. No
        thread per request: the pool's one completion thread settles every future."""
        future: Future = Future()
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
        """await op(data): completion reaches the event loop through the pool's notify socket."""
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
            else:
                loop.call_soon_threadsafe(set_now, value, error)

        pending = self._start(op, data, out, settle)
        try:
            return await future
        except asyncio.CancelledError:
            pending.cancel()
            raise

    async def asquare(self, data: Any, *, out: Any = None) -> Any:
        """await data * data (see arun)."""
        return await self.arun("square", data, out=out)

    async def adouble(self, data: Any, *, out: Any = None) -> Any:
        """await data * 2 (see arun)."""
        return await self.arun("double", data, out=out)

    def map(self, op: str, iterable: Any) -> list:
        """Apply `op` to each array of `iterable`; results in order."""
        futures = [self.submit(op, data) for data in iterable]
        return [f.result() for f in futures]

    # -- memory -----------------------------------------------------------------------------

    def empty(self, n: int, dtype: Any = "float64") -> SharedArray:
        """An uninitialised SharedArray of n elements in this pool's arena."""
        return self._client.alloc(SharedArray, n.__index__(), dtype_name(dtype))

    def zeros(self, n: int, dtype: Any = "float64") -> SharedArray:
        """A SharedArray of n zeros in this pool's arena."""
        return self._client.alloc(SharedArray, n.__index__(), dtype_name(dtype), True)

    def array(self, obj: Any, dtype: Any = None) -> SharedArray:
        """A SharedArray holding a copy of `obj` (an iterable of numbers or a buffer)."""
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
            return self.array(view.tolist() if view.ndim <= 1 else view.cast("B").cast(
                view.format).tolist(), name)
        result = self.empty(count, name)
        if count:
            memoryview(result).cast("B")[:] = view.cast("B") if view.c_contiguous else view.tobytes()
        return result

    # -- life cycle -------------------------------------------------------------------------

    def stats(self) -> dict:
        """Figures from the worker: requests, elements, errors, threads, clients, uptime_s,
        busy_pct, worker_pid; this session's own client_requests, client_elements,
        client_errors, client_in_flight; and `sessions`: per-client figures (pid, requests,
        elements, errors, in_flight) of every session attached to the pool."""
        stats = self._client.info()
        stats["sessions"] = self._client.sessions()
        return stats

    @property
    def closed(self) -> bool:
        """True once the pool is closed or its worker is gone."""
        return self._client.dead

    def close(self) -> None:
        """End the session; a private worker exits. Calls made afterwards raise
        PoolClosedError. Arrays already allocated stay readable."""
        self._client.shutdown()
        with self._lock:
            completions, self._completions = self._completions, None
        if completions is not None:
            completions.close()  # requests still in flight fail with PoolClosedError

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = f"name={self.name!r}" if self.name else "private"
        state = "closed" if self.closed else "open"
        return f"<shmaccel.Pool {kind} worker_pid={self.worker_pid} threads={self.threads} {state}>"

    def _forget_after_fork(self) -> None:
        self._client._forget_after_fork()
        self._completions = None  # its thread does not exist in the child
        self._lock = threading.Lock()


def _store_list(values: list, out: Any) -> Any:
    view = memoryview(out)
    if view.readonly:
        raise TypeError(f"out must be writable; {type(out).__name__} is read-only")
    name = _shmaccel.dtype_of(view)
    if view.nbytes // view.itemsize != len(values):
        raise ValueError(f"out has {view.nbytes // view.itemsize} elements, the input {len(values)}")
    want = "float64" if any(isinstance(v, float) for v in values) else "int64"
    if name != want:
        raise ValueError(f"out must be {want} for this list, not {name}")
    view.cast("B").cast(TYPECODES[want])[:] = array.array(TYPECODES[want], values)
    return out


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
