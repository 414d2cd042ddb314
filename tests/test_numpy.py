"""numpy arrays (optional dependency): any shape and memory layout in, same dtype and shape out;
out= arrays; unsupported dtypes refused by name; a large random case against numpy itself."""

import array
import re
import zlib

import pytest

import shmaccel

from conftest import DTYPE_NAMES, OPS

np = pytest.importorskip("numpy")


def numpy_reference(op, data):
    with np.errstate(all="ignore"):
        return data * data if op == "square" else data * data.dtype.type(2)


def random_array(rng, dtype, n):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        limit = 30 if dt.itemsize == 4 else 300
        magnitude = 10.0 ** rng.uniform(-limit, limit, n)
        data = (rng.standard_normal(n) * magnitude).astype(dt)
        info = np.finfo(dt)
        specials = [
            0.0,
            -0.0,
            info.max,
            -info.max,
            info.tiny,
            np.inf,
            -np.inf,
            np.nan,
            1.0,
        ]
    else:
        info = np.iinfo(dt)
        data = rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
        specials = [
            info.min,
            info.max,
            0,
            1,
            info.max // 2 + 1,
            int(np.sqrt(info.max)) + 1,
        ]
    positions = rng.choice(n, size=len(specials), replace=False)
    data[positions] = np.array(specials, dtype=dt)
    return data


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_large_random_array_matches_numpy(dtype, op):
    rng = np.random.default_rng(zlib.crc32(f"{dtype}-{op}".encode()))
    data = random_array(rng, dtype, 1_000_003)
    original = data.copy()
    result = getattr(shmaccel, op)(data)
    assert isinstance(result, np.ndarray)
    assert result.dtype == data.dtype and result.shape == data.shape
    assert np.array_equal(
        result, numpy_reference(op, original), equal_nan=data.dtype.kind == "f"
    )
    assert np.array_equal(data, original, equal_nan=data.dtype.kind == "f"), (
        "input modified"
    )


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 5), (1,), (4, 1, 2)], ids=str)
def test_shape_and_dtype_are_kept(op, shape):
    data = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) - 7
    result = getattr(shmaccel, op)(data)
    assert isinstance(result, np.ndarray)
    assert result.shape == shape and result.dtype == np.int32
    assert np.array_equal(result, numpy_reference(op, data))


def test_zero_dimensional_array_gives_zero_dimensional_result():
    data = np.array(3.5)
    result = shmaccel.square(data)
    assert isinstance(result, np.ndarray)
    assert result.shape == () and result.dtype == np.float64
    assert float(result) == 12.25


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "make_view",
    [
        lambda a: a[::3],
        lambda a: a[::-1],
        lambda a: a.reshape(20, 50)[:, ::2],
        lambda a: a.reshape(20, 50).T,
        lambda a: np.asfortranarray(a.reshape(25, 40)),
    ],
    ids=["stride3", "reversed", "column_slice", "transposed", "fortran"],
)
def test_non_contiguous_input_is_copied_and_computed_correctly(op, make_view):
    base = np.linspace(-50.0, 50.0, 1000)
    view = make_view(base)
    snapshot = view.copy()
    result = getattr(shmaccel, op)(view)
    assert result.shape == view.shape and result.dtype == view.dtype
    assert np.array_equal(result, numpy_reference(op, snapshot))
    assert np.array_equal(view, snapshot), "input modified"


@pytest.mark.parametrize("op", OPS)
def test_in_place_on_multidimensional_array(op):
    data = np.arange(24, dtype=np.int64).reshape(2, 3, 4) - 12
    expected = numpy_reference(op, data.copy())
    assert getattr(shmaccel, op)(data, out=data) is data
    assert np.array_equal(data, expected)


def test_out_array_receives_the_result():
    data = np.array([1.5, -2.0, 3.0], dtype=np.float32)
    out = np.zeros(3, dtype=np.float32)
    assert shmaccel.double(data, out=out) is out
    assert out.tolist() == [3.0, -4.0, 6.0]
    shared_out = shmaccel.zeros(3, "float32")
    assert shmaccel.square(data, out=shared_out) is shared_out
    assert shared_out.tolist() == [2.25, 4.0, 9.0]


def test_out_with_wrong_dtype_or_length_raises_value_error():
    data = np.arange(5, dtype=np.int16)
    with pytest.raises(ValueError):
        shmaccel.double(data, out=np.zeros(5, dtype=np.int32))
    with pytest.raises(ValueError):
        shmaccel.double(data, out=np.zeros(4, dtype=np.int16))


def test_read_only_out_array_is_refused():
    data = np.arange(5, dtype=np.float64)
    out = np.zeros(5)
    out.flags.writeable = False
    with pytest.raises((TypeError, ValueError)):
        shmaccel.square(data, out=out)
    assert not out.any()


def test_read_only_input_array_is_fine():
    data = np.arange(6, dtype=np.uint16)
    data.flags.writeable = False
    assert shmaccel.square(data).tolist() == [0, 1, 4, 9, 16, 25]


@pytest.mark.parametrize(
    "dtype",
    ["complex128", "object", "float16", "bool", "complex64"],
)
def test_unsupported_dtype_raises_type_error_naming_it(dtype):
    data = np.zeros(4, dtype=dtype)
    with pytest.raises(TypeError) as excinfo:
        shmaccel.double(data)
    message = str(excinfo.value)
    names = {np.dtype(dtype).name, np.dtype(dtype).str, np.dtype(dtype).char}
    try:
        names.add(memoryview(data).format)
    except (TypeError, ValueError):
        pass  # object and datetime arrays have no buffer format
    assert any(
        re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", message)
        for name in names
    ), f"{message!r} names none of {sorted(names)}"


def test_numpy_and_array_array_results_agree():
    values = array.array("i", range(-1000, 1000, 7))
    from_array = shmaccel.square(values)
    from_numpy = shmaccel.square(np.array(values, dtype=np.int32))
    assert from_array.tolist() == from_numpy.tolist()


def _arena_mappings():
    """The shmaccel arenas mapped in this process, by inode."""
    with open("/proc/self/maps") as maps:
        return {line.split()[4] for line in maps if "/dev/shm/" in line and "/sem." not in line}


def test_calls_on_arrays_beyond_the_arena_cache_reuse_their_arenas(make_pool):
    # 600 MB in and 600 MB out per call: past the 1 GiB of empty arenas kept for reuse. They
    # used to be released and made again on every call (several seconds each at 10^8).
    pool = make_pool(threads=2)
    x = np.full(75_000_000, 3.0)
    result = pool.square(x)
    result = pool.square(x)  # the previous result is alive during this call: a third arena
    settled = _arena_mappings()
    for _ in range(3):
        result = pool.square(x)
        assert result[0] == 9.0 and result[-1] == 9.0
        assert _arena_mappings() == settled, "arenas were released and made again"
    del result
