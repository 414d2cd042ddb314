"""Ctrl-C: SIGINT to a process blocked in a call raises KeyboardInterrupt promptly, and the pool
works again once its worker runs."""

import os
import signal
import time

import pytest

from conftest import stopped, wait_until, worker_alive

INTERRUPTED_CLIENT = """
import array, signal, sys, shmaccel
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if SIGINT was ignored for us
if sys.argv[1] == "private":
    pool = shmaccel.Pool(threads=1)
    square, double, pid = pool.square, pool.double, pool.worker_pid
    data = shmaccel.array(array.array("d", [1.5, -2.0, 3.0] * 1000), pool=pool)
    out = shmaccel.zeros(3000, "float64", pool=pool)
else:
    shmaccel.double([1])
    square, double = shmaccel.square, shmaccel.double
    pid = shmaccel.default_pool().worker_pid
    data = shmaccel.array(array.array("d", [1.5, -2.0, 3.0] * 1000))
    out = shmaccel.zeros(3000, "float64")
expected = [v * v for v in data.tolist()]
print("WORKER", pid, flush=True)
sys.stdin.readline()  # the parent has stopped the worker
print("CALLING", flush=True)
try:
    square(data, out=out)
except KeyboardInterrupt:
    print("KI", flush=True)
else:
    print("RETURNED", flush=True)
    sys.exit(3)
sys.stdin.readline()  # the parent has resumed the worker
assert double([1, 2, 3]) == [2, 4, 6]
assert square(data).tolist() == expected
if sys.argv[1] != "private":
    fresh = shmaccel.zeros(3000, "float64")
else:
    fresh = shmaccel.zeros(3000, "float64", pool=pool)
assert square(data, out=fresh).tolist() == expected
print("OK", flush=True)
"""


@pytest.mark.parametrize("mode", ["private", "default"])
def test_sigint_interrupts_a_blocked_call_with_keyboard_interrupt(children, mode):
    child = children.python(INTERRUPTED_CLIENT, mode, stdin=True)
    worker_pid = int(child.expect("WORKER", timeout=30).split()[1])
    children.adopt_worker(worker_pid)
    with stopped(worker_pid):
        child.send("stopped\n")
        child.expect("CALLING", timeout=10)
        time.sleep(0.3)  # well inside the blocked call
        assert child.proc.poll() is None, child.transcript()

        sent_at = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        line = child.readline(timeout=5)
        took = time.monotonic() - sent_at
        assert line == "KI", f"expected KI, got {line!r}; output:\n{child.transcript()}"
        assert took < 2.0, f"KeyboardInterrupt came {took:.2f} s after SIGINT"
    # The worker runs again: the interrupted process must be able to go on using it.
    child.send("resumed\n")
    child.expect("OK", timeout=30)
    rc = child.finish(timeout=30)
    assert rc == 0, f"child exited with {rc}; output:\n{child.transcript()}"
    # The child is gone, so its worker must leave too.
    assert wait_until(lambda: not worker_alive(worker_pid), 5.0), (
        f"worker {worker_pid} outlived its client"
    )


def test_a_signal_every_few_ms_does_not_keep_a_call_from_getting_memory():
    # A timer signal with a Python handler (a sampling profiler, a watchdog) interrupts the
    # wait for the worker to accept a new arena again and again. The registration once
    # started over after each signal, with a new arena each time, and a 200 MB one (filled
    # on both sides, tens of ms) never got through.
    import subprocess
    import sys

    from conftest import child_env

    script = """
import array, signal, shmaccel
fired = 0
def tick(signum, frame):
    global fired
    fired += 1
pool = shmaccel.Pool(threads=1)
signal.signal(signal.SIGALRM, tick)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
result = pool.square(array.array("d", [3.0]) * 25_000_000)
signal.setitimer(signal.ITIMER_REAL, 0)
with open("/proc/self/maps") as maps:
    arenas = {line.split()[4] for line in maps if "/dev/shm/" in line and "/sem." not in line}
print(result[0], result[-1], fired, len(arenas), flush=True)
pool.close()
"""
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60, env=child_env())
    except subprocess.TimeoutExpired:
        pytest.fail("the call never got its memory while the timer kept firing")
    assert proc.returncode == 0, proc.stderr
    first, last, fired, arenas = proc.stdout.split()
    assert (float(first), float(last)) == (9.0, 9.0)
    assert int(fired) > 0
    assert int(arenas) <= 2, f"{arenas} arenas mapped: one was made per interruption"
