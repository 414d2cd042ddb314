"""A full slot table makes callers wait for a slot (with the GIL released), never fail."""

import threading

from conftest import stopped, wait_until

SLOTS_PER_CLIENT = 64  # SA_SLOTS_PER_CLIENT in include/shmaccel.h


def test_more_concurrent_calls_than_slots_all_complete(pool):
    callers = SLOTS_PER_CLIENT + 40
    inputs = [pool.array([float(i), float(i) + 0.5]) for i in range(callers)]
    results = [None] * callers
    errors = []
    started = threading.Barrier(callers + 1)

    def call(i):
        started.wait()
        try:
            results[i] = pool.square(inputs[i]).tolist()
        except Exception as e:  # collected and reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    with stopped(pool.worker_pid):
        for t in threads:
            t.start()
        started.wait()
        # With the worker stopped, every slot fills up and the other callers queue for one;
        # meanwhile this thread keeps running (the waits hold no GIL), and nobody fails.
        assert wait_until(lambda: pool.stats()["client_in_flight"] == SLOTS_PER_CLIENT, 5.0)
        assert not wait_until(lambda: errors or not all(t.is_alive() for t in threads), 0.3)
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "callers still waiting for a slot"
    assert errors == []
    for i, result in enumerate(results):
        assert result == [float(i) ** 2, (float(i) + 0.5) ** 2]


def test_waiting_for_a_slot_honours_timeout(pool):
    import pytest

    block = [pool.array([1.0]) for _ in range(SLOTS_PER_CLIENT)]
    extra = pool.array([3.0])
    outcomes = []

    def occupy(a):
        try:
            pool.square(a, timeout=5)
            outcomes.append("done")
        except TimeoutError:
            outcomes.append("timeout")

    with stopped(pool.worker_pid):
        threads = [threading.Thread(target=occupy, args=(a,)) for a in block]
        for t in threads:
            t.start()
        assert wait_until(lambda: pool.stats()["client_in_flight"] == SLOTS_PER_CLIENT, 5.0)
        # Every slot is taken by a call the stopped worker cannot finish: this one cannot
        # even get a slot, and must give up at its deadline with the GIL released.
        with pytest.raises(TimeoutError):
            pool.square(extra, timeout=0.3)
    for t in threads:
        t.join(timeout=30)
    assert outcomes.count("done") + outcomes.count("timeout") == SLOTS_PER_CLIENT
    assert pool.square(extra).tolist() == [9.0]
