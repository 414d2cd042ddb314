#!/usr/bin/env python3
"""bench_sizes.py -- how shmaccel's square and double scale with the size of the data, from
10^3 to 10^8 elements of int32, int64 and float64, against numpy, numexpr, list
comprehensions, process pools and the C limit of this machine (bench/limit.c).

For every size, dtype and op, each method (a "cell") is checked once against numpy, then
timed: calls under a millisecond in batches (time_batches), slower ones one call at a time,
taking turns with the other methods of their group (time_round_robin). Every figure is the
median with the min-max over its repeats, in seconds per call, and a throughput counting
2 * itemsize bytes per element (one read, one write). Inputs and outputs are written before
timing, so no first-touch page fault is timed, except numpy_expr's fresh result, which every
user of `x * x` pays for.

    PYTHONPATH=pyshim python3 scripts/bench_sizes.py [--quick] [--json PATH]

Imported by bench.py for measure_sizes(). It opens its process pools before it first uses
shmaccel's default pool (so the forked children hold no shmaccel session) and closes that
pool on the way out: call it outside any `with shmaccel.default_pool()` block. Needs numpy;
numexpr is optional.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from benchlib import (
    LimitHere,
    LimitServer,
    LoadMeter,
    build_c_programs,
    finish_standalone,
    fmt,
    machine_info,
    power_of_ten,
    process_alive,
    run_progress,
    shm_entries,
    summary,
    time_batches,
    time_round_robin,
)

try:
    import numpy as np
except ImportError:
    print("bench_sizes.py needs numpy to compare against: pip install numpy", file=sys.stderr)
    sys.exit(2)

SIZES = (10**3, 10**4, 10**5, 10**6, 10**7, 10**8)
QUICK_SIZES = (10**3, 10**4, 10**5, 10**6)
DTYPES = ("int32", "int64", "float64")
OPS = ("square", "double")
LIST_DTYPES = ("int64", "float64")  # what a list of Python ints or floats becomes in shmaccel
LIST_MAX_N = 10**7  # a list of 10^8 numbers takes GBs and a minute per comprehension
PROCESS_MIN_N = 10**4  # below, a process pool's round trip is all there is to see
PROCESS_MAX_N = 10**7  # above, one map pickles GBs: 10+ s a call on this class of machine
LIMIT_MIN_N = 10**5  # below, limit.c times its spin-barrier hand-off, not the kernel
HERE_MIN_N = 10**7  # below, limit_here's thread start-up (tens of µs a call) shows

# What a cell's calls are timed with: batches below FAST_CALL_S a call, single calls above
# (taking turns with the other methods of the cell in that range), and only SLOW_REPEATS of
# them above SLOW_CALL_S (taking turns among themselves), to keep the full sweep within ten
# minutes.
FAST_CALL_S = 1e-3
SLOW_CALL_S = 0.8
SLOW_REPEATS = 3

# Arrays of n elements alive at once while the array methods of one cell run: the input,
# numpy's out= and in-place arrays, the expected result, three SharedArrays (in, out, in
# place), the arena's copy of a numpy input and its result, numpy_expr's fresh result, one
# spare (an arena released while the next is made), and the C limit's two arrays (limit.c runs
# between their rounds). The process pools (pickled chunks and results) run after these are
# freed and need fewer. The margin leaves room for the rest of the machine; arenas are kept
# for reuse now (not made afresh each call), so one spare array is enough.
ARRAYS_AT_ONCE = 13
MEMORY_MARGIN = 1.25

# A rough throughput of the C limit, only to choose its --repeats.
LIMIT_GUESS_GBS = 20.0
LIMIT_MAX_REPEATS = 1000  # samples a task of a cell timed in batches, at most

# method key: (label, kind). The table and the JSON follow this order.
METHODS: dict[str, tuple[str, str]] = {
    "shmaccel_shared_inplace": ("shmaccel, SharedArray in place (out=a)", "shmaccel"),
    "shmaccel_shared_out": ("shmaccel, SharedArray out= SharedArray", "shmaccel"),
    "shmaccel_numpy": (("shmaccel, numpy array in, numpy array out (the input copied into the "
                        "arena, the result a numpy view of it)"), "shmaccel"),
    "shmaccel_list": ("shmaccel, list in, list out", "shmaccel"),
    "numpy_expr": ("numpy x*x / x*2 (allocates the result)", "peer"),
    "numpy_out": ("numpy np.multiply(..., out=y)", "peer"),
    "numpy_inplace": ("numpy np.multiply(..., out=x)", "peer"),
    "numexpr": ("numexpr.evaluate(..., out=y), all cores", "peer"),
    "list_comprehension": ("[v*v for v in lst] / [v*2 for v in lst]", "peer"),
    "mp_pool_map": ("multiprocessing.Pool(cores).map over cores chunks (pickled in and out)",
                    "peer"),
    "process_pool_executor": (("ProcessPoolExecutor(cores).map over cores chunks (pickled "
                               "in and out)"), "peer"),
    "c_limit_here_inplace": (("C limit (bench/limit.c as a library) over the in-place "
                              "SharedArray's own memory, all cores"), "limit"),
    "c_limit_here_out": (("C limit (bench/limit.c as a library) over the out= SharedArrays' "
                          "own memory, all cores"), "limit"),
    "c_limit_inplace": ("C limit (bench/limit.c), in place, all cores", "limit"),
    "c_limit_out": ("C limit (bench/limit.c), out of place, all cores", "limit"),
    "c_memcpy": ("C memcpy (bench/limit.c), all cores", "limit"),
}


@dataclass(frozen=True)
class Plan:
    """How long to measure each cell."""

    sizes: tuple[int, ...]
    cell_s: float  # aimed-for seconds of timed calls per cell
    batches: int  # samples of a fast method, each the mean of a batch of calls
    min_repeats: int  # single calls of a slow method, at least
    max_repeats: int  # and at most


FULL = Plan(sizes=SIZES, cell_s=0.3, batches=7, min_repeats=9, max_repeats=15)
QUICK = Plan(sizes=QUICK_SIZES, cell_s=0.03, batches=3, min_repeats=3, max_repeats=5)


@dataclass
class Variant:
    """One method of one cell: `check` runs it once on the cell's input and returns what it
    computed, `call` is what is timed, `reset` (if any) refills an in-place array after the
    check."""

    method: str
    check: Callable[[], Any]
    call: Callable[[], Any]
    reset: Callable[[], None] | None = None


# -- the process pools' jobs (module level, so that they pickle by name) ------------------------

def _square_chunk(chunk: np.ndarray) -> np.ndarray:
    return chunk * chunk


def _double_chunk(chunk: np.ndarray) -> np.ndarray:
    return chunk * 2


CHUNK_JOBS = {"square": _square_chunk, "double": _double_chunk}


def _noop(_: int) -> None:
    """Makes a ProcessPoolExecutor start its workers now."""


@dataclass
class ProcessPools:
    cores: int
    start_method: str
    mp_pool: Any  # multiprocessing.pool.Pool
    executor: concurrent.futures.ProcessPoolExecutor


@contextlib.contextmanager
def process_pools(cores: int) -> Iterator[ProcessPools]:
    """A multiprocessing.Pool and a ProcessPoolExecutor of `cores` workers each, started at
    once (before any shmaccel pool exists, so that no forked child inherits a session), closed
    and joined on the way out. Fork where it exists: it leaves no fork server behind."""
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods else methods[0]
    context = multiprocessing.get_context(method)
    with context.Pool(cores) as mp_pool, concurrent.futures.ProcessPoolExecutor(
            max_workers=cores, mp_context=context) as executor:
        list(executor.map(_noop, range(cores)))
        try:
            yield ProcessPools(cores, method, mp_pool, executor)
        finally:
            mp_pool.close()
            mp_pool.join()


# -- the machine --------------------------------------------------------------------------------

def mem_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{fmt(seconds * 1e6)} µs"
    if seconds < 1:
        return f"{fmt(seconds * 1e3)} ms"
    return f"{fmt(seconds)} s"


# -- the cells ----------------------------------------------------------------------------------

def make_input(n: int, dtype: str) -> np.ndarray:
    """The input of every method: int32 over its whole range (squares wrap, as in numpy),
    int64 within +-2^31 (squares fit, so that the list methods, which refuse to overflow,
    take it too), float64 in [1, 2)."""
    rng = np.random.default_rng(n)
    if dtype == "int32":
        return rng.integers(-2**31, 2**31, n, dtype=np.int32)
    if dtype == "int64":
        return rng.integers(-2**31, 2**31, n, dtype=np.int64)
    return rng.random(n) + 1.0


def inplace_values(x: np.ndarray, op: str) -> np.ndarray:
    """What in-place methods are timed on: for floats, ones to square and zeros to double,
    which stay as they are however often the op runs (never subnormals, slow on many CPUs, nor
    infinities); integers take the same time whatever they hold."""
    if x.dtype.kind != "f":
        return x.copy()
    return np.ones_like(x) if op == "square" else np.zeros_like(x)


def array_variants(pool: Any, op: str, x: np.ndarray, numexpr: Any,
                   here: LimitHere | None = None) -> list[Variant]:
    """The methods that work on arrays, all sharing the input x; with `here`, the C limit over
    the very SharedArrays that shmaccel's in-place and out= methods use, taking turns with
    them."""
    run = getattr(pool, op)
    dtype = x.dtype.name
    second: Any = x if op == "square" else 2  # x*x or x*2
    timing = inplace_values(x, op)
    y = np.full_like(x, 0)  # written now: no page fault in the timed calls
    z = timing.copy()
    a = pool.array(x)
    b = pool.zeros(len(x), dtype)
    c = pool.array(timing)
    b_view = np.frombuffer(b, dtype=x.dtype)
    c_view = np.frombuffer(c, dtype=x.dtype)
    b_view[:] = 0

    def check_shared_inplace() -> np.ndarray:
        c_view[:] = x
        run(c, out=c)
        return c_view.copy()

    def check_numpy_inplace() -> np.ndarray:
        z[:] = x
        np.multiply(z, second if op == "double" else z, out=z)
        return z.copy()

    def reset_c() -> None:
        c_view[:] = timing

    def reset_z() -> None:
        z[:] = timing

    def shared_out() -> np.ndarray:
        run(a, out=b)
        return b_view

    def numpy_out() -> np.ndarray:
        return np.multiply(x, second, out=y)

    def numpy_expr() -> np.ndarray:
        return x * second

    variants = [
        Variant("shmaccel_shared_inplace", check_shared_inplace, partial(run, c, out=c),
                reset_c),
        Variant("shmaccel_shared_out", shared_out, partial(run, a, out=b)),
        Variant("shmaccel_numpy", partial(run, x), partial(run, x)),
        Variant("numpy_expr", numpy_expr, numpy_expr),
        Variant("numpy_out", numpy_out, numpy_out),
        Variant("numpy_inplace", check_numpy_inplace,
                partial(np.multiply, z, second if op == "double" else z, out=z), reset_z),
    ]
    if numexpr is not None:
        evaluate = partial(numexpr.evaluate, "x * x" if op == "square" else "x * 2",
                           local_dict={"x": x}, out=y)
        variants.append(Variant("numexpr", evaluate, evaluate))
    if here is not None:
        n, a_at, b_at, c_at = len(x), address(a), address(b), address(c)
        here_inplace = partial(here.run, c_at, c_at, n, dtype, op, "inplace")
        here_out = partial(here.run, a_at, b_at, n, dtype, op, "out")

        def check_here_inplace() -> np.ndarray:
            c_view[:] = x
            here_inplace()
            return c_view.copy()

        def check_here_out() -> np.ndarray:
            b_view[:] = 0
            here_out()
            return b_view.copy()

        # Right after the shmaccel method over the same memory, so that the two take turns.
        variants.insert(1, Variant("c_limit_here_inplace", check_here_inplace, here_inplace,
                                   reset_c))
        variants.insert(3, Variant("c_limit_here_out", check_here_out, here_out))
    return variants


def address(shared: Any) -> int:
    """The address of a SharedArray's first element (kept valid by the SharedArray)."""
    return int(np.frombuffer(shared, dtype=np.uint8).ctypes.data)


def list_variants(pool: Any, op: str, values: list) -> list[Variant]:
    run = getattr(pool, op)

    def comprehension() -> list:
        if op == "square":
            return [v * v for v in values]
        return [v * 2 for v in values]

    return [Variant("shmaccel_list", partial(run, values), partial(run, values)),
            Variant("list_comprehension", comprehension, comprehension)]


def process_variants(pools: ProcessPools, op: str, x: np.ndarray) -> list[Variant]:
    job = CHUNK_JOBS[op]

    def mp_map() -> np.ndarray:
        return np.concatenate(pools.mp_pool.map(job, np.array_split(x, pools.cores)))

    def executor_map() -> np.ndarray:
        return np.concatenate(list(pools.executor.map(job, np.array_split(x, pools.cores))))

    return [Variant("mp_pool_map", mp_map, mp_map),
            Variant("process_pool_executor", executor_map, executor_map)]


def same(got: Any, want: np.ndarray) -> bool:
    if isinstance(got, list):
        return got == want.tolist()
    got = np.asarray(got)
    return got.dtype == want.dtype and np.array_equal(got, want)


def per_call_seconds(call: Callable[[], Any]) -> float:
    """A rough time per call (the call is already warm): one call, or the mean of a batch when
    one is too short for the clock."""
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    if elapsed >= 1e-4:
        return elapsed
    calls = 100
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def time_variants(variants: list[Variant], expected: np.ndarray, plan: Plan, cell: str,
                  after_round: Callable[[], None] | None = None) -> dict[str, dict]:
    """Checks each variant once against `expected` (raising AssertionError if it differs),
    then times it: seconds per call (benchlib.summary()) by method. `after_round` runs after
    each round of the variants timed one call at a time (the quicker group of those, or the
    only one)."""
    estimates = {}
    for variant in variants:
        start = time.perf_counter()
        got = variant.check()
        elapsed = time.perf_counter() - start
        if not same(got, expected):
            raise AssertionError(f"{variant.method} gave a wrong result for {cell}")
        del got
        if variant.reset is not None:
            variant.reset()
        # The check call warmed it up; a slow one needs no second call to be estimated,
        # unless its check did more than the call (an in-place check fills the array and
        # copies the result out: at 10^8 that put shmaccel in place among the very slow
        # methods, timed between numpy's 800 MB allocations instead of beside the limit).
        estimates[variant.method] = (
            elapsed if elapsed >= 10 * FAST_CALL_S and variant.reset is None
            else per_call_seconds(variant.call))
    seconds: dict[str, dict] = {}
    slow: dict[str, Callable[[], Any]] = {}
    very_slow: dict[str, Callable[[], Any]] = {}
    for variant in variants:
        estimate = estimates[variant.method]
        if estimate >= SLOW_CALL_S:
            very_slow[variant.method] = variant.call
        elif estimate >= FAST_CALL_S:
            slow[variant.method] = variant.call
        else:
            calls = max(1, round(plan.cell_s / (plan.batches * estimate)))
            micros = time_batches(variant.call, plan.batches, calls)
            seconds[variant.method] = summary([us / 1e6 for us in micros["samples"]])
    for group in (slow, very_slow):
        if not group:
            continue
        rounds_hook = after_round if group is slow or not slow else None
        longest = max(estimates[name] for name in group)
        if longest >= SLOW_CALL_S:
            repeats = SLOW_REPEATS
        else:
            repeats = min(max(round(plan.cell_s / longest), plan.min_repeats), plan.max_repeats)
        # Past a tenth of a second a call is its own warm-up: the check call came before.
        warmup = 0 if longest >= 0.1 else 1
        seconds.update(time_round_robin(group, repeats, warmup=warmup,
                                        after_round=rounds_hook))
    return seconds


class LimitRounds:
    """The C limit of one cell, sampled at the same moments as the methods it bounds: called
    after each round of the cell's single-call methods (time_round_robin's `after_round`), it
    takes one timed run of each task from a limit.c server (benchlib.LimitServer), in place
    last, so that it sits right before the next round's first call, shmaccel in place. A cell
    whose methods were all timed in batches (no rounds) gets about plan.cell_s of runs a task
    at the end instead. A machine whose speed drifts (this VM's memory bandwidth moves by 2x
    within minutes) then moves the limit and the methods alike. Close it (a context manager)
    to stop the server."""

    METHODS = {"inplace": "c_limit_inplace", "out": "c_limit_out", "memcpy": "c_memcpy"}

    def __init__(self, program: Path, n: int, dtype: str, op: str, plan: Plan,
                 notes: list[str]) -> None:
        self.program, self.n, self.plan, self.notes = program, n, plan, notes
        self.args = [str(n), "--dtype", dtype, "--op", op]
        self.guess_s = 2 * np.dtype(dtype).itemsize * n / (LIMIT_GUESS_GBS * 1e9)
        self.server: LimitServer | None = None

    def __call__(self) -> None:
        if self.server is None:
            self.server = LimitServer(self.program, self.args, self.notes)
            if self.server.info.get("ready") and not self.server.info.get("pinned"):
                self.notes.append(f"limit.c could not pin its threads one per CPU at "
                                  f"n={self.n}: its figures may be low")
        self.server.sample_round()

    def rows(self) -> list[tuple[str, dict]]:
        """(method, benchlib.summary() of seconds per run) of the three tasks."""
        if self.server is None or not self.server.samples["inplace"]:
            repeats = min(max(round(self.plan.cell_s / self.guess_s), self.plan.min_repeats),
                          LIMIT_MAX_REPEATS)
            for _ in range(repeats):
                self()
        assert self.server is not None
        return [(self.METHODS[task], summary(values))
                for task, values in self.server.samples.items() if values]

    def __enter__(self) -> LimitRounds:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()


# -- the sweep ----------------------------------------------------------------------------------

def planned_steps(quick: bool) -> int:
    """Progress steps of a full sweep (one per size, dtype and op)."""
    return len((QUICK if quick else FULL).sizes) * len(DTYPES) * len(OPS)


def measure_sizes(shmaccel: Any, quick: bool, notes: list[str], programs: dict[str, Path], *,
                  sizes: Sequence[int] | None = None,
                  dtypes: Sequence[str] | None = None) -> dict:
    """Times every method at every size, dtype and op (see the module's docstring); `sizes`
    and `dtypes` narrow the sweep, `programs` comes from benchlib.build_c_programs(). Returns
    {"sizes", "dtypes", "ops",
     "rows": [{"method", "label", "kind" ("shmaccel", "peer" or "limit"), "op", "dtype", "n",
               "seconds": benchlib.summary() of seconds per call (limit rows: median, min and
               max of limit.c's own runs, n of them, "samples" empty), "gbs": at the median,
               2 * itemsize bytes per element}],
     "skipped": [{"method" ("*" for all of them), "reason"}],
     "load": benchlib.LoadMeter's figures per size, "config": how it measured}.
    Notes for the reader go to `notes`. Raises AssertionError when a method computes a wrong
    result. Starts and stops its process pools, and closes shmaccel's default pool on the way
    out."""
    plan = QUICK if quick else FULL
    sizes = tuple(sizes) if sizes is not None else plan.sizes
    dtypes = tuple(dtypes) if dtypes is not None else DTYPES
    progress = run_progress()
    progress.expect(len(sizes) * len(dtypes) * len(OPS), part="sizes")
    cores = len(os.sched_getaffinity(0))
    rows: list[dict] = []
    skipped: list[dict] = []
    load: dict[str, dict] = {}

    def skip(method: str, reason: str) -> None:
        entry = {"method": method, "reason": reason}
        if entry not in skipped:
            skipped.append(entry)

    try:
        import numexpr
    except ImportError:
        numexpr = None
        skip("numexpr", "numexpr is not installed (pip install numexpr)")
        notes.append("numexpr not installed: no numexpr figures (pip install numexpr)")
    else:
        numexpr.set_num_threads(cores)
    library = programs.get("limit_here.so")
    here = LimitHere(library) if library is not None else None
    for method in ("c_limit_here_inplace", "c_limit_here_out"):
        if here is None:
            skip(method, "bench/limit.c could not be built as a library (see the notes)")
        elif any(n < HERE_MIN_N for n in sizes):
            skip(method, f"timed from {power_of_ten(HERE_MIN_N)} elements: below, starting its "
                 "threads (tens of µs a call) would weigh in")
    limit = programs.get("limit")
    if limit is None:
        for method in ("c_limit_inplace", "c_limit_out", "c_memcpy"):
            skip(method, "bench/limit.c could not be built (see the notes)")
    elif any(n < LIMIT_MIN_N for n in sizes):
        notes.append(
            f"C limit reported from {power_of_ten(LIMIT_MIN_N)} elements up: limit.c starts "
            "its threads and touches its memory before timing, so thread start-up is not in "
            "its figures, but each timed run is a spin-barrier hand-off to the other cores "
            "and back (0.5-1 µs across the vCPUs of the VM this was written on), more than the "
            "work itself below 10^5 elements (at 10^3 it is slower than one thread alone): there "
            "it would time the hand-off, not the kernel")

    config = {"quick": quick, "plan": plan.__dict__, "cores": cores,
              "fast_call_s": FAST_CALL_S, "slow_call_s": SLOW_CALL_S,
              "slow_repeats": SLOW_REPEATS, "list_max_n": LIST_MAX_N,
              "process_min_n": PROCESS_MIN_N, "process_max_n": PROCESS_MAX_N,
              "limit_min_n": LIMIT_MIN_N, "numexpr": getattr(numexpr, "__version__", None)}
    step = progress.note

    def add(method: str, op: str, dtype: str, n: int, stat: dict) -> None:
        label, kind = METHODS[method]
        gbs = 2 * np.dtype(dtype).itemsize * n / stat["median"] / 1e9
        rows.append({"method": method, "label": label, "kind": kind, "op": op, "dtype": dtype,
                     "n": n, "seconds": stat, "gbs": float(f"{gbs:.4g}")})
        step(f"  {power_of_ten(n):>4} {dtype:7} {op:6} {method:24} "
             f"{format_seconds(stat['median']):>10}/call  {gbs:8.3f} GB/s")

    def add_all(figures: dict[str, dict], op: str, dtype: str, n: int) -> None:
        for method in METHODS:
            if method in figures:
                add(method, op, dtype, n, figures[method])

    with process_pools(cores) as pools, shmaccel.default_pool() as pool:
        config.update(process_start_method=pools.start_method, pool_threads=pool.threads,
                      pool_worker_pid=pool.worker_pid)
        for n in sizes:
            with LoadMeter(load, f"n={power_of_ten(n)}"):
                for dtype in dtypes:
                    need = ARRAYS_AT_ONCE * MEMORY_MARGIN * np.dtype(dtype).itemsize * n
                    available = mem_available()
                    if available is not None and available < need:
                        reason = (f"n={power_of_ten(n)} {dtype}: needs {need / 2**30:.1f} GiB "
                                  f"available ({ARRAYS_AT_ONCE} arrays, {MEMORY_MARGIN}x margin)"
                                  f", MemAvailable is {available / 2**30:.1f} GiB")
                        notes.append(f"left out {reason}")
                        skip("*", reason)
                        progress.advance(f"sizes: left out {power_of_ten(n)} {dtype}",
                                         len(OPS))
                        continue
                    measure_cell_group(shmaccel, pool, pools, numexpr, limit, here, n, dtype,
                                       plan, notes, skip, add_all)
    return {"sizes": list(sizes), "dtypes": list(dtypes), "ops": list(OPS), "rows": rows,
            "skipped": skipped, "load": load, "config": config}


def measure_cell_group(shmaccel: Any, pool: Any, pools: ProcessPools, numexpr: Any,
                       limit: Path | None, here: LimitHere | None, n: int, dtype: str,
                       plan: Plan, notes: list[str],
                       skip: Callable[[str, str], None],
                       add_all: Callable[[dict[str, dict], str, str, int], None]) -> None:
    """Both ops at one size and dtype: the array methods (with the C limit run after each of
    their rounds), the list methods, the process pools, each group's arrays freed before the
    next is built."""
    size = power_of_ten(n)
    x = make_input(n, dtype)
    for op in OPS:
        cell = f"{op} of {size} {dtype}"
        expected = x * x if op == "square" else x * 2
        variants = array_variants(pool, op, x, numexpr, here if n >= HERE_MIN_N else None)
        rounds = (LimitRounds(limit, n, dtype, op, plan, notes)
                  if limit is not None and n >= LIMIT_MIN_N else None)
        with rounds or contextlib.nullcontext():
            figures = time_variants(variants, expected, plan, cell, after_round=rounds)
            limit_rows = rounds.rows() if rounds is not None else []
        del variants  # frees the SharedArrays before the next group

        if dtype not in LIST_DTYPES:
            skip("shmaccel_list", f"{dtype}: lists hold Python ints (int64) and floats "
                 "(float64) only")
            skip("list_comprehension", f"{dtype}: timed on int64 and float64 lists only")
        elif n > LIST_MAX_N:
            for method in ("shmaccel_list", "list_comprehension"):
                skip(method, f"above {power_of_ten(LIST_MAX_N)} elements: a list of "
                     f"{size} numbers takes GBs and minutes")
        else:
            values = x.tolist()
            figures.update(time_variants(list_variants(pool, op, values), expected, plan, cell))
            del values

        if n < PROCESS_MIN_N or n > PROCESS_MAX_N:
            for method in ("mp_pool_map", "process_pool_executor"):
                skip(method, f"timed from {power_of_ten(PROCESS_MIN_N)} to "
                     f"{power_of_ten(PROCESS_MAX_N)} elements only: below, the round trip "
                     "is all there is to see; above, one map pickles GBs (10+ s a call)")
        else:
            figures.update(time_variants(process_variants(pools, op, x), expected, plan, cell))
        del expected
        add_all(figures, op, dtype, n)

        if rounds is not None:
            add_all(dict(limit_rows), op, dtype, n)
        elif limit is not None:
            for method in ("c_limit_inplace", "c_limit_out", "c_memcpy"):
                skip(method, f"below {power_of_ten(LIMIT_MIN_N)} elements: limit.c's "
                     "spin-barrier hand-off outweighs the work (see the notes)")
        run_progress().advance(f"sizes: {cell}")


# -- the report ---------------------------------------------------------------------------------

def table(results: dict, dtype: str = "float64", op: str = "square") -> str:
    """A markdown table of one dtype and op: a row per size, a column per method (the ones
    timed), each entry the median time per call and GB/s."""
    cells = {(row["n"], row["method"]): row for row in results["rows"]
             if row["dtype"] == dtype and row["op"] == op}
    methods = [m for m in METHODS if any(method == m for _, method in cells)]
    lines = [f"{op} of {dtype}: median time per call (GB/s)\n",
             "| n | " + " | ".join(methods) + " |",
             "|---:|" + "---:|" * len(methods)]
    for n in results["sizes"]:
        entries = []
        for method in methods:
            row = cells.get((n, method))
            entries.append(f"{format_seconds(row['seconds']['median'])} ({fmt(row['gbs'])})"
                           if row else "")
        lines.append(f"| {power_of_ten(n)} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="10^3 to 10^6 elements, few repeats (well under a minute)")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="where to write the results "
                             "(default: bench/results/sizes-<host>-<YYYYMMDD-HHMMSS>.json)")
    parser.add_argument("--sizes", metavar="N,...",
                        type=lambda s: [int(float(v)) for v in s.split(",")],
                        help="only these sizes (e.g. 1e3,1e5)")
    parser.add_argument("--dtypes", metavar="DTYPE,...", type=lambda s: s.split(","),
                        help=f"only these dtypes (of {', '.join(DTYPES)})")
    args = parser.parse_args(argv)
    if args.sizes and min(args.sizes) < 1:
        parser.error("--sizes must be positive")
    if args.dtypes and not set(args.dtypes) <= set(DTYPES):
        parser.error(f"--dtypes must be among {', '.join(DTYPES)}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = datetime.now()
    wall_start = time.perf_counter()
    notes: list[str] = []
    try:
        import shmaccel
    except ImportError as e:
        print(f"cannot import shmaccel ({e}): run `make` and set PYTHONPATH=pyshim",
              file=sys.stderr)
        return 1
    shm_before = shm_entries()
    programs = build_c_programs(notes)
    results = measure_sizes(shmaccel, args.quick, notes, programs, sizes=args.sizes,
                            dtypes=args.dtypes)

    worker = results["config"]["pool_worker_pid"]
    if os.environ.get("SHMACCEL_POOL") is None and process_alive(worker):
        notes.append(f"the default pool's worker {worker} still runs after close")
    children = multiprocessing.active_children()
    if children:
        notes.append(f"child processes still running: {[p.pid for p in children]}")

    machine = {**machine_info(), "numpy": np.__version__}
    output = {"machine": machine, "started": started.isoformat(timespec="seconds"),
              "shmaccel": shmaccel.__version__, **results}
    dtype = "float64" if "float64" in results["dtypes"] else results["dtypes"][-1]
    body = table(results, dtype)
    if results["skipped"]:
        body += "\n\nSkipped:\n" + "\n".join(f"- {entry['method']}: {entry['reason']}"
                                             for entry in results["skipped"])
    finish_standalone(output, notes, kind="sizes",
                      title=f"## shmaccel size sweep{' (quick)' if args.quick else ''}: "
                            f"{machine['hostname']}, {machine['cpu_model']}, "
                            f"{machine['usable_cpus']} CPUs, Python {machine['python']}, "
                            f"numpy {machine['numpy']}",
                      body=body, shm_before=shm_before, started=started,
                      wall_start=wall_start, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
