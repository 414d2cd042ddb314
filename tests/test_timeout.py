"""timeout=: a call not done in time raises the builtin TimeoutError promptly, and the pool goes
on giving correct results afterwards (a late completion never lands in reused memory)."""

import array
import os
import signal
import threading
import time

import pytest

import shmaccel

from conftest import stopped, wait_until

# How long the first thread to finish a chunk of a big call stalls there (SHMACCEL_FAULT):
# far longer than this process could be kept off its CPU.
STALL_MS = 2000


@pytest.mark.parametrize("timeout", [0, 0.05, 0.3])
def test_call_on_stopped_worker_times_out_then_pool_recovers(make_pool, timeout):
    pool = make_pool(threads=1)
    values = array.array("d", [v / 7 for v in range(1000)])
    data = shmaccel.array(values, pool=pool)
    with stopped(pool.worker_pid):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            pool.square(data, timeout=timeout)
        elapsed = time.monotonic() - started
    assert elapsed >= timeout * 0.9, (
        f"gave up after {elapsed:.3f} s, before the timeout"
    )
    assert elapsed < timeout + 1.0, (
        f"took {elapsed:.3f} s to time out after {timeout} s"
    )
    for _ in range(20):
        assert pool.square(data).tolist() == [v * v for v in values]
        assert pool.double([1, 2]) == [2, 4]


def test_list_call_times_out_on_stopped_default_worker():
    shmaccel.double([0])
    with stopped(shmaccel.default_pool().worker_pid):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            shmaccel.double([1, 2, 3], timeout=0.1)
        assert time.monotonic() - started < 1.1
    assert shmaccel.double([1, 2, 3], timeout=30) == [2, 4, 6]


def test_in_place_call_with_out_times_out_and_later_calls_are_right(make_pool):
    pool = make_pool(threads=1)
    target = shmaccel.array(array.array("i", range(100)), pool=pool)
    with stopped(pool.worker_pid), pytest.raises(TimeoutError):
        pool.double(target, out=target, timeout=0.05)
    fresh = shmaccel.array(array.array("i", range(100)), pool=pool)
    assert pool.square(fresh, out=fresh) is fresh
    assert fresh.tolist() == [v * v for v in range(100)]


def test_huge_call_times_out_long_before_it_could_finish(make_pool, monkeypatch):
    # The call could finish before its 0.1 ms are up if this thread lost its CPU to the
    # worker's threads for the tens of milliseconds they need (a loaded 2-CPU machine does
    # that). So the first thread to finish a chunk of it stalls there, holding it open.
    monkeypatch.setenv("SHMACCEL_FAULT", f"worker-chunk-done:sleep={STALL_MS}")
    pool = make_pool()
    monkeypatch.delenv("SHMACCEL_FAULT")
    big = shmaccel.zeros(20_000_000, "float64", pool=pool)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.square(big, timeout=0.0001)
    assert time.monotonic() - started < 2.0  # a hang check, not a speed check
    assert pool.double([1, 2]) == [2, 4]
    assert pool.square(shmaccel.array([1.5, -2.0], pool=pool)).tolist() == [2.25, 4.0]


def test_late_completion_of_timed_out_call_does_not_corrupt_later_results(
        make_pool, monkeypatch):
    # As above: the big call stalls after its first chunk, so it certainly times out, and
    # completes late, while the calls below reuse the session.
    monkeypatch.setenv("SHMACCEL_FAULT", f"worker-chunk-done:sleep={STALL_MS}")
    pool = make_pool()
    monkeypatch.delenv("SHMACCEL_FAULT")
    big = shmaccel.array(array.array("d", [3.0]) * 20_000_000, pool=pool)
    with pytest.raises(TimeoutError):
        pool.square(
            big, timeout=0.0001
        )  # its output is dropped while the worker still runs
    results = []
    for k in range(200):
        data = shmaccel.array(array.array("d", [float(k)]) * 1000, pool=pool)
        results.append((k, pool.double(data)))
    # Let the abandoned request finish, then look again: nothing may have changed.
    squared = pool.square(big, timeout=60)
    assert (squared[0], squared[len(squared) // 2], squared[-1]) == (9.0, 9.0, 9.0)
    # Its slot is freed once the worker has completed it.
    assert wait_until(lambda: pool.stats()["client_in_flight"] == 0, 30)
    for k, result in results:
        assert result.tolist() == [2.0 * k] * 1000, f"result {k} was overwritten"
    assert (big[0], big[-1]) == (3.0, 3.0), "input of the timed-out call was modified"


def test_generous_timeout_returns_the_result(pool):
    data = array.array("h", [-3, 4, 300])
    assert pool.square(data, timeout=60).tolist() == [9, 16, 90000 - 65536]
    assert shmaccel.double(data, timeout=60).tolist() == [-6, 8, 600]
    assert pool.double([1.5], timeout=None) == [3.0]


# Inputs whose copy (and result) need more memory than the session's first arena holds, so
# that the call must first get a new arena accepted by the worker: one round trip on the
# session socket, which a stopped worker never answers.
def _needs_a_new_arena(kind, n):
    if kind == "numpy":
        np = pytest.importorskip("numpy")
        return np.arange(n, dtype=np.float64)
    if kind == "array":
        return array.array("d", bytes(8 * n))
    return list(range(n))


@pytest.mark.parametrize("kind", ["numpy", "array", "list"])
def test_timeout_also_bounds_getting_memory_from_a_stopped_worker(make_pool, kind):
    pool = make_pool(threads=1)
    timeout = 0.3
    with stopped(pool.worker_pid):
        for size in (3_000_000, 6_000_000, 12_000_000):  # each needs a larger arena
            data = _needs_a_new_arena(kind, size)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                pool.double(data, timeout=timeout)
            elapsed = time.monotonic() - started
            # Filling a fresh arena's pages takes a little; the worker's 10 s reply limit
            # (what the call waited for before the fix) is far off.
            assert elapsed < timeout + 1.5, f"{kind} x {size}: timed out after {elapsed:.2f} s"
    # The replies the worker owes arrive now and are skipped; the session is whole.
    n = 3_000_000
    result = pool.double(_needs_a_new_arena(kind, n), timeout=60)
    assert len(result) == n and result[1] == (2 if kind != "array" else 0)
    assert result[n - 1] == (2 * (n - 1) if kind != "array" else 0)


def test_ctrl_c_interrupts_waiting_for_a_stopped_worker_to_accept_memory(make_pool):
    pool = make_pool(threads=1)
    data = array.array("d", bytes(8 * 4_000_000))
    with stopped(pool.worker_pid):
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        started = time.monotonic()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pool.square(data)  # no timeout: only the signal ends the wait
        finally:
            timer.cancel()
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"KeyboardInterrupt came {elapsed:.2f} s after the call began"
    assert pool.square(array.array("d", [3.0]) * 4_000_000, timeout=60)[-1] == 9.0
