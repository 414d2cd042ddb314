"""What each kind of input turns into, and the errors for inputs and out= buffers the library
cannot use: unsupported formats, mismatched or read-only outputs, objects that are no data."""

import array
import re

import pytest

import shmaccel

from conftest import DTYPE_BY_NAME, DTYPES, OPS, assert_matches, make_case


def names_format(message, *names):
    return any(
        re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", message)
        for name in names
    )


def test_exception_classes_form_one_hierarchy():
    assert issubclass(shmaccel.Error, Exception)
    assert issubclass(shmaccel.WorkerDiedError, shmaccel.Error)
    assert issubclass(shmaccel.PoolNotFoundError, shmaccel.Error)
    assert not issubclass(shmaccel.WorkerDiedError, shmaccel.PoolNotFoundError)


@pytest.mark.parametrize("dt", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_array_array_result_keeps_typecode(dt, op):
    data, expected = make_case(dt, op, 50, seed=("typecode", dt.name, op))
    result = getattr(shmaccel, op)(data)
    assert isinstance(result, array.array)
    assert result.typecode == dt.typecode
    assert_matches(result, expected, dt, data)


@pytest.mark.parametrize("typecode, dtype", [("l", "int64"), ("L", "uint64")])
def test_native_long_typecodes_are_accepted_and_kept(typecode, dtype):
    if array.array(typecode).itemsize != 8:
        pytest.skip("C long is not 64-bit here")
    dt = DTYPE_BY_NAME[dtype]
    data = array.array(typecode, [0, 1, 5, dt.max, dt.min])
    result = shmaccel.double(data)
    assert result.typecode == typecode
    mask = (1 << 64) - 1
    expected = [((v * 2) & mask) for v in data]
    if dtype == "int64":
        expected = [v - (1 << 64) if v >= 1 << 63 else v for v in expected]
    assert result.tolist() == expected


def test_bytearray_input_is_treated_as_uint8_and_gives_shared_array():
    result = shmaccel.double(bytearray([0, 1, 100, 200, 255]))
    assert isinstance(result, shmaccel.SharedArray)
    assert result.dtype == "uint8"
    assert result.tolist() == [0, 2, 200, 144, 254]


def test_bytes_input_is_read_as_uint8():
    result = shmaccel.square(b"\x00\x02\x10\xff")
    assert isinstance(result, shmaccel.SharedArray)
    assert result.dtype == "uint8"
    assert result.tolist() == [0, 4, 0, 1]


def test_memoryview_input_keeps_its_format_and_gives_shared_array():
    source = array.array("h", [-32768, -3, 0, 200, 32767])
    result = shmaccel.square(memoryview(source))
    assert isinstance(result, shmaccel.SharedArray)
    assert result.dtype == "int16"
    assert result.tolist() == [0, 9, 0, (200 * 200) - 65536, 1]


def test_fixed_width_results_wrap_like_twos_complement():
    assert shmaccel.square(array.array("b", [100, -128, 11]))[:] == array.array(
        "b", [16, 0, 121]
    )
    assert shmaccel.double(array.array("B", [200, 128, 127])).tolist() == [144, 0, 254]
    assert shmaccel.double(array.array("q", [2**62, -(2**63)])).tolist() == [
        -(2**63),
        0,
    ]
    assert shmaccel.square(array.array("Q", [2**32, 2**32 + 1])).tolist() == [
        0,
        2**33 + 1,
    ]


@pytest.mark.parametrize("typecode", ["u"])
def test_unsupported_array_typecode_raises_type_error_naming_it(typecode):
    data = array.array(typecode, "abc")
    with pytest.raises(TypeError) as excinfo:
        shmaccel.double(data)
    fmt = memoryview(data).format
    assert names_format(str(excinfo.value), fmt, typecode), str(excinfo.value)


@pytest.mark.parametrize("op", OPS)
def test_unsupported_buffer_format_raises_before_touching_out(op):
    data = array.array("u", "xy")
    out = array.array("q", [7, 7])
    with pytest.raises(TypeError):
        getattr(shmaccel, op)(data, out=out)
    assert out.tolist() == [7, 7]


@pytest.mark.parametrize("bad", [42, 4.5, None, "abc", object()], ids=repr)
def test_object_that_is_neither_sequence_nor_buffer_raises_type_error(bad):
    with pytest.raises(TypeError):
        shmaccel.double(bad)


@pytest.mark.parametrize("op", OPS)
def test_out_of_wrong_length_raises_value_error(op):
    data = array.array("d", [1.0, 2.0, 3.0])
    for out in (
        array.array("d", [0.0, 0.0]),
        array.array("d", [0.0] * 4),
        shmaccel.zeros(2),
    ):
        with pytest.raises(ValueError):
            getattr(shmaccel, op)(data, out=out)


@pytest.mark.parametrize("op", OPS)
def test_out_of_other_format_raises_value_error(op):
    data = array.array("i", [1, 2, 3])
    for out in (
        array.array("f", [0.0] * 3),
        array.array("h", [0] * 3),
        array.array("I", [0] * 3),
        shmaccel.zeros(3, "int64"),
    ):
        with pytest.raises(ValueError):
            getattr(shmaccel, op)(data, out=out)
    assert out.tolist() == [0, 0, 0]


@pytest.mark.parametrize("op", OPS)
def test_read_only_out_is_refused(op):
    with pytest.raises((TypeError, ValueError)):
        getattr(shmaccel, op)(bytearray(b"\x01\x02"), out=b"\x00\x00")
    source = array.array("d", [1.0, 2.0])
    readonly = memoryview(array.array("d", [0.0, 0.0])).toreadonly()
    with pytest.raises((TypeError, ValueError)):
        getattr(shmaccel, op)(source, out=readonly)
    assert readonly.tolist() == [0.0, 0.0]


def test_read_only_numpy_out_raises_type_error_like_any_read_only_out(np):
    # numpy refuses a writable view of a read-only array with ValueError; shmaccel promises
    # TypeError for every read-only out=.
    source = np.arange(4.0)
    out = np.zeros(4)
    out.flags.writeable = False
    for call in (lambda: shmaccel.square(source, out=out),
                 lambda: shmaccel.double(source.tolist(), out=out)):
        with pytest.raises(TypeError, match="read-only"):
            call()
    assert out.tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="C-contiguous"):
        shmaccel.square(source[::2], out=np.zeros(4)[::2])


def test_failed_out_check_leaves_data_untouched():
    data = array.array("d", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        shmaccel.square(data, out=array.array("d", [0.0]))
    assert data.tolist() == [1.0, 2.0, 3.0]


def test_submit_with_unknown_op_is_refused(pool):
    with pytest.raises((ValueError, TypeError)):
        pool.submit("cube", [1, 2]).result(timeout=30)


def test_empty_with_unknown_dtype_is_refused():
    with pytest.raises((TypeError, ValueError)):
        shmaccel.empty(3, "complex64")
    with pytest.raises((TypeError, ValueError)):
        shmaccel.zeros(3, "float16")


@pytest.mark.parametrize("n", [2.0, "3", None, 1.5])
def test_array_size_that_is_not_an_int_raises_type_error(n):
    for make in (shmaccel.empty, shmaccel.zeros):
        with pytest.raises(TypeError):
            make(n)


@pytest.mark.parametrize("threads, error", [
    (0, ValueError), (-1, ValueError), (1025, ValueError), (2**32 + 1, ValueError),
    (True, TypeError), (2.0, TypeError), ("2", TypeError),
])
def test_pool_threads_out_of_range_are_refused_before_a_worker_starts(threads, error):
    with pytest.raises(error, match="threads"):
        shmaccel.Pool(threads=threads)


@pytest.mark.parametrize("threads", [-1, 1025, 2**32 + 1, 2**64])
def test_extension_client_refuses_thread_counts_it_cannot_pass_on(threads):
    # The C type below Pool: 2**32 + 1 used to wrap silently to 1 thread.
    from shmaccel import _shmaccel

    with pytest.raises((ValueError, OverflowError)):
        _shmaccel.Client(worker=shmaccel.worker_path(), threads=threads)


def test_errors_do_not_disturb_later_calls():
    for bad in (["a"], [2**63], 12):
        with pytest.raises((TypeError, OverflowError)):
            shmaccel.double(bad)
    assert shmaccel.double([1, 2, 3]) == [2, 4, 6]
    assert shmaccel.square(array.array("d", [1.5])).tolist() == [2.25]
