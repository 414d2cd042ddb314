"""A small shmaccel user program, written to pass `mypy --strict` against shmaccel's stubs.

It squares and doubles lists of ints and floats, works in place on a SharedArray with out=,
uses a Pool as a context manager (the named pool given as argument if one runs, else a private
worker), with a future, an asyncio gather and map, bounds a call with timeout=, handles
shmaccel's errors, and uses numpy when it is installed. tests/test_typing.py type-checks it.

    make && PYTHONPATH=pyshim python3 examples/typed_user.py [POOL_NAME]
    MYPYPATH=pyshim mypy --strict examples/typed_user.py
"""

from __future__ import annotations

import array
import asyncio
import sys
from concurrent.futures import Future

import shmaccel

try:
    # Optional; the ignore is for a mypy run without numpy installed.
    import numpy as np  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    HAVE_NUMPY = False
else:
    HAVE_NUMPY = True


def lists() -> None:
    """Lists in, lists out: ints stay ints (int64 arithmetic), any float makes floats."""
    squares: list[int] = shmaccel.square([1, 2, 3])
    doubled: list[float] = shmaccel.double([0.5, 1.25])
    from_tuple: list[int] = shmaccel.double((True, 2))  # a tuple gives a list; bools count as 1
    assert squares == [1, 4, 9], squares
    assert doubled == [1.0, 2.5], doubled
    assert from_tuple == [2, 4], from_tuple
    try:
        shmaccel.square([2**32])
    except OverflowError as e:  # list ints never wrap around
        print(f"lists: {squares} {doubled} {from_tuple}; 2**32 squared: {e}")


def in_place(n: int) -> float:
    """(2x)^2 over a SharedArray, in place: nothing is copied to or from the worker."""
    a = shmaccel.array(range(n), dtype="float64")
    same: shmaccel.SharedArray = shmaccel.double(a, out=a)
    assert same is a
    shmaccel.square(a, out=a, timeout=10.0)
    last: float = a[n - 1]
    assert last == (2.0 * (n - 1)) ** 2, last
    total = sum(a.tolist())
    print(f"in place: {len(a)} x {a.dtype} ({a.nbytes} bytes), a[-1] = {last:g}, sum {total:g}")
    return total


def bounded_square(data: shmaccel.SharedArray, seconds: float) -> shmaccel.SharedArray | None:
    """data squared, or None when the worker does not finish within `seconds`."""
    try:
        return shmaccel.square(data, timeout=seconds)
    except TimeoutError:
        return None  # the request was cancelled: nothing arrives later


def resilient_double(values: list[float]) -> list[float]:
    """Doubles on the default pool, trying once more should its worker die meanwhile."""
    try:
        return shmaccel.double(values)
    except shmaccel.WorkerDiedError:
        return shmaccel.double(values)  # the default pool starts a new worker


def open_pool(name: str | None) -> shmaccel.Pool:
    """The named pool if it runs, else a private two-thread worker."""
    if name is not None:
        try:
            return shmaccel.Pool(name)
        except shmaccel.PoolNotFoundError as e:
            print(f"pool {name!r}: {e}; using a private worker")
    return shmaccel.Pool(threads=2)


async def squares_and_doubles(pool: shmaccel.Pool) -> tuple[list[int], list[float]]:
    """Two requests in flight at once, awaited without blocking the event loop."""
    squares, doubles = await asyncio.gather(pool.asquare([3, 4]), pool.adouble([0.25]))
    return squares, doubles


def with_pool(name: str | None) -> None:
    with open_pool(name) as pool:
        ints = array.array("i", range(5))
        doubled: array.array[int] = pool.double(ints)
        assert doubled.tolist() == [0, 2, 4, 6, 8] and doubled.typecode == "i"

        future: Future[list[float]] = pool.submit("square", [1.5, 2.5])
        squares, doubles = asyncio.run(squares_and_doubles(pool))
        mapped: list[list[int]] = pool.map("double", [[1, 2], [3]])
        assert future.result(timeout=10) == [2.25, 6.25]
        assert (squares, doubles, mapped) == ([9, 16], [0.5], [[2, 4], [6]])

        stats = pool.stats()
        kind = f"named {pool.name!r}" if pool.name else "private"
        print(f"pool: {kind}, {pool.threads} threads, worker pid {pool.worker_pid}, "
              f"{stats['client_requests']} requests from here")
    assert pool.closed


def with_numpy() -> None:
    """numpy arrays keep their dtype and shape; a SharedArray is a zero-copy numpy view."""
    if not HAVE_NUMPY:
        print("numpy: not installed, skipped")
        return
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = shmaccel.square(x)
    assert y.shape == (3, 4) and y.dtype == np.float32
    assert bool((y == x * x).all())
    shared = shmaccel.zeros(4, np.int16)
    view = np.asarray(shared)
    view[:] = [1, 2, 3, 4]
    shmaccel.double(shared, out=shared)
    assert shared.tolist() == [2, 4, 6, 8]
    print(f"numpy: {y.dtype} {y.shape} squared; int16 SharedArray doubled: {view.tolist()}")


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else None
    try:
        lists()
        in_place(100_000)
        big = shmaccel.zeros(2_000_000)
        quick = bounded_square(big, 0.0)
        ample = bounded_square(big, 30.0)
        assert ample is not None and len(ample) == len(big)
        print(f"timeout: 0 s {'was enough' if quick is not None else 'timed out'}, "
              f"30 s was enough")
        assert resilient_double([1.0, 2.0]) == [2.0, 4.0]
        with_pool(name)
        with_numpy()
    except shmaccel.Error as e:  # no worker program, pool refused us, ...
        print(f"shmaccel: {e}", file=sys.stderr)
        return 1
    print(f"shmaccel {shmaccel.__version__}: all correct on {shmaccel.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
