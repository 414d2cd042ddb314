"""Many Python threads calling at once: 64 threads x 200 calls of mixed sizes, ops, containers
and pools, every result checked against the pure-Python reference."""

import array
import random
import threading
import time
from dataclasses import dataclass

import shmaccel

from conftest import DTYPE_BY_NAME, OPS, reference

THREADS = 64
CALLS_PER_THREAD = 200
SIZES = (1, 2, 7, 63, 64, 65, 1000, 4097, 10_007, 65_536, 100_000)
SIZE_WEIGHTS = (16, 8, 16, 8, 8, 8, 10, 4, 2, 1, 1)
BUFFER_DTYPES = ("int32", "uint8", "float64")  # passed as array.array
SHARED_DTYPES = ("int16", "float32")  # passed as SharedArray


@dataclass
class Case:
    kind: str  # "list_int", "list_float", "array", "shared"
    op: str
    dtype: str
    source: object  # list or array.array
    data: object  # what is passed in (list, array.array or SharedArray)
    expected: object  # list, or bytes of the expected buffer

    def describe(self):
        return f"{self.kind} {self.dtype} {self.op} n={len(self.source)}"


def random_values(dt, size, rng):
    if dt.is_float:
        return array.array(dt.typecode, [rng.uniform(-1e3, 1e3) for _ in range(size)])
    return array.array(dt.typecode, [rng.randint(dt.min, dt.max) for _ in range(size)])


def reference_bytes(op, values, dt):
    return array.array(dt.typecode, [reference(op, v, dt) for v in values]).tobytes()


def build_cases(rng):
    """Inputs of every size, kind and op with their expected results, and how often each
    should be picked (small calls often, the largest rarely)."""
    int64, float64 = DTYPE_BY_NAME["int64"], DTYPE_BY_NAME["float64"]
    cases, weights = [], []
    for size, weight in zip(SIZES, SIZE_WEIGHTS, strict=True):
        ints = [rng.randint(-3_000_000_000, 3_000_000_000) for _ in range(size)]
        floats = [rng.uniform(-1e6, 1e6) for _ in range(size)]
        arrays = {
            name: random_values(DTYPE_BY_NAME[name], size, rng)
            for name in BUFFER_DTYPES
        }
        shared = {
            name: random_values(DTYPE_BY_NAME[name], size, rng)
            for name in SHARED_DTYPES
        }
        for op in OPS:
            expected_ints = [reference(op, v, int64) for v in ints]
            cases.append(Case("list_int", op, "int64", ints, ints, expected_ints))
            expected_floats = [reference(op, v, float64) for v in floats]
            cases.append(
                Case("list_float", op, "float64", floats, floats, expected_floats)
            )
            for name, values in arrays.items():
                expected = reference_bytes(op, values, DTYPE_BY_NAME[name])
                cases.append(Case("array", op, name, values, values, expected))
            for name, values in shared.items():
                expected = reference_bytes(op, values, DTYPE_BY_NAME[name])
                data = shmaccel.array(values, dtype=name)
                cases.append(Case("shared", op, name, values, data, expected))
        weights += [weight] * (len(cases) - len(weights))
    return cases, weights


def call(case, route, pool):
    """Runs case through route; returns the object that must hold the result."""
    if route == "in_place":
        if case.kind == "shared":
            target = shmaccel.array(case.source, dtype=case.dtype)
        else:
            target = array.array(case.source.typecode, case.source)
        kernel = getattr(shmaccel if len(case.source) % 2 else pool, case.op)
        result = kernel(target, out=target)
        assert result is target, "in-place call did not return out"
        return result
    if route == "module":
        return getattr(shmaccel, case.op)(case.data)
    if route == "pool":
        return getattr(pool, case.op)(case.data)
    return pool.submit(case.op, case.data).result(timeout=120)


def check(case, result):
    if case.kind.startswith("list"):
        assert type(result) is list, type(result)
        assert result == case.expected, "wrong list result"
    elif case.kind == "array":
        assert (
            isinstance(result, array.array) and result.typecode == case.source.typecode
        )
        assert result.tobytes() == case.expected, "wrong array.array result"
    else:
        assert isinstance(result, shmaccel.SharedArray) and result.dtype == case.dtype
        assert memoryview(result).tobytes() == case.expected, "wrong SharedArray result"


def test_64_threads_of_mixed_calls_all_get_correct_results(pool):
    cases, weights = build_cases(random.Random(64))
    barrier = threading.Barrier(THREADS)
    errors = []
    done = [0] * THREADS

    def worker(index):
        rng = random.Random(1000 + index)
        try:
            barrier.wait(60)
            for _ in range(CALLS_PER_THREAD):
                case = rng.choices(cases, weights)[0]
                routes = ["module", "pool", "submit"]
                if not case.kind.startswith("list"):
                    routes.append("in_place")
                route = rng.choice(routes)
                try:
                    check(case, call(case, route, pool))
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(
                        f"thread {index}: {case.describe()} via {route}: {exc!r}"
                    )
                    if len(errors) > 50:
                        return
                done[index] += 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"thread {index}: {exc!r}")

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, 240 - (time.monotonic() - started)))
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not hung, (
        f"threads still running after 240 s: {hung[:10]} (calls done: {sum(done)})"
    )
    assert errors == [], f"{len(errors)} failures, first: " + "\n".join(errors[:10])
    assert sum(done) == THREADS * CALLS_PER_THREAD


def test_threads_each_with_their_own_private_pool(make_pool):
    errors = []
    lock = threading.Lock()

    def worker(index):
        try:
            with lock:
                p = make_pool(threads=1)
            values = array.array("q", range(index * 1000, index * 1000 + 5000))
            for _ in range(20):
                shared = shmaccel.array(values, pool=p)
                assert p.square(shared, out=shared) is shared
                assert shared.tolist() == [v * v for v in values]
                assert p.double(values).tolist() == [2 * v for v in values]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"thread {index}: {exc!r}")

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "threads hung"
    assert errors == []


def test_concurrent_calls_on_one_shared_input_do_not_interfere(pool):
    values = array.array("d", [float(v) for v in range(200_000)])
    shared = shmaccel.array(values, pool=pool)
    expected = {
        op: array.array(
            "d", [reference(op, v, DTYPE_BY_NAME["float64"]) for v in values]
        ).tobytes()
        for op in OPS
    }
    errors = []

    def worker(index):
        op = OPS[index % 2]
        try:
            for _ in range(10):
                result = getattr(pool, op)(shared)
                if memoryview(result).tobytes() != expected[op]:
                    errors.append(f"thread {index}: wrong {op} result")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"thread {index}: {exc!r}")

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "threads hung"
    assert errors == []
    assert memoryview(shared).tobytes() == values.tobytes(), "shared input was modified"
