"""timeout=: a call not done in time raises the builtin TimeoutError promptly, and the pool goes
on giving correct results afterwards (a late completion never lands in reused memory)."""

import array
import time

import pytest
import shmaccel

from conftest import stopped


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


def test_huge_call_times_out_long_before_it_could_finish(make_pool):
    pool = make_pool()
    big = shmaccel.zeros(20_000_000, "float64", pool=pool)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.square(big, timeout=0.0001)
    assert time.monotonic() - started < 2.0  # a hang check, not a speed check
    assert pool.double([1, 2]) == [2, 4]
    assert pool.square(shmaccel.array([1.5, -2.0], pool=pool)).tolist() == [2.25, 4.0]


def test_late_completion_of_timed_out_call_does_not_corrupt_later_results(make_pool):
    pool = make_pool()
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
    time.sleep(0.2)
    for k, result in results:
        assert result.tolist() == [2.0 * k] * 1000, f"result {k} was overwritten"
    assert (big[0], big[-1]) == (3.0, 3.0), "input of the timed-out call was modified"


def test_generous_timeout_returns_the_result(pool):
    data = array.array("h", [-3, 4, 300])
    assert pool.square(data, timeout=60).tolist() == [9, 16, 90000 - 65536]
    assert shmaccel.double(data, timeout=60).tolist() == [-6, 8, 600]
    assert pool.double([1.5], timeout=None) == [3.0]
