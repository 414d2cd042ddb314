"""fork() in a process that uses shmaccel: the child starts its own worker and leaves the
parent's session alone; the child's worker ends with the child."""

import os
import time

import shmaccel

from conftest import pid_exists, wait_until


def test_forked_child_gets_its_own_worker_and_parent_keeps_its_own(pool):
    parent_default = shmaccel.default_pool()
    parent_pid = parent_default.worker_pid
    assert pool.square([3]) == [9]
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report, and never return into pytest
        status = 1
        try:
            os.close(read_fd)
            result = shmaccel.square([1, 2, 3])
            child_worker = shmaccel.default_pool().worker_pid
            ok = result == [1, 4, 9] and child_worker != parent_pid
            os.write(write_fd, f"{child_worker} {int(ok)}\n".encode())
            status = 0 if ok else 1
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as r:
        line = r.read().split()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, line
    child_worker, ok = int(line[0]), line[1] == "1"
    assert ok
    # The parent's sessions saw nothing: same workers, still correct.
    assert shmaccel.default_pool().worker_pid == parent_pid
    assert shmaccel.double([21]) == [42]
    assert pool.square([4]) == [16]
    # The child's worker saw EOF when the child exited, and is gone.
    assert wait_until(lambda: not pid_exists(child_worker), timeout=5)


def test_child_dying_by_fork_without_using_shmaccel_does_not_end_parent_session():
    pool = shmaccel.default_pool()
    pid = pool.worker_pid
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    time.sleep(0.1)
    assert shmaccel.square([5]) == [25]
    assert shmaccel.default_pool().worker_pid == pid


def test_child_freeing_arrays_of_a_pool_the_parent_dropped_leaves_the_parent_session_alone():
    # The Pool object is gone; its session lives on in the arrays made from it. A child that
    # frees those arrays (and exits normally, running every finaliser) must not end the
    # parent's session: the private worker would see its socket shut down and exit.
    import gc
    import subprocess
    import sys

    from conftest import child_env

    script = """
import gc, os, sys, time
import shmaccel
pool = shmaccel.Pool(threads=1)
pid = pool.worker_pid
arrays = [pool.zeros(1000, "float64") for _ in range(3)]
del pool
gc.collect()
child = os.fork()
if child == 0:
    del arrays
    gc.collect()
    sys.exit(0)  # a normal exit: atexit handlers and deallocators run
os.waitpid(child, 0)
time.sleep(0.3)
alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
print("worker alive" if alive else "worker gone", flush=True)
"""
    gc.collect()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "worker alive", (proc.stdout, proc.stderr)
