"""The GIL is released while a call waits for the worker: another Python thread keeps running.

A call is one C call, so an extension that kept the GIL would let a counting thread run for
about one switch interval per call. Each test measures how fast the counting thread counts
alone, then requires it to keep a good share of that speed during one long (blocked) call or a
run of back-to-back computing calls.
"""

import array
import contextlib
import subprocess
import sys
import threading
import time

import pytest

import shmaccel

from conftest import busy_array, stopped

# Share of the counter's solo speed it must keep during a call. A GIL-holding call would give it
# about one switch interval per call: 0.2 ms out of a call lasting 10 ms or more.
MIN_SHARE = 0.1
MIN_INCREMENTS = 10_000
SWITCH_INTERVAL = 0.0002


class SpinCounter(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.count = 0
        self.running = True

    def run(self):
        while self.running:
            self.count += 1


@contextlib.contextmanager
def spinning_counter():
    """A running SpinCounter and its solo rate (increments per second) measured first."""
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    counter = SpinCounter()
    counter.start()
    try:
        time.sleep(0.05)
        start_count, started = counter.count, time.perf_counter()
        time.sleep(0.25)
        rate = (counter.count - start_count) / (time.perf_counter() - started)
        yield counter, rate
    finally:
        counter.running = False
        counter.join(5)
        sys.setswitchinterval(previous_interval)


def assert_counter_progressed(progress, rate, seconds):
    needed = max(MIN_INCREMENTS, MIN_SHARE * rate * seconds)
    assert progress >= needed, (
        f"another thread counted only {progress} times during a {seconds:.3f} s call "
        f"(alone it counts {rate:.0f}/s; needed {needed:.0f}): the call holds the GIL"
    )


@pytest.mark.parametrize("n", [100_000, 1_000])
def test_gil_released_while_waiting_for_a_stopped_worker(make_pool, n):
    # A small call (64 KiB or less) waits its first microseconds with the GIL held (it is
    # over sooner than the GIL changes hands): one that is not over by then lets go of it.
    pool = make_pool(threads=1)
    data = shmaccel.array(array.array("d", [float(v) for v in range(n)]), pool=pool)
    pid = pool.worker_pid
    with spinning_counter() as (counter, rate), stopped(pid):
        # A separate process resumes the worker: no Python thread of ours needs the GIL for it.
        resumer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import os, signal, time; time.sleep(0.6); os.kill({pid}, signal.SIGCONT)",
            ]
        )
        try:
            before, started = counter.count, time.perf_counter()
            result = pool.square(data)
            seconds = time.perf_counter() - started
            progress = counter.count - before
        finally:
            if resumer.poll() is None:
                resumer.kill()
            resumer.wait(10)
    assert seconds >= 0.3, (
        f"call returned after {seconds:.3f} s although the worker was stopped"
    )
    assert result.tolist() == [v * v for v in data.tolist()]
    assert_counter_progressed(progress, rate, seconds)


def test_gil_released_during_back_to_back_computations(make_pool):
    pool = make_pool(threads=1)
    data, call_seconds = busy_array(pool)
    if call_seconds < 0.01:
        pytest.skip(f"one call lasts only {call_seconds:.4f} s, too short to tell")
    with spinning_counter() as (counter, rate):
        before, started = counter.count, time.perf_counter()
        calls = 0
        while time.perf_counter() - started < 0.6:
            pool.square(data, out=data)
            calls += 1
        seconds = time.perf_counter() - started
        progress = counter.count - before
    # Holding the GIL would leave the counter about one switch interval per call; that must
    # stay well below the share required, or the test could not tell the two apart.
    if calls * SWITCH_INTERVAL >= MIN_SHARE * seconds / 3:
        pytest.skip(f"{calls} calls in {seconds:.2f} s are too short to tell")
    assert_counter_progressed(progress, rate, seconds)


def test_gil_released_by_module_level_call():
    default = shmaccel.default_pool()
    shmaccel.double([1])  # make sure the default worker is running
    data = shmaccel.array(array.array("d", [2.0] * 10_000))
    pid = default.worker_pid
    with spinning_counter() as (counter, rate), stopped(pid):
        resumer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import os, signal, time; time.sleep(0.5); os.kill({pid}, signal.SIGCONT)",
            ]
        )
        try:
            before, started = counter.count, time.perf_counter()
            result = shmaccel.double(data)
            seconds = time.perf_counter() - started
            progress = counter.count - before
        finally:
            if resumer.poll() is None:
                resumer.kill()
            resumer.wait(10)
    assert seconds >= 0.25
    assert result.tolist() == [4.0] * 10_000
    assert_counter_progressed(progress, rate, seconds)
