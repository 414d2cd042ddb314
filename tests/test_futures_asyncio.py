"""Many requests in flight: futures settled by one completion thread per pool, asyncio awaits
completed through the pool's notify socket; volume, every result checked, and failure paths."""

import array
import asyncio
import os
import signal
import threading

import pytest

import shmaccel

from conftest import stopped, wait_until


def completion_threads():
    return [t for t in threading.enumerate() if t.name == "shmaccel-completion"]


def test_thousands_of_futures_all_correct_with_one_completion_thread(pool):
    before = len(completion_threads())
    futures = [pool.submit("square" if i % 2 else "double", [i, -i, i + 0.5])
               for i in range(5000)]
    for i, future in enumerate(futures):
        x = [i, -i, i + 0.5]
        expected = [v * v for v in x] if i % 2 else [v * 2 for v in x]
        assert future.result(timeout=30) == expected
    # No thread per request: at most one more thread, the pool's completion thread.
    assert len(completion_threads()) <= before + 1


def test_futures_of_every_input_kind(pool, np):
    shared = pool.array([1.5, -2.0])
    arr = array.array("h", [300, -7])
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    results = [f.result(timeout=10) for f in (
        pool.submit("square", shared), pool.submit("double", arr),
        pool.submit("square", x), pool.submit("double", b"\x01\x7f"),
    )]
    assert results[0].tolist() == [2.25, 4.0]
    assert results[1] == array.array("h", [600, -14])
    assert results[2].tolist() == (x * x).tolist() and results[2].shape == (2, 3)
    assert results[3].tolist() == [2, 254]


def test_map_returns_results_in_order(pool):
    arrays = [[k] * (k % 7 + 1) for k in range(300)]
    assert pool.map("double", arrays) == [[2 * k] * (k % 7 + 1) for k in range(300)]


def test_bad_input_fails_the_future_not_the_pool(pool):
    assert isinstance(pool.submit("square", ["a"]).exception(timeout=5), TypeError)
    assert isinstance(pool.submit("square", [2**40]).exception(timeout=5), OverflowError)
    assert isinstance(pool.submit("cube", [1]).exception(timeout=5), ValueError)
    assert pool.submit("square", [3]).result(timeout=5) == [9]


def test_ten_thousand_concurrent_awaits_all_correct(pool):
    async def main():
        return await asyncio.gather(*(
            pool.asquare([k, k + 1]) if k % 3 else pool.adouble([float(k)])
            for k in range(10_000)
        ))

    results = asyncio.run(main())
    for k, result in enumerate(results):
        assert result == ([k * k, (k + 1) ** 2] if k % 3 else [2.0 * k])


def test_await_of_shared_arrays_and_arun(pool):
    async def main():
        a = pool.array(range(100_000), dtype="float64")
        out = pool.empty(100_000)
        same = await pool.arun("square", a, out=out)
        doubled = await pool.adouble(a)
        return a, out, same, doubled

    a, out, same, doubled = asyncio.run(main())
    assert same is out
    assert out[99_999] == 99_999.0 ** 2 and doubled[12_345] == 24_690.0


def test_asyncio_loop_stays_responsive_while_awaiting_a_stopped_worker(pool):
    ticks = 0

    async def ticker(stop):
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def main():
        stop = asyncio.Event()
        tick_task = asyncio.create_task(ticker(stop))
        with stopped(pool.worker_pid):
            call = asyncio.ensure_future(pool.asquare([5.0]))
            await asyncio.sleep(0.05)  # the call is submitted, and waits
            # Counted while it waits, rather than over a fixed time: a loaded machine may
            # leave this thread without a CPU for longer than a few ticks take.
            first = ticks
            while ticks <= first + 20:
                await asyncio.sleep(0.01)
            assert not call.done()
        result = await asyncio.wait_for(call, 10)
        stop.set()
        await tick_task
        return result

    assert asyncio.run(main()) == [25.0]
    assert ticks > 20  # the loop ran other tasks while the call waited


def test_cancelled_await_leaves_the_pool_usable(pool):
    async def main():
        with stopped(pool.worker_pid):
            call = asyncio.ensure_future(pool.asquare([3.0]))
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        return await pool.adouble([4])

    assert asyncio.run(main()) == [8]
    assert wait_until(lambda: pool.stats()["client_in_flight"] == 0, 5)


def test_futures_in_flight_fail_when_the_worker_is_killed(make_pool):
    pool = make_pool(threads=1)
    with stopped(pool.worker_pid):
        futures = [pool.submit("double", [k]) for k in range(100)]  # more than 64 slots
        os.kill(pool.worker_pid, signal.SIGKILL)
    for future in futures:
        assert isinstance(future.exception(timeout=5), shmaccel.WorkerDiedError)


def test_closing_a_pool_fails_its_pending_futures(make_pool):
    pool = make_pool(threads=1)
    with stopped(pool.worker_pid):
        futures = [pool.submit("square", [k]) for k in range(80)]
        pool.close()
    for future in futures:
        error = future.exception(timeout=5)
        assert isinstance(error, (shmaccel.PoolClosedError, shmaccel.WorkerDiedError))
    assert isinstance(pool.submit("square", [1]).exception(timeout=5), shmaccel.Error)


def test_futures_still_settle_after_an_event_loop_with_a_cancelled_await_closed(
        make_pool, monkeypatch):
    # A request whose await was cancelled (wait_for timed out) while the worker ran it
    # completes after asyncio.run closed its loop; delivering it must not kill the completion
    # thread, or every later future would wait forever.
    monkeypatch.setenv("SHMACCEL_FAULT", "worker-before-complete:sleep=300")
    pool = make_pool(threads=1)
    monkeypatch.delenv("SHMACCEL_FAULT")

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.asquare([3.0] * 1000), 0.05)

    asyncio.run(main())
    assert pool.submit("double", [21]).result(timeout=5) == [42]
    futures = [pool.submit("square", [k]) for k in range(100)]
    assert [f.result(timeout=5) for f in futures] == [[k * k] for k in range(100)]

