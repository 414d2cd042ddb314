"""A client process killed with SIGKILL in the middle of calls: a named pool's worker survives,
reclaims the seat and serves the next client; a private worker exits by itself."""

import array
import os
import signal
import time

import pytest

import shmaccel

from conftest import shm_entries, stopped, wait_until, worker_alive

# Keeps several requests in flight at all times, so a kill lands in the middle of one.
BUSY_CLIENT = """
import sys, shmaccel
mode = sys.argv[1]
if mode == "named":
    pool = shmaccel.Pool(sys.argv[2])
elif mode == "private":
    pool = shmaccel.Pool(threads=1)
else:
    shmaccel.double([1])
    pool = shmaccel.default_pool()
arrays = [shmaccel.zeros(1_000_000, "float64", pool=pool) for _ in range(6)]
print("WORKER", pool.worker_pid, flush=True)
while True:
    futures = [pool.submit("square", a, out=a) for a in arrays]
    futures.append(pool.submit("double", [1.5] * 50_000))
    for future in futures:
        future.result()
    print("ROUND", flush=True)
"""


def start_busy_client(children, *args):
    child = children.python(BUSY_CLIENT, *args)
    pid = int(child.expect("WORKER", timeout=30).split()[1])
    if args[0] != "named":  # a named pool's worker belongs to the named_pool fixture
        children.adopt_worker(pid)
    child.expect("ROUND", timeout=30)  # it is computing
    return child, pid


def kill_child(child):
    os.kill(child.pid, signal.SIGKILL)
    child.proc.wait(10)


def assert_pool_serves_correctly(p):
    values = array.array("d", [v * 0.25 for v in range(-5000, 5000)])
    shared = shmaccel.array(values, pool=p)
    assert p.square(shared).tolist() == [v * v for v in values]
    assert p.double([1, -2, 3]) == [2, -4, 6]
    big = shmaccel.zeros(2_000_000, "int32", pool=p)
    assert p.double(big, out=big) is big


def test_named_pool_survives_clients_killed_mid_call(named_pool, children):
    with shmaccel.Pool(named_pool.name) as observer:
        for _ in range(3):
            child, worker_pid = start_busy_client(children, "named", named_pool.name)
            assert worker_pid == named_pool.pid
            time.sleep(0.2)
            kill_child(child)
            assert named_pool.proc.poll() is None, (
                f"worker died with its client: {named_pool.log()}"
            )
            assert_pool_serves_correctly(observer)
        # Every killed client's seat is given back.
        assert wait_until(lambda: observer.stats()["clients"] == 1, 5.0), (
            observer.stats()
        )
    with shmaccel.Pool(named_pool.name) as next_client:
        assert_pool_serves_correctly(next_client)


def test_named_pool_survives_client_killed_while_worker_stopped(named_pool, children):
    child, worker_pid = start_busy_client(children, "named", named_pool.name)
    with stopped(worker_pid):
        time.sleep(0.1)  # the client has submitted requests the worker has not taken
        kill_child(child)
    time.sleep(0.2)
    assert named_pool.proc.poll() is None, f"worker died: {named_pool.log()}"
    with shmaccel.Pool(named_pool.name) as next_client:
        assert_pool_serves_correctly(next_client)
        assert wait_until(lambda: next_client.stats()["clients"] == 1, 5.0), (
            next_client.stats()
        )


@pytest.mark.parametrize("mode", ["private", "default"])
def test_private_worker_exits_when_its_client_is_killed(children, mode):
    child, worker_pid = start_busy_client(children, mode)
    assert worker_alive(worker_pid)
    time.sleep(0.2)
    kill_child(child)
    assert wait_until(lambda: not worker_alive(worker_pid), 5.0), (
        f"worker {worker_pid} still running 5 s after its client was killed"
    )
    with shmaccel.Pool(threads=1) as fresh:
        assert_pool_serves_correctly(fresh)


def test_killed_client_of_a_named_pool_leaves_no_shared_memory_name(
    named_pool, children
):
    before = shm_entries()
    child, _ = start_busy_client(children, "named", named_pool.name)
    kill_child(child)
    time.sleep(0.3)
    assert shm_entries() - before == set()
