"""How the pool's threads share their time between requests: a small request does not wait for
a big one to finish, and a thread stalled at the worst moment does not hold up the next
request in the same slot.

The stall is real: SHMACCEL_FAULT=<point>:sleep=<ms> makes the first worker thread that
reaches the named step of the protocol sleep there, as a preemption by the scheduler would.
Timeouts here are hang checks, many times what the call needs.
"""

import threading
import time

import pytest

STALL_MS = 4000
HANG_CHECK_S = 1.5
CHUNK_STALL_MS = 300
BIG_ELEMENTS = 40_000_000  # 320 MB of float64: tens of milliseconds of work for one thread
BIG_CALLS = 20  # at most, until one of them is seen serving small calls meanwhile
SPINNER_STALL_MS = 1000
WARM_CALLS = 200  # back-to-back small calls before the spinner stalls in the next one
NUDGE_TRIALS = 5
NUDGE_LIMIT_S = 0.04  # the idle thread's own rescan comes every 0.1 s: 0-0.1 s after a stall


def test_next_call_in_a_slot_is_served_while_the_thread_of_the_last_one_is_stalled(
        make_pool, monkeypatch):
    # The first completion's thread sleeps right after posting it, the moment at which the
    # client it wakes often takes its CPU. The client's next call reuses the same slot and
    # must be served by the other thread rather than wait for the sleeper.
    monkeypatch.setenv("SHMACCEL_FAULT", f"worker-after-complete:sleep={STALL_MS}")
    pool = make_pool(threads=2)
    monkeypatch.delenv("SHMACCEL_FAULT")
    data = pool.array([1.5] * 1000)
    out = pool.empty(1000, "float64")
    pool.square(data, out=out)
    assert out.tolist() == [2.25] * 1000

    start = time.monotonic()
    pool.double(data, out=out, timeout=HANG_CHECK_S)
    assert out.tolist() == [3.0] * 1000
    assert time.monotonic() - start < HANG_CHECK_S


@pytest.mark.parametrize("threads", [1, 2])
def test_small_calls_complete_while_a_big_call_keeps_the_pool_threads_busy(
        make_pool, monkeypatch, threads):
    if threads == 2:
        # The big call's two threads would keep both CPUs of a 2-CPU machine busy, and a
        # loaded machine could then leave this (third) thread no CPU before the call ends
        # (CI saw 0 calls served). So the first thread to finish a chunk of it stalls there
        # for 300 ms, holding the call open as a preemption could: the other thread, its
        # chunks done, must serve the small calls meanwhile, and there is a free CPU.
        monkeypatch.setenv("SHMACCEL_FAULT", f"worker-chunk-done:sleep={CHUNK_STALL_MS}")
    pool = make_pool(threads=threads)
    monkeypatch.delenv("SHMACCEL_FAULT", raising=False)
    big = pool.zeros(BIG_ELEMENTS, "float64")
    small = pool.array(list(range(1000)), "int64")
    # With one pool thread nothing can hold the big call open while leaving that thread free
    # (the stall above would stop the small calls too), so this thread must get the CPU while
    # the call runs, which a loaded machine may deny it for a whole call. Hence more big calls
    # if need be: a pool that makes small calls wait for the big one serves none during any.
    served = []
    while len(served) < BIG_CALLS and max(served, default=0) < 10:
        big[0] = 3.0
        big[BIG_ELEMENTS - 1] = -2.0
        base = pool.stats()["client_elements"]
        future = pool.submit("square", big, out=big)
        calls = served_meanwhile = 0
        while True:
            result = pool.double(small)
            assert result.tolist() == [2 * i for i in range(1000)]
            calls += 1
            # The worker counts a call's elements before it reports the call done, so as long
            # as the big call's are not counted, the small call that just returned was served
            # before the big one completed. (future.done() would not tell: the completion
            # thread settles the future a moment later, as it gets the GIL.)
            big_counted = pool.stats()["client_elements"] - base - 1000 * calls >= BIG_ELEMENTS
            if big_counted or future.done():  # (done but not counted: it failed, see below)
                break
            served_meanwhile += 1
        assert future.result(timeout=60) is big
        assert (big[0], big[1], big[BIG_ELEMENTS // 2], big[BIG_ELEMENTS - 1]) == (
            9.0, 0, 0, 4.0)
        served.append(served_meanwhile)
    # Served between two slices of a big call (or by the other thread): many, not one
    # squeezed in after it.
    assert max(served) >= 10, f"small calls served during each big call: {served}"


def stalled(pool, poll_s=0.01, limit_s=30.0):
    """Waits until a request of the pool's session stays in flight with none completing over
    two looks poll_s apart; returns the requests completed by then, or None if that never
    happens within limit_s."""
    deadline = time.monotonic() + limit_s
    last = None
    while time.monotonic() < deadline:
        stats = pool.stats()
        now = (stats["client_requests"], stats["client_in_flight"])
        if now[0] > WARM_CALLS and now[1] and now == last:
            return now[0]
        last = now
        time.sleep(poll_s)
    return None


def back_to_back(pool, ones, stop):
    while not stop.is_set():
        pool.square(ones, out=ones)


def test_a_call_is_served_while_the_spinner_is_stalled_in_a_small_call(make_pool, monkeypatch):
    # The spinning pool thread runs a small request still announced as spinning, so a client
    # submitting meanwhile skips the post that would wake another thread (a back-to-back
    # caller's next call saves a futex wake-up that way). Should the spinner be descheduled in
    # the middle (stalled here after WARM_CALLS back-to-back calls of another thread), a
    # client whose request nobody claims posts after 50 us: its call then takes a wake-up, not
    # up to the 0.1 s after which the sleeping thread would look on its own. Timed, so over
    # several pools: without that post each call has a 40 % chance of beating the limit.
    took = []
    for _ in range(NUDGE_TRIALS):
        monkeypatch.setenv("SHMACCEL_FAULT", f"worker-before-complete:sleep={SPINNER_STALL_MS}"
                                             f":skip={WARM_CALLS}")
        pool = make_pool(threads=2)
        monkeypatch.delenv("SHMACCEL_FAULT")
        ones = pool.array([1.0] * 1000)
        data = pool.array([1.5] * 1000)
        out = pool.empty(1000, "float64")
        stop = threading.Event()
        caller = threading.Thread(target=back_to_back, args=(pool, ones, stop), daemon=True)
        caller.start()
        try:
            completed = stalled(pool)
            assert completed is not None, "the spinner never stalled"
            start = time.monotonic()
            pool.double(data, out=out, timeout=SPINNER_STALL_MS / 1000 * 0.9)
            took.append(time.monotonic() - start)
            assert out.tolist() == [3.0] * 1000
            # Served by the other thread: the stalled request has not completed meanwhile.
            assert pool.stats()["client_requests"] == completed + 1
        finally:
            stop.set()
            caller.join(30)
        pool.close()
    assert sum(t < NUDGE_LIMIT_S for t in took) >= NUDGE_TRIALS - 1, took
