"""SharedArray: construction, element access, the buffer protocol (zero-copy views), and that its
memory really is shared with the worker without leaving a name in /dev/shm."""

import array
import ctypes
import os

import pytest

import shmaccel

from conftest import DTYPE_BY_NAME, DTYPE_NAMES, DTYPES, make_case, shm_entries


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("n", [0, 1, 1000])
def test_empty_and_zeros_have_requested_length_dtype_and_size(dtype, n):
    dt = DTYPE_BY_NAME[dtype]
    for make in (shmaccel.empty, shmaccel.zeros):
        a = make(n, dtype)
        assert isinstance(a, shmaccel.SharedArray)
        assert len(a) == n
        assert a.dtype == dtype
        assert a.nbytes == n * dt.itemsize
    zero = 0.0 if dt.is_float else 0
    assert shmaccel.zeros(n, dtype).tolist() == [zero] * n


def test_default_dtype_is_float64():
    assert shmaccel.empty(4).dtype == "float64"
    assert shmaccel.zeros(4).dtype == "float64"
    assert shmaccel.zeros(4).tolist() == [0.0] * 4


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_array_from_array_array_keeps_values_and_infers_dtype(dt):
    data, _ = make_case(dt, "double", 500, seed=("roundtrip", dt.name))
    a = shmaccel.array(data)
    assert a.dtype == dt.name
    assert len(a) == len(data)
    assert memoryview(a).tobytes() == data.tobytes()
    if not dt.is_float:
        assert a.tolist() == data.tolist()


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_array_from_list_with_explicit_dtype(dt):
    values = [0, 1, 2, 100] if not dt.is_float else [0.0, -1.5, 2.25, 1e10]
    if dt.kind == "i":
        values += [dt.min, dt.max, -7]
    elif dt.kind == "u":
        values += [dt.max]
    a = shmaccel.array(values, dtype=dt.name)
    assert a.dtype == dt.name
    expected = array.array(dt.typecode, values).tolist()
    assert a.tolist() == expected


def test_array_from_int_list_is_int64_and_from_float_list_is_float64():
    ints = shmaccel.array([1, -2, 2**62])
    assert ints.dtype == "int64"
    assert ints.tolist() == [1, -2, 2**62]
    floats = shmaccel.array([1, 2.5])
    assert floats.dtype == "float64"
    assert floats.tolist() == [1.0, 2.5]


def test_array_copies_its_source():
    source = array.array("i", [1, 2, 3])
    a = shmaccel.array(source)
    source[0] = 99
    assert a.tolist() == [1, 2, 3]


def test_indexing_iteration_and_tolist_agree():
    values = [5, -6, 7, -8, 9]
    a = shmaccel.array(values, dtype="int32")
    assert [a[i] for i in range(len(values))] == values
    assert [a[-i] for i in range(1, len(values) + 1)] == values[::-1]
    assert list(a) == values
    assert a.tolist() == values
    assert all(type(v) is int for v in a)
    f = shmaccel.array([0.5, -1.5], dtype="float32")
    assert list(f) == [0.5, -1.5]
    assert all(type(v) is float for v in f)


def test_index_past_either_end_raises_index_error():
    a = shmaccel.zeros(3, "int16")
    for bad in (3, 4, -4, 10**6):
        with pytest.raises(IndexError):
            a[bad]
    with pytest.raises(IndexError):
        shmaccel.empty(0)[0]


def test_uint64_and_int64_extremes_read_back_exactly():
    u = shmaccel.array([0, 2**64 - 1, 2**63], dtype="uint64")
    assert u.tolist() == [0, 2**64 - 1, 2**63]
    s = shmaccel.array([-(2**63), 2**63 - 1], dtype="int64")
    assert s.tolist() == [-(2**63), 2**63 - 1]


def test_float32_elements_are_rounded_to_float32():
    a = shmaccel.array([0.1, 1 / 3, 16777217.0], dtype="float32")
    assert a.tolist() == array.array("f", [0.1, 1 / 3, 16777217.0]).tolist()
    assert a[2] == 16777216.0


def test_memoryview_is_a_writable_zero_copy_view():
    a = shmaccel.array([1, 2, 3, 4], dtype="int64")
    view = memoryview(a)
    assert not view.readonly
    assert view.ndim == 1 and view.shape == (4,)
    assert view.itemsize == 8 and view.nbytes == a.nbytes == 32
    view[2] = -77
    assert a[2] == -77
    shmaccel.double(a, out=a)
    assert view.tolist() == [2, 4, -154, 8]


def test_numpy_asarray_is_a_zero_copy_view(np):
    a = shmaccel.array([1.0, 2.0, 3.0, 4.0])
    view = np.asarray(a)
    assert view.dtype == np.float64 and view.shape == (4,)
    assert view.flags.writeable
    view[1] = 42.0
    assert a[1] == 42.0
    memoryview(a)[3] = -1.0
    assert view[3] == -1.0
    assert np.shares_memory(view, np.asarray(a))
    shmaccel.square(a, out=a)
    assert view.tolist() == [1.0, 1764.0, 9.0, 1.0]


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_numpy_view_has_matching_dtype(np, dtype):
    a = shmaccel.zeros(5, dtype)
    assert np.asarray(a).dtype == np.dtype(dtype)


def test_live_shared_array_leaves_no_name_in_dev_shm(pool):
    before = shm_entries()
    arrays = [shmaccel.zeros(n, "float64", pool=pool) for n in (1, 1000, 3_000_000)]
    results = [pool.double(a) for a in arrays]
    assert shm_entries() - before == set()
    assert [len(r) for r in results] == [1, 1000, 3_000_000]


def mapping_of(pid, address):
    """(perms, dev, inode, path) of the mapping holding address in pid's address space."""
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                path = fields[5].strip() if len(fields) > 5 else ""
                return fields[1], fields[3], int(fields[4]), path
    return None


def mapped_inodes(pid):
    found = set()
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) >= 5 and fields[1][3] == "s":
                found.add((fields[3], int(fields[4])))
    return found


def test_shared_array_memory_is_a_shared_mapping_the_worker_also_maps(pool):
    a = shmaccel.zeros(1 << 20, "float64", pool=pool)
    pool.double(a, out=a)  # the worker has certainly mapped the arena now
    anchor = ctypes.c_char.from_buffer(memoryview(a))
    address = ctypes.addressof(anchor)
    del anchor
    mapping = mapping_of(os.getpid(), address)
    assert mapping is not None, "SharedArray memory is not in any mapping"
    perms, dev, inode, path = mapping
    assert perms[3] == "s", f"SharedArray memory is a private mapping: {mapping}"
    assert inode != 0, (
        f"SharedArray memory is anonymous, not a shared-memory file: {mapping}"
    )
    assert "(deleted)" in path or "memfd:" in path, (
        f"the segment still has a name: {mapping}"
    )
    assert (dev, inode) in mapped_inodes(pool.worker_pid), (
        "the worker does not map the arena"
    )


def test_shared_array_from_a_pool_works_with_module_functions_and_other_containers(
    pool,
):
    a = shmaccel.array([1, 2, 3], dtype="int16", pool=pool)
    assert pool.square(a).tolist() == [1, 4, 9]
    assert shmaccel.double(a).tolist() == [2, 4, 6]
    out = array.array("h", [0, 0, 0])
    assert pool.double(a, out=out) is out
    assert out.tolist() == [2, 4, 6]


def test_shared_array_outlives_its_pool_and_views_outlive_the_array(children):
    # In a child: a mistake here would crash the interpreter, not just fail an assert.
    child = children.python(
        """
        import array, gc, shmaccel
        pool = shmaccel.Pool(threads=1)
        a = shmaccel.array(array.array("d", [1.0, 2.0, 3.0]), pool=pool)
        doubled = pool.double(a)
        view = memoryview(doubled)
        pool.close()
        assert a.tolist() == [1.0, 2.0, 3.0], a.tolist()
        del doubled
        gc.collect()
        assert view.tolist() == [2.0, 4.0, 6.0], view.tolist()
        view[0] = 9.5
        assert view[0] == 9.5
        view.release()
        try:
            import numpy
        except ImportError:
            pass
        else:
            b = shmaccel.array([4.0, 5.0])
            nview = numpy.asarray(b)
            del b
            gc.collect()
            assert nview.tolist() == [4.0, 5.0]
            nview[0] = 1.0
        print("OK", flush=True)
        """
    )
    child.expect("OK", timeout=30)
    assert child.finish(timeout=30) == 0, child.transcript()


def test_arrays_carved_from_an_arena_left_idle_beyond_the_cache_stay_usable(make_pool):
    # More than the 1 GiB of empty arenas kept for reuse is mapped; one arena empties and
    # stays idle past the 2 s after which such arenas are released. A new array that fits in
    # it must get a live one: the release once picked the very arena it was carved from.
    import time

    pool = make_pool(threads=2)
    n = 55_000_000  # 440 MB of float64 per array: three of them pass 1 GiB
    keep = [pool.zeros(n, "float64") for _ in range(2)]
    idle = pool.zeros(n, "float64")
    del idle  # its arena is now empty
    time.sleep(2.2)
    fresh = pool.array(array.array("d", [1.5]) * 1000)  # fits in the idle arena
    assert pool.double(fresh, out=fresh) is fresh
    assert fresh.tolist() == [3.0] * 1000
    other = pool.array(array.array("d", [2.5]) * 1000)  # and a neighbour there
    assert pool.square(other).tolist() == [6.25] * 1000
    assert fresh.tolist() == [3.0] * 1000
    assert all(a[0] == 0.0 and a[n - 1] == 0.0 for a in keep)
