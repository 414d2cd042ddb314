"""A worker killed with SIGKILL in the middle of a call: the call raises WorkerDiedError within
about a second instead of hanging, and the next call (default pool, or a new Pool) works."""

import array
import os
import signal
import threading
import time

import shmaccel

from conftest import (
    pid_exists,
    read_proc,
    stopped,
    wait_until,
    worker_alive,
)

DEATH_NOTICE_LIMIT = 2.0  # seconds; the design promises 1 s
CHUNK_STALL_MS = 10_000  # a stall cut short by the kill, which comes at once


class CallInThread:
    """Runs fn() in a daemon thread and records how it ended, and when."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self.finished_at = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - the test judges how the call ended
            self.error = exc
        self.finished_at = time.monotonic()

    def join(self, timeout):
        self.thread.join(timeout)
        return not self.thread.is_alive()


def kill_during(call, pid, delay):
    """SIGKILLs pid delay seconds into call; returns the kill time once call has ended."""
    time.sleep(delay)
    assert call.thread.is_alive(), (
        f"call ended before the kill: {call.result!r} {call.error!r}"
    )
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    assert call.join(10), "call still hanging 10 s after its worker was killed"
    return killed_at


def assert_died_promptly(call, killed_at):
    assert isinstance(call.error, shmaccel.WorkerDiedError), (
        f"expected WorkerDiedError, got result={call.result!r} error={call.error!r}"
    )
    assert isinstance(call.error, shmaccel.Error)
    took = call.finished_at - killed_at
    assert took < DEATH_NOTICE_LIMIT, (
        f"WorkerDiedError came {took:.2f} s after the kill"
    )


def assert_answers_without_hanging(fn, expected):
    """fn() must end within 5 s, either with expected or with a shmaccel.Error."""
    call = CallInThread(fn)
    assert call.join(5), "call on a pool whose worker died hangs"
    if call.error is not None:
        assert isinstance(call.error, shmaccel.Error), repr(call.error)
    else:
        assert call.result == expected


def test_call_waiting_on_killed_worker_raises_worker_died_error(make_pool):
    pool = make_pool(threads=1)
    data = shmaccel.array(array.array("d", [float(v) for v in range(1000)]), pool=pool)
    out = shmaccel.zeros(1000, "float64", pool=pool)
    pid = pool.worker_pid
    with stopped(pid):
        call = CallInThread(lambda: pool.square(data, out=out))
        killed_at = kill_during(call, pid, 0.3)
    assert_died_promptly(call, killed_at)
    assert_answers_without_hanging(lambda: pool.double([1, 2]), [2, 4])
    with shmaccel.Pool(threads=1) as fresh:
        assert fresh.double([1, 2, 3]) == [2, 4, 6]
        assert fresh.square(data).tolist() == [float(v) ** 2 for v in range(1000)]


def test_call_computing_when_worker_is_killed_raises_worker_died_error(make_pool, monkeypatch):
    # The kill must land while the call is being computed, not in a gap between calls, nor
    # after the worker finished a call whose thread here had not yet woken up to return it (a
    # loaded machine opens both). So the pool's one thread stalls after the first chunk of
    # the call (SHMACCEL_FAULT): once that chunk's result shows in the data, the worker is
    # certainly in the middle of the call, and stays there until the kill.
    monkeypatch.setenv("SHMACCEL_FAULT", f"worker-chunk-done:sleep={CHUNK_STALL_MS}")
    pool = make_pool(threads=1)
    monkeypatch.delenv("SHMACCEL_FAULT")
    n = 4_000_000  # 32 MB of float64: many chunks
    data = shmaccel.zeros(n, "float64", pool=pool)
    data[0] = data[n - 1] = 3.0
    pid = pool.worker_pid
    call = CallInThread(lambda: pool.square(data, out=data))
    assert wait_until(lambda: data[0] == 9.0, 30), "the worker never computed the first chunk"
    assert data[n - 1] == 3.0 and call.thread.is_alive(), (
        f"call ended before the kill: {call.result!r} {call.error!r}"
    )
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    assert call.join(10), "call still hanging 10 s after its worker was killed"
    assert_died_promptly(call, killed_at)
    with shmaccel.Pool(threads=1) as fresh:
        assert fresh.square([1.5, 2]) == [2.25, 4.0]


def test_all_requests_in_flight_fail_when_worker_is_killed(make_pool):
    pool = make_pool(threads=1)
    inputs = [
        shmaccel.array(array.array("i", range(k, k + 50)), pool=pool) for k in range(10)
    ]
    outputs = [shmaccel.zeros(50, "int32", pool=pool) for _ in range(10)]
    pid = pool.worker_pid
    with stopped(pid):
        futures = [pool.submit("double", a, out=o)
                   for a, o in zip(inputs, outputs, strict=True)]
        time.sleep(0.2)
        assert not any(f.done() for f in futures), (
            "requests finished on a stopped worker"
        )
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        for k, future in enumerate(futures):
            remaining = max(0.1, killed_at + DEATH_NOTICE_LIMIT - time.monotonic())
            error = future.exception(timeout=remaining)
            assert isinstance(error, shmaccel.WorkerDiedError), f"future {k}: {error!r}"


def test_threads_blocked_in_calls_all_see_the_death(make_pool):
    pool = make_pool(threads=1)
    pid = pool.worker_pid
    pairs = [
        (shmaccel.array([float(k)] * 100, pool=pool), shmaccel.zeros(100, pool=pool))
        for k in range(8)
    ]
    with stopped(pid):
        calls = [CallInThread(lambda d=d, o=o: pool.square(d, out=o)) for d, o in pairs]
        time.sleep(0.3)
        assert all(c.thread.is_alive() for c in calls)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        for c in calls:
            assert c.join(10), "a call still hangs 10 s after its worker was killed"
    for c in calls:
        assert_died_promptly(c, killed_at)


def test_default_pool_starts_a_fresh_worker_after_its_worker_is_killed():
    assert shmaccel.double([1]) == [2]
    default = shmaccel.default_pool()
    old_pid = default.worker_pid
    data = shmaccel.array(array.array("q", range(1000)))
    out = shmaccel.zeros(1000, "int64")
    with stopped(old_pid):
        call = CallInThread(lambda: shmaccel.square(data, out=out))
        killed_at = kill_during(call, old_pid, 0.3)
    assert_died_promptly(call, killed_at)

    assert shmaccel.double([1, 2, 3]) == [2, 4, 6]
    new_pid = shmaccel.default_pool().worker_pid
    assert new_pid != old_pid
    assert worker_alive(new_pid)
    assert read_proc(new_pid).ppid == os.getpid()
    assert wait_until(lambda: not pid_exists(old_pid), 2.0), (
        f"killed worker {old_pid} was never reaped: {read_proc(old_pid)}"
    )
    # Memory allocated before the death stays readable; new arrays work with the new worker.
    assert data.tolist() == list(range(1000))
    fresh = shmaccel.array(array.array("q", range(1000)))
    assert shmaccel.square(fresh).tolist() == [v * v for v in range(1000)]


def test_default_pool_recovers_from_a_kill_between_calls():
    assert shmaccel.square([3]) == [9]
    old_pid = shmaccel.default_pool().worker_pid
    os.kill(old_pid, signal.SIGKILL)
    assert wait_until(lambda: not worker_alive(old_pid), 2.0)
    # The first call may learn of the death (WorkerDiedError) or go straight to a new worker.
    try:
        first = shmaccel.double([5])
    except shmaccel.WorkerDiedError:
        first = shmaccel.double([5])
    assert first == [10]
    assert shmaccel.default_pool().worker_pid != old_pid
    assert shmaccel.square(array.array("d", [0.5])).tolist() == [0.25]
