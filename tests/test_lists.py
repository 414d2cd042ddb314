"""Lists and tuples: ints computed as int64 and never wrapped silently, floats as float64, bools
as ints, anything else refused with its index and type named."""

import math
import random
import re

import pytest

import shmaccel

from conftest import INT64, OPS, reference_list

INT64_MIN, INT64_MAX = INT64.min, INT64.max
SQUARE_LIMIT = math.isqrt(INT64_MAX)  # 3037000499: the largest x with x*x in int64


def kernel(op):
    return getattr(shmaccel, op)


@pytest.mark.parametrize("op", OPS)
def test_int_list_gives_int_list_equal_to_python_arithmetic(op):
    rng = random.Random(f"ints-{op}")
    bound = 2**62 - 1 if op == "double" else SQUARE_LIMIT
    values = [rng.randint(-bound, bound) for _ in range(5000)] + [
        0,
        1,
        -1,
        bound,
        -bound,
    ]
    result = kernel(op)(values)
    assert type(result) is list
    assert all(type(v) is int for v in result)
    assert result == reference_list(op, values)


@pytest.mark.parametrize("op", OPS)
def test_tuple_gives_list(op):
    result = kernel(op)((3, -4, 5))
    assert result == reference_list(op, [3, -4, 5])
    assert type(result) is list


@pytest.mark.parametrize("op", OPS)
def test_input_list_is_left_unchanged(op):
    values = [1, 2, 3, 4.5]
    kernel(op)(values)
    assert values == [1, 2, 3, 4.5]


@pytest.mark.parametrize(
    "op, values, expected",
    [
        ("double", [2**62 - 1], [2**63 - 2]),
        ("double", [-(2**62)], [INT64_MIN]),
        ("double", [INT64_MIN // 2, INT64_MAX // 2], [INT64_MIN, INT64_MAX - 1]),
        ("square", [SQUARE_LIMIT], [SQUARE_LIMIT**2]),
        ("square", [-SQUARE_LIMIT], [SQUARE_LIMIT**2]),
        ("square", [2**31], [2**62]),
        ("double", [0], [0]),
        ("square", [-1], [1]),
    ],
)
def test_int_results_at_int64_edge_are_exact(op, values, expected):
    result = kernel(op)(values)
    assert result == expected
    assert all(type(v) is int for v in result)


@pytest.mark.parametrize(
    "op, values",
    [
        ("double", [2**62]),
        ("double", [-(2**62) - 1]),
        ("double", [INT64_MAX]),
        ("double", [INT64_MIN]),
        ("double", [2**63]),
        ("double", [-(2**63) - 1]),
        ("double", [2**64]),
        ("double", [10**30]),
        ("square", [SQUARE_LIMIT + 1]),
        ("square", [-SQUARE_LIMIT - 1]),
        ("square", [2**32]),
        ("square", [INT64_MIN]),
        ("square", [-(2**63) - 1]),
        ("square", [2**63]),
        ("double", [1, 2, 3, 2**62]),
        ("square", [0, 5, 2**40, 7]),
    ],
)
def test_int_outside_int64_raises_overflow_error(op, values):
    with pytest.raises(OverflowError):
        reference_list(op, values)  # the reference agrees this case overflows
    with pytest.raises(OverflowError):
        kernel(op)(values)


@pytest.mark.parametrize("op", OPS)
def test_overflow_leaves_the_pool_usable(op):
    with pytest.raises(OverflowError):
        kernel(op)([2**63])
    assert kernel(op)([1, 2]) == reference_list(op, [1, 2])


@pytest.mark.parametrize("op", OPS)
def test_float_list_gives_float64_results(op):
    rng = random.Random(f"floats-{op}")
    values = [rng.uniform(-1e6, 1e6) for _ in range(3000)]
    values += [0.0, -0.0, 0.1, 1e-300, 1e154, -1.5e154, 1e308, -1e308, 5e-324]
    result = kernel(op)(values)
    assert all(type(v) is float for v in result)
    expected = reference_list(op, values)
    assert result == expected
    assert [math.copysign(1.0, v) for v in result] == [
        math.copysign(1.0, v) for v in expected
    ]


def test_float_overflow_gives_infinity_not_an_error():
    assert shmaccel.double([1e308, -1e308]) == [math.inf, -math.inf]
    assert shmaccel.square([1e200]) == [math.inf]


@pytest.mark.parametrize("op", OPS)
def test_float_specials_follow_ieee(op):
    result = kernel(op)([math.inf, -math.inf, math.nan])
    assert result[0] == math.inf
    assert result[1] == (-math.inf if op == "double" else math.inf)
    assert math.isnan(result[2])


@pytest.mark.parametrize("op", OPS)
def test_mixed_int_and_float_list_gives_floats(op):
    values = [1, 2.5, -3, 0, 2**53, -7.25]
    result = kernel(op)(values)
    assert all(type(v) is float for v in result)
    assert result == reference_list(op, values)


def test_one_float_anywhere_makes_every_result_a_float():
    values = list(range(1000)) + [0.5]
    result = shmaccel.double(values)
    assert all(type(v) is float for v in result)
    assert result == [float(v) * 2.0 for v in values]


@pytest.mark.parametrize(
    "op, values, expected",
    [
        ("double", [True], [2]),
        ("double", [True, False, 3], [2, 0, 6]),
        ("square", [True, False], [1, 0]),
        ("double", [True, 0.25], [2.0, 0.5]),
    ],
)
def test_bool_counts_as_int(op, values, expected):
    result = kernel(op)(values)
    assert result == expected
    assert [type(v) for v in result] == [type(v) for v in expected]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("empty", [[], ()], ids=["list", "tuple"])
def test_empty_sequence_gives_empty_list(op, empty):
    result = kernel(op)(empty)
    assert result == []
    assert type(result) is list


def index_named(message, index):
    return re.search(rf"(?<![0-9]){index}(?![0-9])", message) is not None


@pytest.mark.parametrize(
    "op, values, index, type_name",
    [
        ("square", ["a"], 0, "str"),
        ("square", [None], 0, "NoneType"),
        ("square", [1, 2, "x"], 2, "str"),
        ("double", [1.0, 2.0, 3.0, b"x"], 3, "bytes"),
        ("double", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, [1]], 12, "list"),
        ("double", [4, 1j], 1, "complex"),
        ("square", [0.5, {}], 1, "dict"),
    ],
)
def test_non_number_element_raises_type_error_naming_index_and_type(
    op, values, index, type_name
):
    with pytest.raises(TypeError) as excinfo:
        kernel(op)(values)
    message = str(excinfo.value)
    assert index_named(message, index), f"index {index} not in {message!r}"
    assert type_name in message, f"type {type_name!r} not in {message!r}"


@pytest.mark.parametrize("op", OPS)
def test_pool_methods_apply_the_same_list_rules(pool, op):
    method = getattr(pool, op)
    assert method([1, 2, -3]) == reference_list(op, [1, 2, -3])
    assert method([1, 2.5]) == reference_list(op, [1, 2.5])
    assert method([]) == []
    with pytest.raises(OverflowError):
        method([2**63])
    with pytest.raises(TypeError):
        method([1, "x"])
    assert pool.submit(op, [7, -8]).result(timeout=30) == reference_list(op, [7, -8])


def test_large_int_list_round_trips_exactly():
    values = list(range(-50_000, 50_000))
    assert shmaccel.double(values) == [2 * v for v in values]
    assert shmaccel.square(values) == [v * v for v in values]


def test_list_call_accepts_timeout():
    assert shmaccel.double([1, 2, 3], timeout=30) == [2, 4, 6]
    assert shmaccel.square([1.5], timeout=None) == [2.25]


@pytest.mark.parametrize(
    "values",
    [
        [2**62 + 1, 3, 0.5],  # ints stored as int64 first, converted when the float comes
        [-(2**53) - 1, 2**53 + 1, 1.5],  # ...rounding as float(int) does
        [3037000500, 1.0],  # square would overflow int64, but the list is float
        [2**70, -(2**80), 0.25],  # beyond int64 before the float
        [1.0, 2**70],  # beyond int64 after it
        [0.5, True, 2],  # a bool after a float
        list(range(-500, 500)) + [1e300],  # many ints, one float at the end
    ],
)
def test_every_element_of_a_list_with_a_float_becomes_that_float(values):
    for op in OPS:
        assert kernel(op)(values) == [
            (float(v) * 2.0 if op == "double" else float(v) * float(v)) for v in values
        ], (op, values)


def test_first_bad_element_is_reported_even_after_an_overflow():
    # Type errors come before overflow errors, wherever they are in the list.
    with pytest.raises(TypeError, match="element 2"):
        shmaccel.square([1, 2**40, "x"])
    with pytest.raises(OverflowError, match="element 1"):
        shmaccel.square([1, 2**40, 3])
