#!/usr/bin/env python3
"""shmaccel demo: results, the GIL staying free during a long call, and time against numpy
and a plain Python loop. Run it with `make demo` (which builds everything first)."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable

import shmaccel

from progress import Progress

try:
    import numpy as np
except ImportError:  # numpy is optional for shmaccel and for this demo
    np = None  # type: ignore[assignment]

N = 10**7


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def counter_rate(seconds: float, busy=None) -> float:
    """Increments per second of a Python thread counting while `busy` runs (or alone)."""
    stop = threading.Event()
    count = 0

    def count_up():
        nonlocal count
        while not stop.is_set():
            count += 1

    thread = threading.Thread(target=count_up)
    t0 = time.perf_counter()
    thread.start()
    if busy is None:
        time.sleep(seconds)
    else:
        while time.perf_counter() - t0 < seconds:
            busy()
    stop.set()
    thread.join()
    return count / (time.perf_counter() - t0)


def main() -> int:
    pool = shmaccel.default_pool()
    print(f"shmaccel {shmaccel.__version__}: worker pid {pool.worker_pid}, "
          f"{pool.threads} pool threads, {shmaccel.cpu_count()} CPUs\n")

    print("Results")
    print(f"  square([1, 2, 3])          = {shmaccel.square([1, 2, 3])}")
    print(f"  double([0.5, -1.25])       = {shmaccel.double([0.5, -1.25])}")
    small = shmaccel.array([100, -100, 127], dtype="int8")
    print(f"  square(int8 [100,-100,127]) = {shmaccel.square(small).tolist()}  (wraps like numpy)")
    try:
        shmaccel.double([2**62])
    except OverflowError as e:
        print(f"  double([2**62])            -> OverflowError: {e}")

    print(f"\nOne call on {N:,} float64 in shared memory")
    data = shmaccel.array(range(N), dtype="float64")
    out = shmaccel.empty(N)
    shmaccel.square(data, out=out)
    checks = [0, 1, N // 2, N - 1]
    ok = all(out[i] == float(i) * float(i) for i in checks)
    print(f"  square: out[{N - 1}] = {out[N - 1]:.6g}  ({'correct' if ok else 'WRONG'})")

    print("\nThe GIL is free while the worker computes")
    solo = counter_rate(0.5)
    during = counter_rate(0.5, busy=lambda: shmaccel.square(data, out=out))
    print(f"  a Python thread counts {solo:,.0f}/s alone and {during:,.0f}/s "
          f"({100 * during / solo:.0f} %) while the main thread calls square() back to back")

    print(f"\nTime for square of {N:,} float64 (median of 5)")
    timed: list[tuple[str, Callable[[], object], int, float]] = [
        ("shmaccel, SharedArray, out=", lambda: shmaccel.square(data, out=out), 5, 1.0),
        ("shmaccel, SharedArray, in place", lambda: shmaccel.square(out, out=out), 5, 1.0)]
    if np is not None:
        x = np.arange(N, dtype=np.float64)
        y = np.empty_like(x)
        timed.append(("numpy  np.multiply(x, x, out=y)", lambda: np.multiply(x, x, out=y), 5, 1.0))
        timed.append(("shmaccel on a numpy array (copy in)", lambda: shmaccel.square(x), 5, 1.0))
    else:
        print("  (numpy not installed: its row is skipped; pip install numpy)")
    sample = list(range(10**6))
    timed.append(("plain Python loop (10^6, scaled x10)", lambda: [v * v for v in sample], 3,
                  N / 10**6))
    rows = []
    with Progress("timing", total=len(timed), log_lines=False) as progress:
        for label, call, repeats, scale in timed:
            rows.append((label, best_of(call, repeats) * scale))
            progress.advance(label.strip())
    base = rows[0][1]
    for label, secs in rows:
        print(f"  {label:<38} {secs * 1e3:9.2f} ms   {secs / base:7.2f}x")
    pool.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
