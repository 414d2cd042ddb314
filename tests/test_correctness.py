"""Kernel results against the pure-Python reference: every dtype, both ops, sizes from empty to
a million, new output, in place (out=data) and into a separate out=, in each container type."""

import array

import pytest

import shmaccel

from conftest import (
    DTYPE_BY_NAME,
    DTYPE_NAMES,
    OPS,
    assert_matches,
    buffer_bytes,
    make_case,
    numpy_dtype,
)

SIZES = (0, 1, 7, 4096, 1_000_003)
MODES = ("new_output", "in_place", "separate_out")
CONTAINERS = ("shared_array", "array_array", "numpy")


def build(container, data, dt):
    """A fresh object of the container type holding the elements of array.array data."""
    if container == "shared_array":
        obj = shmaccel.array(data, dtype=dt.name)
        assert isinstance(obj, shmaccel.SharedArray)
        assert obj.dtype == dt.name and len(obj) == len(data)
        return obj
    if container == "array_array":
        return array.array(dt.typecode, data)
    np = pytest.importorskip("numpy")
    return np.frombuffer(data.tobytes(), dtype=numpy_dtype(dt)).copy()


def zeros_like_container(container, n, dt):
    if container == "shared_array":
        return shmaccel.zeros(n, dt.name)
    if container == "array_array":
        return array.array(dt.typecode, bytes(n * dt.itemsize))
    np = pytest.importorskip("numpy")
    return np.zeros(n, dtype=numpy_dtype(dt))


def assert_container_type(result, container, dt, n):
    if container == "shared_array":
        assert isinstance(result, shmaccel.SharedArray), type(result)
        assert result.dtype == dt.name
        assert len(result) == n
    elif container == "array_array":
        assert isinstance(result, array.array), type(result)
        assert result.typecode == dt.typecode
        assert len(result) == n
    else:
        np = pytest.importorskip("numpy")
        assert isinstance(result, np.ndarray), type(result)
        assert result.dtype == numpy_dtype(dt)
        assert result.shape == (n,)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("container", CONTAINERS)
def test_kernel_matches_python_reference(container, dtype, op, mode, size):
    dt = DTYPE_BY_NAME[dtype]
    data_values, expected = make_case(
        dt, op, size, seed=(container, dtype, op, mode, size)
    )
    data = build(container, data_values, dt)
    original = buffer_bytes(data)
    kernel = getattr(shmaccel, op)

    if mode == "new_output":
        result = kernel(data)
        assert result is not data
        assert buffer_bytes(data) == original, "input was modified"
    elif mode == "in_place":
        result = kernel(data, out=data)
        assert result is data
    else:
        out = zeros_like_container(container, size, dt)
        result = kernel(data, out=out)
        assert result is out
        assert buffer_bytes(data) == original, "input was modified"

    assert_container_type(result, container, dt, size)
    assert_matches(result, expected, dt, data_values)

    if container == "numpy" and size == SIZES[-1]:
        # The large case once more against numpy's own arithmetic on the input.
        np = pytest.importorskip("numpy")
        source = np.frombuffer(data_values.tobytes(), dtype=numpy_dtype(dt))
        with np.errstate(all="ignore"):
            want = source * source if op == "square" else source * source.dtype.type(2)
        assert want.dtype == result.dtype
        assert np.array_equal(result, want, equal_nan=dt.is_float)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_pool_methods_match_python_reference(pool, dtype, op):
    dt = DTYPE_BY_NAME[dtype]
    data_values, expected = make_case(dt, op, 10_007, seed=("pool", dtype, op))
    shared = shmaccel.array(data_values, dtype=dt.name, pool=pool)
    kernel = getattr(pool, op)

    assert_matches(kernel(shared), expected, dt, data_values)
    assert_matches(
        kernel(array.array(dt.typecode, data_values)), expected, dt, data_values
    )
    assert_matches(
        pool.submit(op, shared).result(timeout=60), expected, dt, data_values
    )
    assert kernel(shared, out=shared) is shared
    assert_matches(shared, expected, dt, data_values)


@pytest.mark.parametrize("op", OPS)
def test_out_may_be_a_different_buffer_type_of_the_same_format(op):
    dt = DTYPE_BY_NAME["int32"]
    data_values, expected = make_case(dt, op, 1000, seed=("mixed-out", op))
    kernel = getattr(shmaccel, op)

    out_shared = shmaccel.zeros(len(data_values), "int32")
    assert kernel(data_values, out=out_shared) is out_shared
    assert_matches(out_shared, expected, dt, data_values)

    out_array = array.array("i", bytes(4 * len(data_values)))
    assert kernel(shmaccel.array(data_values), out=out_array) is out_array
    assert_matches(out_array, expected, dt, data_values)


@pytest.mark.parametrize("op", OPS)
def test_bytearray_out_receives_uint8_result(op):
    dt = DTYPE_BY_NAME["uint8"]
    data_values, expected = make_case(dt, op, 300, seed=("bytearray-out", op))
    out = bytearray(len(data_values))
    assert getattr(shmaccel, op)(data_values, out=out) is out
    assert_matches(out, expected, dt, data_values)


def test_repeated_in_place_calls_compose():
    dt = DTYPE_BY_NAME["int64"]
    values = array.array("q", range(-500, 500))
    shared = shmaccel.array(values)
    for _ in range(3):
        shmaccel.double(shared, out=shared)
    shmaccel.square(shared, out=shared)
    expected = array.array("q", [(v * 8) * (v * 8) for v in values])
    assert_matches(shared, expected, dt, values)


def test_result_does_not_alias_input_or_earlier_results():
    data = shmaccel.array(array.array("d", [1.0, 2.0, 3.0]))
    first = shmaccel.double(data)
    second = shmaccel.double(data)
    shmaccel.square(first, out=first)
    assert data.tolist() == [1.0, 2.0, 3.0]
    assert second.tolist() == [2.0, 4.0, 6.0]
    assert first.tolist() == [4.0, 16.0, 36.0]
