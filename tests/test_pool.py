"""Pool lifecycle and introspection: the private worker process, thread count, stats, close and
context manager, submit and futures, unknown names, and the default pool."""

import array
import concurrent.futures
import gc
import os
import threading
import time

import pytest

import shmaccel

from conftest import (
    WORKER_PROGRAM,
    is_worker,
    pid_exists,
    proc_cmdline,
    read_proc,
    unique_name,
    wait_until,
    worker_alive,
)

STATS_KEYS = {"requests", "elements", "errors", "threads", "clients", "uptime_s"}


def test_private_worker_is_a_live_child_running_the_worker_program(pool):
    proc = read_proc(pool.worker_pid)
    assert proc is not None, "worker_pid names no process"
    assert proc.state not in ("Z", "X")
    assert proc.ppid == os.getpid()
    assert is_worker(proc), (
        f"{WORKER_PROGRAM} expected, got {proc.comm} {proc_cmdline(proc.pid)}"
    )


def test_private_pool_has_no_name(pool):
    assert pool.name is None


def test_default_thread_count_is_at_least_one(make_pool):
    p = make_pool()
    assert isinstance(p.threads, int)
    assert p.threads >= 1
    assert p.stats()["threads"] == p.threads


def test_default_thread_count_is_the_cpus_the_process_may_run_on(make_pool):
    allowed = os.sched_getaffinity(0)
    assert make_pool().threads == len(allowed) == shmaccel.cpu_count()
    if len(allowed) < 2:
        pytest.skip("one CPU: pinning cannot lower the count")
    os.sched_setaffinity(0, {min(allowed)})  # this thread; the worker inherits it (taskset)
    try:
        pinned = make_pool()
    finally:
        os.sched_setaffinity(0, allowed)
    assert pinned.threads == 1


@pytest.mark.parametrize("threads", [1, 3])
def test_requested_thread_count_is_honoured(make_pool, threads):
    p = make_pool(threads=threads)
    assert p.threads == threads
    assert p.stats()["threads"] == threads
    tasks = os.listdir(f"/proc/{p.worker_pid}/task")
    assert len(tasks) >= threads, (
        f"worker runs {len(tasks)} threads, expected >= {threads}"
    )


def test_stats_has_documented_keys_with_sane_values(pool):
    stats = pool.stats()
    assert isinstance(stats, dict)
    assert STATS_KEYS <= set(stats), f"missing keys: {STATS_KEYS - set(stats)}"
    for key in ("requests", "elements", "errors", "threads", "clients"):
        assert isinstance(stats[key], int) and stats[key] >= 0, (key, stats[key])
    assert isinstance(stats["uptime_s"], float) and stats["uptime_s"] >= 0.0
    assert stats["clients"] == 1  # only this session uses a private pool


def test_stats_count_requests_and_elements(pool):
    before = pool.stats()
    assert pool.double([1, 2, 3]) == [2, 4, 6]
    pool.square(array.array("d", [0.5] * 1000))
    data = shmaccel.zeros(5000, "int32", pool=pool)
    pool.double(data, out=data)
    pool.submit("square", data).result(timeout=30)
    elements = 3 + 1000 + 5000 + 5000

    def counted():
        stats = pool.stats()
        return stats["elements"] - before["elements"] >= elements and stats

    after = wait_until(counted, 2.0)
    assert after, f"stats did not count the calls: before {before}, now {pool.stats()}"
    assert after["elements"] - before["elements"] == elements
    assert after["requests"] - before["requests"] >= 4
    assert after["errors"] == before["errors"]


def test_stats_uptime_grows(pool):
    first = pool.stats()["uptime_s"]
    time.sleep(0.2)
    second = pool.stats()["uptime_s"]
    assert second - first >= 0.15


def test_context_manager_closes_pool_and_worker_exits():
    with shmaccel.Pool(threads=1) as p:
        assert isinstance(p, shmaccel.Pool)
        pid = p.worker_pid
        assert worker_alive(pid)
        assert p.square([3]) == [9]
    assert wait_until(lambda: not pid_exists(pid), 3.0), (
        f"worker {pid} still exists after the with block: {read_proc(pid)}"
    )


def test_calls_after_close_raise_shmaccel_error():
    p = shmaccel.Pool(threads=1)
    data = shmaccel.array([1.0, 2.0], pool=p)
    p.close()
    with pytest.raises(shmaccel.Error):
        p.double([1, 2])
    with pytest.raises(shmaccel.Error):
        p.square(array.array("d", [1.0]))
    with pytest.raises(shmaccel.Error):
        p.submit("double", [1]).result(timeout=10)
    with pytest.raises(shmaccel.Error):
        p.double(data)


def test_close_is_idempotent():
    p = shmaccel.Pool(threads=1)
    pid = p.worker_pid
    p.close()
    p.close()
    assert wait_until(lambda: not pid_exists(pid), 3.0)


def test_unreferenced_pool_stops_its_worker():
    p = shmaccel.Pool(threads=1)
    pid = p.worker_pid
    assert p.double([1]) == [2]
    del p
    gc.collect()
    assert wait_until(lambda: not pid_exists(pid), 5.0), (
        f"worker {pid} of a garbage-collected pool is still there: {read_proc(pid)}"
    )


def test_submit_returns_future_with_correct_result(pool):
    data = shmaccel.array(array.array("q", range(-100, 100)), pool=pool)
    future = pool.submit("square", data)
    assert isinstance(future, concurrent.futures.Future)
    result = future.result(timeout=30)
    assert isinstance(result, shmaccel.SharedArray)
    assert result.tolist() == [v * v for v in range(-100, 100)]
    assert pool.submit("double", [1.5, -2]).result(timeout=30) == [3.0, -4.0]


def test_submit_with_out_resolves_to_out(pool):
    data = array.array("f", [1.5, -2.0, 3.25])
    out = array.array("f", [0.0, 0.0, 0.0])
    assert pool.submit("double", data, out=out).result(timeout=30) is out
    assert out.tolist() == [3.0, -4.0, 6.5]
    assert pool.submit("square", out, out=out).result(timeout=30) is out
    assert out.tolist() == [9.0, 16.0, 42.25]


def test_submit_more_requests_than_slots_all_complete(pool):
    inputs = [
        shmaccel.array(array.array("i", range(k, k + 100)), pool=pool)
        for k in range(300)
    ]
    futures = [
        pool.submit("double" if k % 2 else "square", a) for k, a in enumerate(inputs)
    ]
    for k, future in enumerate(futures):
        values = range(k, k + 100)
        expected = [2 * v for v in values] if k % 2 else [v * v for v in values]
        assert future.result(timeout=60).tolist() == expected, f"future {k}"


def test_unknown_pool_name_raises_pool_not_found_error():
    name = unique_name("nosuchpool")
    started = time.monotonic()
    with pytest.raises(shmaccel.PoolNotFoundError) as excinfo:
        shmaccel.Pool(name)
    assert time.monotonic() - started < 5.0
    assert isinstance(excinfo.value, shmaccel.Error)


def test_two_private_pools_have_separate_workers(make_pool):
    first, second = make_pool(threads=1), make_pool(threads=1)
    assert first.worker_pid != second.worker_pid
    assert worker_alive(first.worker_pid) and worker_alive(second.worker_pid)
    assert first.double([21]) == [42]
    assert second.square([12]) == [144]
    first.close()
    assert wait_until(lambda: not pid_exists(first.worker_pid), 3.0)
    assert worker_alive(second.worker_pid)
    assert second.double([5]) == [10]


def test_private_pool_outlives_the_thread_that_started_it(make_pool):
    started = {}

    def start_pool():
        started["pool"] = make_pool(threads=1)
        started["pid"] = started["pool"].worker_pid

    thread = threading.Thread(target=start_pool)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    p, pid = started["pool"], started["pid"]
    time.sleep(0.5)
    assert worker_alive(pid), f"worker {pid} died with the thread that started it"
    assert p.double([1, 2, 3]) == [2, 4, 6]
    assert p.square(array.array("d", [1.5])).tolist() == [2.25]
    assert p.submit("double", [4]).result(timeout=30) == [8]
    assert p.worker_pid == pid
    assert worker_alive(pid)


def test_default_pool_started_in_a_thread_outlives_it(children):
    child = children.python(
        """
        import os, threading, time, shmaccel
        started = {}
        def first_use():
            started["result"] = shmaccel.double([1, 2])
            started["pid"] = shmaccel.default_pool().worker_pid
        thread = threading.Thread(target=first_use)
        thread.start()
        thread.join()
        assert started["result"] == [2, 4], started
        pid = started["pid"]
        time.sleep(0.5)
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        assert state not in ("Z", "X"), state
        assert shmaccel.square([3, 4]) == [9, 16]
        assert shmaccel.default_pool().worker_pid == pid
        print("OK", flush=True)
        """
    )
    child.expect("OK", timeout=30)
    assert child.finish(timeout=30) == 0, child.transcript()


def test_default_pool_is_one_private_pool_behind_module_functions():
    default = shmaccel.default_pool()
    assert shmaccel.default_pool() is default
    assert shmaccel.double([1]) == [2]
    proc = read_proc(default.worker_pid)
    assert proc is not None and proc.ppid == os.getpid() and is_worker(proc)
    before = default.stats()["elements"]
    shmaccel.square(array.array("d", [2.0] * 777))
    assert wait_until(lambda: default.stats()["elements"] - before >= 777, 2.0)


def test_shared_array_defaults_to_the_default_pool_and_still_works_with_others(
    make_pool,
):
    other = make_pool(threads=1)
    a = shmaccel.array([1, 2, 3], dtype="int8")
    assert other.square(a).tolist() == [1, 4, 9]
    b = shmaccel.zeros(3, "int8", pool=other)
    assert shmaccel.double(b).tolist() == [0, 0, 0]
