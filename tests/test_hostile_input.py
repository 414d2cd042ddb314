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
