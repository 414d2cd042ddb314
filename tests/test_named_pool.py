"""Named pools: a worker started on its own with --name, shared by several clients and processes,
found through SHMACCEL_POOL, and gone cleanly after SIGTERM."""

import array
import subprocess
import threading
import time

import pytest

import shmaccel

from conftest import (
    runtime_entries,
    start_named_worker,
    stop_process,
    wait_until,
    worker_path,
)


def test_pool_attaches_by_name_to_the_running_worker(named_pool):
    with shmaccel.Pool(named_pool.name) as p:
        assert p.name == named_pool.name
        assert p.worker_pid == named_pool.pid
        assert p.threads >= 1
        assert p.double([1, 2, -3]) == [2, 4, -6]
        data = shmaccel.array(array.array("d", [0.5, -1.5, 3.0]), pool=p)
        assert p.square(data).tolist() == [0.25, 2.25, 9.0]
        assert p.stats()["clients"] >= 1


def test_two_clients_use_one_named_pool_concurrently(named_pool):
    with (
        shmaccel.Pool(named_pool.name) as first,
        shmaccel.Pool(named_pool.name) as second,
    ):
        assert first.worker_pid == second.worker_pid == named_pool.pid
        assert wait_until(lambda: first.stats()["clients"] == 2, 2.0), first.stats()
        errors = []

        def hammer(p, offset):
            try:
                for k in range(100):
                    values = list(range(offset + k, offset + k + 500))
                    assert p.double(values) == [2 * v for v in values]
                    shared = shmaccel.array(array.array("q", values), pool=p)
                    assert p.square(shared).tolist() == [v * v for v in values]
            except Exception as exc:  # noqa: BLE001 - any failure in a thread is reported below
                errors.append(repr(exc))

        threads = [
            threading.Thread(target=hammer, args=(p, off))
            for p, off in (
                (first, 0),
                (second, 10_000),
                (first, 20_000),
                (second, 30_000),
            )
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "client threads hung"
        assert errors == []


def test_closing_a_client_leaves_the_named_pool_running(named_pool):
    p = shmaccel.Pool(named_pool.name)
    assert p.double([4]) == [8]
    p.close()
    time.sleep(0.2)
    assert named_pool.proc.poll() is None, f"named worker exited: {named_pool.log()}"
    with shmaccel.Pool(named_pool.name) as again:
        assert again.square([5]) == [25]
        assert wait_until(lambda: again.stats()["clients"] == 1, 3.0), again.stats()


def test_named_worker_exits_on_sigterm_and_its_name_is_gone(named_pool):
    named_pool.proc.terminate()
    try:
        named_pool.proc.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"named worker ignored SIGTERM: {named_pool.log()}")
    with pytest.raises(shmaccel.PoolNotFoundError):
        shmaccel.Pool(named_pool.name)
    assert runtime_entries(named_pool.name) == [], "the worker left its socket behind"


def test_named_worker_starts_over_the_socket_of_a_killed_one(named_pool, tmp_path):
    named_pool.proc.kill()
    named_pool.proc.wait(5)
    with pytest.raises(shmaccel.PoolNotFoundError):
        shmaccel.Pool(named_pool.name)
    successor = start_named_worker(named_pool.name, tmp_path / "successor.log")
    try:
        with shmaccel.Pool(named_pool.name) as p:
            assert p.worker_pid == successor.pid
            assert p.double([21]) == [42]
    finally:
        stop_process(successor.proc)


def test_second_worker_cannot_take_a_name_in_use(named_pool, tmp_path):
    log_path = tmp_path / "second.log"
    with open(log_path, "wb") as log:
        second = subprocess.Popen(
            [str(worker_path()), "--name", named_pool.name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            rc = second.wait(5)
        except subprocess.TimeoutExpired:
            pytest.fail("a second worker with the same name kept running")
        assert rc != 0
    finally:
        stop_process(second)
    with shmaccel.Pool(named_pool.name) as p:
        assert p.worker_pid == named_pool.pid
        assert p.square([7]) == [49]


def test_client_of_a_stopped_named_pool_gets_an_error_not_a_hang(named_pool):
    p = shmaccel.Pool(named_pool.name)
    try:
        assert p.double([1]) == [2]
        named_pool.proc.terminate()
        named_pool.proc.wait(5)
        started = time.monotonic()
        with pytest.raises(shmaccel.Error):
            p.double([1, 2])
        assert time.monotonic() - started < 2.0
    finally:
        p.close()


def test_stats_of_a_stopped_named_pool_raise_what_calls_raise(named_pool):
    p = shmaccel.Pool(named_pool.name)
    try:
        assert p.stats()["worker_pid"] == named_pool.pid
        named_pool.proc.terminate()  # SIGTERM: the pool stops gracefully
        named_pool.proc.wait(5)
        with pytest.raises(shmaccel.PoolClosedError):
            p.double([1])
        with pytest.raises(shmaccel.PoolClosedError):
            p.stats()
    finally:
        p.close()


def test_shmaccel_pool_variable_makes_the_named_pool_the_default(named_pool, children):
    child = children.python(
        """
        import array, shmaccel
        pool = shmaccel.default_pool()
        print("PID", pool.worker_pid, flush=True)
        assert shmaccel.double([1, 2, 3]) == [2, 4, 6]
        data = shmaccel.array(array.array("i", [3, -4]))
        assert shmaccel.square(data).tolist() == [9, 16]
        print("OK", flush=True)
        """,
        env={"SHMACCEL_POOL": named_pool.name},
    )
    line = child.expect("PID", timeout=30)
    assert int(line.split()[1]) == named_pool.pid
    child.expect("OK", timeout=30)
    assert child.finish(timeout=30) == 0, child.transcript()
    assert named_pool.proc.poll() is None, "the named worker exited with its client"
