"""Many requests in flight without a thread per request.

Each pool has one Dispatcher. Requests are started in C (Client.start: submitted at once if
the session has a free slot, queued here if not) and the worker signals the session's
notify socket when one finishes. Whoever sees the socket readable, the pool's single
completion thread (waiting in select() with the GIL released) or an asyncio loop that
registered it with add_reader(), calls service(): it polls the requests in flight, submits
queued ones as slots free up, and hands results over. The thread also notices a dead worker
(there is no completion to signal then) within its 100 ms tick.
"""

from __future__ import annotations

import collections
import os
import select
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

TICK_S = 0.1

Deliver = Callable[[Any, BaseException | None], None]


class Dispatcher:
    """Settles the requests started on one session (internal: Pool.submit/arun make one).

    Raises, when created, the session's error if it is closed (PoolClosedError) or its
    worker died (WorkerDiedError); no thread is started then.

        dispatcher = Dispatcher(client)             # client: a _shmaccel.Client
        dispatcher.add(client.start_list("square", [1, 2]), deliver)
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._fd: int = client.notify_fd()
        self._lock = threading.Lock()
        self._queued: collections.deque[tuple[Any, Deliver]] = collections.deque()
        self._in_flight: dict[int, tuple[Any, Deliver]] = {}
        self._loops: weakref.WeakSet[Any] = weakref.WeakSet()  # asyncio loops
        self._stopping = False
        # The worker holds the other end: end of file means it is gone (or dropped the
        # session). From then on the socket is readable for ever, so nobody may wait on it.
        self._hung_up = False
        self._wake_r, self._wake_w = os.pipe()  # close() wakes the completion thread here
        self._wake_fds: tuple[int, ...] = (self._wake_r, self._wake_w)
        self._thread_closes_wake = False  # close() ran on the completion thread itself
        self._thread = threading.Thread(target=self._run, name="shmaccel-completion",
                                        daemon=True)
        self._thread.start()

    def add(self, pending: Any, deliver: Deliver) -> None:
        """Track a started request; deliver(pending, error) is called once when it ends.

        Raises nothing: a request that already failed is delivered with its error.
        Example: dispatcher.add(client.start("double", src, dst), deliver)
        """
        with self._lock:
            if pending.submitted:
                self._in_flight[id(pending)] = (pending, deliver)
            else:
                self._queued.append((pending, deliver))
        try:
            settle_now = not pending.submitted or pending.poll()
        except BaseException:
            # Already failed (the worker died, the pool was closed): the error reaches deliver
            # through service() like any other, once; raising it here as well would settle
            # the caller's future a second time when service() polls the request again.
            settle_now = True
        if settle_now:
            self.service()  # queued, finished or failed already: settle now

    def attach_loop(self, loop: Any) -> None:
        """Let `loop` service completions itself, from the notify socket (once per loop).

        Must be called from the loop's thread; raises nothing. Example:
        dispatcher.attach_loop(asyncio.get_running_loop())
        """
        if loop not in self._loops and not self._hung_up:
            loop.add_reader(self._fd, self.service)
            self._loops.add(loop)

    def _drain(self) -> None:
        """Takes the bytes the worker sent (one per completion); notices its hang-up."""
        if self._hung_up:
            return
        try:
            if os.read(self._fd, 4096):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._hung_up = True
        for loop in list(self._loops):
            try:
                loop.call_soon_threadsafe(loop.remove_reader, self._fd)
            except RuntimeError:  # a closed loop has no readers left
                pass
        _ = self._client.dead  # polls the session socket: a dead worker fails the waits

    def service(self) -> None:
        """Settle every finished request and submit queued ones as slots free up.

        Called from the completion thread or an attached event loop when the notify socket
        is readable; any thread may call it. A request's own error goes to its deliver
        callback, not to the caller. Example: loop.add_reader(fd, dispatcher.service)
        """
        self._drain()
        finished: list[tuple[Deliver, Any, BaseException | None]] = []
        with self._lock:
            for key, (pending, deliver) in list(self._in_flight.items()):
                try:
                    if not pending.poll():
                        continue
                    finished.append((deliver, pending, None))
                except BaseException as e:  # the request's own error, for its caller
                    finished.append((deliver, None, e))
                del self._in_flight[key]
            while self._queued:
                pending, deliver = self._queued[0]
                try:
                    pending.poll()  # submits if a slot is free
                except BaseException as e:
                    self._queued.popleft()
                    finished.append((deliver, None, e))
                    continue
                if not pending.submitted:
                    break  # still no free slot: later completions bring us back
                self._queued.popleft()
                self._in_flight[id(pending)] = (pending, deliver)
        for deliver, pending, error in finished:
            try:
                deliver(pending, error)
            except Exception:  # one caller's failure must not stop the others' completions
                print("shmaccel: a completion could not be delivered:", file=sys.stderr)
                traceback.print_exc()

    def _run(self) -> None:
        while not self._stopping:
            watched = [self._wake_r] if self._hung_up else [self._wake_r, self._fd]
            readable = self._fd in select.select(watched, [], [], TICK_S)[0]
            if self._stopping:
                break
            if not readable and (self._in_flight or self._queued):
                _ = self._client.dead  # polls the session socket: a dead worker fails the waits
            if readable or self._in_flight or self._queued:
                self.service()
        if self._thread_closes_wake:
            self._close_wake()

    def close(self) -> None:
        """Stop the completion thread; requests still tracked fail with the pool's error.

        Called by Pool.close() after the session was shut down; raises nothing. Example:
        client.shutdown(); dispatcher.close()
        """
        self._stopping = True
        for loop in list(self._loops):
            try:
                loop.remove_reader(self._fd)
            except Exception:  # a closed loop has no readers left
                pass
        on_thread = self._thread is threading.current_thread()
        if self._wake_fds and not on_thread:
            os.write(self._wake_w, b"x")
            self._thread.join(5)
        self.service()
        if on_thread:
            self._thread_closes_wake = True  # it leaves its loop when this returns
        elif not self._thread.is_alive():
            self._close_wake()

    def _close_wake(self) -> None:
        fds, self._wake_fds = self._wake_fds, ()
        for fd in fds:
            os.close(fd)
