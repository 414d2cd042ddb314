"""Inputs that run Python code while shmaccel converts them must not crash it."""

import shmaccel


class ClearsTheList:
    """An int-like whose conversion empties the list it sits in, then fills the heap with
    0xff bytes, so that a stale pointer into the list's old item array would be garbage."""

    def __init__(self, target, value):
        self.target = target
        self.value = value

    def __index__(self):
        size = len(self.target) * 8
        self.target.clear()
        self.junk = [b"\xff" * size for _ in range(64)]
        return self.value


def test_list_emptied_during_conversion_uses_a_snapshot():
    data = [10**6 + i for i in range(1000)]
    data[10] = ClearsTheList(data, 10**6 + 10)
    result = shmaccel.double(data)
    assert result == [2 * (10**6 + i) for i in range(1000)]


def test_float_list_emptied_during_conversion_uses_a_snapshot():
    data = [0.5 + i for i in range(1000)]
    data[3] = ClearsTheList(data, 3)
    expected = [2 * (0.5 + i) for i in range(1000)]
    expected[3] = 6.0
    assert shmaccel.double(data) == expected


def test_freeing_an_array_never_waits_for_a_stopped_worker(pool):
    """A SharedArray's deallocation (GIL held) must not wait for the allocator lock that a
    thread registering a new arena with a stopped worker holds."""
    import threading

    from conftest import all_threads_stopped, stopped

    small = pool.empty(10)
    done = threading.Event()

    def needs_a_new_arena():
        try:
            pool.empty(100_000_000)  # 800 MB: more than any arena so far, so registration
        except Exception:
            pass
        done.set()

    with stopped(pool.worker_pid):
        grower = threading.Thread(target=needs_a_new_arena)
        grower.start()
        # Registration is a round trip to the (stopped) worker: the grower stays stuck.
        assert not done.wait(0.3)
        del small  # would block here, holding the GIL, until the worker resumed
        assert all_threads_stopped(pool.worker_pid)  # it returned while the worker was stopped
    grower.join(30)
    assert done.is_set()
    assert pool.square([3.0]) == [9.0]
