"""The GIL is released while a call waits for the worker: another Python thread keeps running.

A call is one C call, so an extension that kept the GIL through it would let no other Python
thread run while its request is in flight. Another thread therefore watches the session while
calls run: it looks at pool.stats() (Python code: it needs the GIL), sleeps (which hands the
GIL over), and looks again. Seeing one request still in flight at two looks in a row (in
flight both times, none completed in between) shows that the calling thread waited without
the GIL: one that kept it would have taken it back during the sleep and held it until its
request was done. Nothing is timed, so a loaded machine only makes the tests take longer
(it could at worst let a GIL-holding call pass unnoticed, never fail a sound one).
"""

import array
import os
import signal
import threading
import time

import pytest

import shmaccel

from conftest import busy_array, stopped

LOOK_INTERVAL = 0.01  # seconds the watcher sleeps, without the GIL, between two looks
WATCH_LIMIT = 30.0  # seconds: a watcher that has seen nothing by then never will


class InFlightWatcher(threading.Thread):
    """Looks at pool.stats() every LOOK_INTERVAL until it sees the same request in flight at
    two looks in a row (then sets `seen`, and SIGCONTs `resume` if it is a pid), stop() is
    called or WATCH_LIMIT passes."""

    def __init__(self, pool, resume=None):
        super().__init__(daemon=True)
        self.pool = pool
        self.resume = resume
        self.looks = 0
        self.seen = threading.Event()
        self.stopping = threading.Event()
        self.start()

    def run(self):
        deadline = time.monotonic() + WATCH_LIMIT
        previous = None  # completed requests at the last look, if one was in flight then
        while not self.stopping.is_set() and time.monotonic() < deadline:
            stats = self.pool.stats()
            self.looks += 1
            current = stats["client_requests"] if stats["client_in_flight"] else None
            if current is not None and current == previous:
                self.seen.set()
                if self.resume is not None:
                    os.kill(self.resume, signal.SIGCONT)
                return
            previous = current
            time.sleep(LOOK_INTERVAL)

    def stop(self):
        self.stopping.set()
        self.join(WATCH_LIMIT)


def held_message(watcher, what):
    return (
        f"another thread never saw {what} stay in flight ({watcher.looks} looks): "
        "the call holds the GIL while it waits"
    )


@pytest.mark.parametrize("n", [100_000, 1_000])
def test_gil_released_while_waiting_for_a_stopped_worker(make_pool, n):
    # A small call (64 KiB or less) waits its first microseconds with the GIL held (it is
    # over sooner than the GIL changes hands): one that is not over by then lets go of it.
    pool = make_pool(threads=1)
    data = shmaccel.array(array.array("d", [float(v) for v in range(n)]), pool=pool)
    pid = pool.worker_pid
    # The worker stays stopped until the watcher, a Python thread of ours, has seen the call
    # waiting: a call holding the GIL would keep it from looking until stopped()'s watchdog
    # resumed the worker, and the call returned.
    with stopped(pid):
        watcher = InFlightWatcher(pool, resume=pid)
        try:
            result = pool.square(data)
        finally:
            watcher.stop()
    assert watcher.seen.is_set(), held_message(watcher, "the call's request")
    assert result.tolist() == [v * v for v in data.tolist()]


def test_gil_released_during_back_to_back_computations(make_pool):
    pool = make_pool(threads=1)
    data, call_seconds = busy_array(pool)
    watcher = InFlightWatcher(pool)
    calls = 0
    try:
        # Until the watcher has looked twice within one call (it looks every 10 ms; each call
        # computes for about call_seconds), or has given up.
        while not watcher.seen.is_set() and watcher.is_alive():
            pool.square(data, out=data)
            calls += 1
    finally:
        watcher.stop()
    assert watcher.seen.is_set(), held_message(
        watcher, f"any of {calls} requests computing for about {call_seconds:.3f} s each"
    )


def test_gil_released_by_module_level_call():
    default = shmaccel.default_pool()
    shmaccel.double([1])  # make sure the default worker is running
    data = shmaccel.array(array.array("d", [2.0] * 10_000))
    pid = default.worker_pid
    with stopped(pid):
        watcher = InFlightWatcher(default, resume=pid)
        try:
            result = shmaccel.double(data)
        finally:
            watcher.stop()
    assert watcher.seen.is_set(), held_message(watcher, "the call's request")
    assert result.tolist() == [4.0] * 10_000
