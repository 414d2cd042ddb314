#!/usr/bin/env python3
"""bench.py -- shmaccel's speed against numpy, a process pool and the C limits of this machine.

Builds the C yardsticks in bench/ (pingpong: the round trip between two processes over
semaphores and over spinning; limit: `square` of float64 on every core in plain C), then times,
in the same run:

  * the round trip of a 1,000-element square on a SharedArray, in the default state (the worker
    spins briefly after each job, the client spins adaptively before blocking) and when the pool
    must block (Pool(threads=1), 200 us of sleep before each call, so the worker is back asleep
    on its semaphore), against the ping-pong floors;
  * numpy's own call at 1,000 elements and a ProcessPoolExecutor round trip, for scale;
  * square of 10^7 float64: shmaccel on SharedArrays (out of place and in place) and on a numpy
    array (copied in), numpy out of place and in place, numexpr if installed, the C limit;
  * double() of a list of 10^5 ints against a list comprehension.

Big operations are timed one call at a time, the variants taking turns, with a run of the C
limit (on all CPUs and on one) after each round, so that a machine whose speed drifts slows
them all alike; small calls are timed in batches of many calls, each batch giving one
per-call figure. Every figure is reported as the median with the min-max over its
repeats. Alongside, it records what the figures hinge on (how busy the rest of the machine was,
which CPUs the worker's threads ran on and for how long) and lists each figure far from what
the design predicts with its likeliest reason. Prints markdown tables (figures, ratios, then
anomalies) and writes everything with the machine's description to
bench/results/<host>-<YYYYMMDD-HHMMSS>.json (or --json PATH), and a plot next to it when
matplotlib is installed.

    PYTHONPATH=pyshim python3 scripts/bench.py [--quick] [--json PATH] [--size N]

Needs numpy (exit status 2 without it); numexpr and matplotlib are optional.
"""

from __future__ import annotations

import argparse
import array
import concurrent.futures
import gc
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench_goals import evaluate as evaluate_goals
from bench_goals import goals_table
from bench_plots import markdown_tables, plot_all
from benchlib import (
    C_FLAGS,
    CLK_TCK,
    LOAD_MIN_WALL_S,
    RESULTS_DIR,
    LimitServer,
    LoadMeter,
    build_c_programs,
    fmt,
    inverted,
    machine_info,
    power_of_ten,
    process_alive,
    run_c_program,
    run_progress,
    shm_entries,
    stat_fields,
    summary,
    time_batches,
    time_batches_in_turns,
    time_round_robin,
    write_json,
)

# The sections of a run, in the order they run (--only picks some).
SECTIONS = ("core", "sizes", "concurrency", "steady")
# Progress steps of the core section (measure_core's progress.advance calls).
CORE_STEPS = 7

SMALL_N = 1000
LIST_N = 10**5
BLOCKING_SLEEP_S = 200e-6
LINGER_PROBE_CALLS = 5000  # back-to-back calls before timing how long the worker stays busy
BYTES_PER_ELEM = 16  # square of float64: 8 read + 8 written, in place or not (as limit.c)

# Above this factor between an observed ratio and what the design predicts, the run says so.
ANOMALY_FACTOR = 3.0

try:
    import numpy as np
except ImportError:
    print("bench.py needs numpy to compare against: pip install numpy", file=sys.stderr)
    sys.exit(2)


@dataclass(frozen=True)
class Plan:
    """How much to repeat each measurement."""

    big_repeats: int  # timed calls of each 10^7-element operation
    small_batches: int  # batches of small calls
    small_calls: int  # calls per batch at 1,000 elements
    blocking_calls: int  # calls per batch when the pool must block (each after a sleep)
    ppe_calls: int  # ProcessPoolExecutor round trips per batch
    list_calls: int  # calls per batch for the list benchmark
    pingpong_args: tuple[str, ...]
    contention_s: float  # back-to-back calls while sampling who is busy


FULL = Plan(big_repeats=15, small_batches=15, small_calls=2000, blocking_calls=500,
            ppe_calls=300, list_calls=10, pingpong_args=("--repeats", "7", "--iters", "20000"),
            contention_s=0.5)
QUICK = Plan(big_repeats=3, small_batches=3, small_calls=500, blocking_calls=150,
             ppe_calls=100, list_calls=3, pingpong_args=("--repeats", "3", "--iters", "5000"),
             contention_s=0.2)


def worker_threads_near(worker_pid: int) -> tuple[int, bool] | None:
    """(runnable threads of the worker, whether one of them is on the CPU this thread runs on
    right now), or None if /proc cannot tell."""
    try:
        mine = int(stat_fields(f"/proc/self/task/{threading.get_native_id()}/stat")[36])
        runnable, same = 0, False
        for tid in os.listdir(f"/proc/{worker_pid}/task"):
            fields = stat_fields(f"/proc/{worker_pid}/task/{tid}/stat")
            if fields[0] == "R":
                runnable += 1
                same = same or int(fields[36]) == mine
    except (OSError, IndexError, ValueError):
        return None
    return runnable, same


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds used so far by each thread of `pid` (empty if it is gone)."""
    seconds = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            fields = stat_fields(f"/proc/{pid}/task/{tid}/stat")
            seconds[tid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        pass
    return seconds


def wait_until_idle(pid: int, timeout_s: float = 5.0, window_s: float = 0.1) -> float | None:
    """Waits until the worker `pid` uses under 10% of a CPU over a window. Returns roughly how
    long it stayed busy (0.0 if idle at once), or None if still busy after timeout_s."""
    start = time.perf_counter()
    before = sum(thread_cpu_seconds(pid).values())
    while time.perf_counter() - start < timeout_s:
        time.sleep(window_s)
        now = sum(thread_cpu_seconds(pid).values())
        if now - before < 0.1 * window_s:
            return round(max(time.perf_counter() - start - window_s, 0.0), 2)
        before = now
    return None


def contention(call: Callable[[], Any], worker_pid: int, seconds: float) -> dict:
    """Runs `call` back to back for `seconds` and reports who kept a CPU: the client (exact,
    from process_time), each worker thread (from /proc, 10 ms ticks), and, sampled every 500
    calls, how many worker threads were runnable and whether one shared our CPU."""
    samples = []
    calls = 0
    worker_before = thread_cpu_seconds(worker_pid)
    client_before = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            call()
        calls += 500
        samples.append(worker_threads_near(worker_pid))
    wall = time.perf_counter() - start
    client = (time.process_time() - client_before) / wall
    worker_after = thread_cpu_seconds(worker_pid)
    threads = sorted(((worker_after[t] - worker_before.get(t, 0.0)) / wall for t in worker_after),
                     reverse=True)
    known = [s for s in samples if s is not None]
    return {
        "wall_s": round(wall, 3),
        "us_per_call": wall / calls * 1e6,
        "client_cpus": round(client, 2),
        "worker_thread_cpus": [round(t, 2) for t in threads],
        "runnable_worker_threads": (round(statistics.fmean(r for r, _ in known), 2)
                                    if known else None),
        "same_cpu_fraction": (round(sum(same for _, same in known) / len(known), 2)
                              if known else None),
    }


def _schedstat(pid: int) -> dict[str, tuple[int, int, int]]:
    """Per thread of `pid`: (ns spent running, ns spent waiting on a run queue, the CPU it
    last ran on) so far."""
    stats = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, wait_ns = f.read().split()[:2]
            cpu = stat_fields(f"/proc/{pid}/task/{tid}/stat")[36]
            stats[tid] = (int(run_ns), int(wait_ns), int(cpu))
    except (OSError, ValueError, IndexError):
        pass
    return stats


class WorkerProbe:
    """For each call of the named variants, how long each worker thread ran and waited for a
    CPU (from /proc schedstat, in ns), read just outside the call's timing: whether a big job
    really ran on every pool thread, or one of them sat behind another on the same CPU."""

    def __init__(self, pid: int, names: set[str], gigabytes: float) -> None:
        self.pid, self.names, self.gigabytes = pid, names, gigabytes
        self.start: dict[str, tuple[int, int, int]] = {}
        self.calls: dict[str, list[dict]] = {name: [] for name in names}

    def before(self, name: str) -> None:
        if name in self.names:
            self.start = _schedstat(self.pid)

    def after(self, name: str, seconds: float) -> None:
        if name not in self.names:
            return
        deltas = []
        for tid, (run, wait, cpu) in _schedstat(self.pid).items():
            run0, wait0, _ = self.start.get(tid, (0, 0, 0))
            if run > run0 or wait > wait0:
                deltas.append(((run - run0) / 1e3, (wait - wait0) / 1e3, cpu))
        deltas.sort(reverse=True)
        self.calls[name].append({"gbs": round(self.gigabytes / seconds, 2),
                                 "run_us": [round(r) for r, _, _ in deltas],
                                 "wait_us": [round(w) for _, w, _ in deltas],
                                 "last_cpu": [cpu for _, _, cpu in deltas]})

    def result(self) -> dict:
        """Per variant: the calls, and the median GB/s of those where the second busiest
        thread ran at least half as long as the busiest ("shared": both threads worked) and
        of the others ("alone")."""
        out = {}
        for name, calls in self.calls.items():
            shared = [c["gbs"] for c in calls if len(c["run_us"]) > 1
                      and c["run_us"][1] >= 0.5 * c["run_us"][0]]
            alone = [c["gbs"] for c in calls if not (len(c["run_us"]) > 1
                                                     and c["run_us"][1] >= 0.5 * c["run_us"][0])]
            out[name] = {
                "calls": calls,
                "shared_calls": len(shared),
                "shared_median_gbs": statistics.median(shared) if shared else None,
                "alone_calls": len(alone),
                "alone_median_gbs": statistics.median(alone) if alone else None,
            }
        return out


def all_threads_sleeping(pid: int) -> bool | None:
    """True if no thread of `pid` is running (state R), None if /proc cannot tell."""
    try:
        states = [stat_fields(f"/proc/{pid}/task/{tid}/stat")[0]
                  for tid in os.listdir(f"/proc/{pid}/task")]
    except (OSError, IndexError):
        return None
    return all(s != "R" for s in states)


# -- the measurements -------------------------------------------------------------------------

def _trivial() -> None:
    """The job sent to the ProcessPoolExecutor: nothing at all."""


def measure_process_pool(plan: Plan) -> tuple[dict, str]:
    """Round trip of ProcessPoolExecutor.submit(f).result() for a trivial f, in microseconds.
    Run before any shmaccel pool exists, so that a forked child inherits no session. Fork is
    preferred where it exists: it leaves no fork server or resource tracker running after."""
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods else methods[0]
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        def round_trip() -> None:
            executor.submit(_trivial).result()

        stat = time_batches(round_trip, plan.small_batches, plan.ppe_calls)
    return stat, method


def measure_single_thread_pool(shmaccel: Any, plan: Plan, x: Any, pids: list[int]) -> dict:
    """A Pool(threads=1) at 1,000 elements, twice.

    Blocking: each call follows a 200 us sleep (the worker spins for 50 us after a job, so it
    is back asleep on its semaphore) and only the call is timed. Per batch: the mean, like the
    other small-call figures; also the median and spread of all single calls.
    Back to back: as the default round trip, but with one pool thread, which cannot compete
    with the client for a CPU; then how long the worker stays busy once the calls stop."""
    with shmaccel.Pool(threads=1) as pool:
        pids.append(pool.worker_pid)
        a = pool.array(x)
        b = pool.empty(len(x))
        square = pool.square
        sleep = time.sleep
        clock = time.perf_counter_ns
        # Is the worker really asleep when a call starts? Sampled apart from the timed calls.
        asleep = []
        for _ in range(20):
            square(a, out=b)
            sleep(BLOCKING_SLEEP_S)
            asleep.append(all_threads_sleeping(pool.worker_pid))
        for _ in range(max(plan.blocking_calls // 10, 20)):
            sleep(BLOCKING_SLEEP_S)
            square(a, out=b)
        batch_means, every_call = [], []
        gc.collect()
        gc.disable()
        try:
            for _ in range(plan.small_batches):
                calls = []
                for _ in range(plan.blocking_calls):
                    sleep(BLOCKING_SLEEP_S)
                    start = clock()
                    square(a, out=b)
                    calls.append((clock() - start) / 1e3)
                batch_means.append(statistics.fmean(calls))
                every_call.extend(calls)
        finally:
            gc.enable()
        if not np.array_equal(np.frombuffer(b, dtype=np.float64), x * x):
            raise AssertionError("Pool(threads=1).square gave a wrong result")
        call = partial(square, a, out=b)
        back_to_back = time_batches(call, plan.small_batches, plan.small_calls)
        # How long the worker stays busy after a known number of back-to-back calls (the
        # leftovers of the batches above are waited out first).
        wait_until_idle(pool.worker_pid)
        for _ in range(LINGER_PROBE_CALLS):
            call()
        linger = wait_until_idle(pool.worker_pid)
        busy = contention(call, pool.worker_pid, plan.contention_s)
        del a, b, call
    every_call.sort()
    known = [s for s in asleep if s is not None]
    return {
        "back_to_back": back_to_back,
        "contention": busy,
        "linger_s": linger,
        "linger_probe_calls": LINGER_PROBE_CALLS,
        "stat": summary(batch_means),
        "single_call_us": {
            "median": statistics.median(every_call),
            "p10": every_call[len(every_call) // 10],
            "p90": every_call[len(every_call) * 9 // 10],
            "min": every_call[0],
            "max": every_call[-1],
            "n": len(every_call),
        },
        "worker_asleep_fraction": sum(known) / len(known) if known else None,
    }


def measure_default_rtt(shmaccel: Any, plan: Plan, x: Any, worker_pid: int) -> dict:
    """Round trip of shmaccel.square(a, out=b) at 1,000 elements on the default pool, back to
    back, so the worker is still spinning from the last call, its batches taking turns with
    numpy's np.multiply(x, x, out=y) on the same data ("numpy": goal 2 is their ratio); then
    who keeps which CPU busy meanwhile (a worker thread on the client's CPU turns each call
    into a hand-off on one CPU), and how long the worker stays busy once the calls stop."""
    a = shmaccel.array(x)
    b = shmaccel.empty(len(x))
    y = np.empty_like(x)
    call = partial(shmaccel.square, a, out=b)
    stats = time_batches_in_turns({"shmaccel": call, "numpy": partial(np.multiply, x, x, out=y)},
                                  plan.small_batches, plan.small_calls)
    if not np.array_equal(np.frombuffer(b, dtype=np.float64), x * x):
        raise AssertionError("shmaccel.square(a, out=b) gave a wrong result")
    busy = contention(call, worker_pid, plan.contention_s)
    return {"stat": stats["shmaccel"], "numpy": stats["numpy"], "contention": busy,
            "linger_s": wait_until_idle(worker_pid)}


class LimitSampler:
    """The C limit on all CPUs and on one, sampled between the rounds of what it bounds: each
    call takes one timed run of every task from two limit.c servers (benchlib.LimitServer),
    in place last, right before the next round's first calls. Close it (a context manager)
    to stop the servers."""

    KEYS = {"inplace": "square_inplace_gbs", "out": "square_out_gbs", "memcpy": "memcpy_gbs"}

    def __init__(self, program: Path | None, n: int, notes: list[str]) -> None:
        self.program, self.n, self.notes = program, n, notes
        self.servers: dict[str, LimitServer] = {}

    def __call__(self) -> None:
        if self.program is None:
            return
        if not self.servers:
            for name, extra in (("all", []), ("one", ["--threads", "1"])):
                self.servers[name] = LimitServer(self.program, [str(self.n), *extra],
                                                 self.notes)
        for server in self.servers.values():
            server.sample_round()

    def result(self, name: str) -> dict:
        """For the runs on all CPUs ("all") or one ("one"): per key, the summary of GB/s
        over the samples, plus the thread count and whether the threads were pinned."""
        server = self.servers.get(name)
        if server is None or not server.samples["inplace"]:
            return {}
        gb = BYTES_PER_ELEM * self.n / 1e9
        out: dict = {self.KEYS[task]: summary([gb / s for s in values])
                     for task, values in server.samples.items() if values}
        out["threads"] = server.info.get("threads")
        out["pinned"] = bool(server.info.get("pinned"))
        return out

    def __enter__(self) -> LimitSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers.values():
            server.close()


def measure_big(shmaccel: Any, plan: Plan, n: int, *, limit: LimitSampler, probe: WorkerProbe,
                notes: list[str]) -> dict[str, dict]:
    """Seconds per square of n float64 for each variant, taking turns, with a run of the C
    limit after each round; the default pool must be open. Every result is checked once,
    outside the timing."""
    rng = np.random.default_rng(1)
    # Inputs in [1, 2) out of place; ones in place, which square to themselves, so that
    # repeated runs never reach subnormals (slow on many CPUs) or overflow. Every array is
    # written before timing, so no first-touch page fault is timed.
    x = rng.random(n) + 1.0
    expected = x * x
    y = np.zeros(n)
    ones = np.ones(n)
    a = shmaccel.array(x)
    b = shmaccel.zeros(n)
    c = shmaccel.array(ones)

    def shmaccel_on_numpy() -> None:
        # The result is a numpy view of the arena; dropped at once, its block returns to the
        # arena before the next call, as in a loop that does not keep its results.
        shmaccel.square(x)

    variants: dict[str, Callable[[], Any]] = {
        "shmaccel_sharedarray_out": partial(shmaccel.square, a, out=b),
        "shmaccel_sharedarray_inplace": partial(shmaccel.square, c, out=c),
        "shmaccel_numpy_in": shmaccel_on_numpy,
        "numpy_out": partial(np.multiply, x, x, out=y),
        "numpy_inplace": partial(np.multiply, ones, ones, out=ones),
    }
    threads = len(os.sched_getaffinity(0))
    ne_out = np.zeros(n)
    try:
        import numexpr
    except ImportError:
        notes.append("numexpr not installed: no numexpr comparison (pip install numexpr)")
    else:
        numexpr.set_num_threads(threads)
        variants["numexpr_out"] = partial(numexpr.evaluate, "x * x", local_dict={"x": x},
                                          out=ne_out)

    figures = time_round_robin(variants, plan.big_repeats, after_round=limit, observer=probe)

    checks = {
        "shmaccel.square(a, out=b)": np.frombuffer(b, dtype=np.float64),
        "shmaccel.square(c, out=c)": np.frombuffer(c, dtype=np.float64),
        "shmaccel.square(ndarray)": shmaccel.square(x),
        "np.multiply(x, x, out=y)": y,
    }
    if "numexpr_out" in figures:
        checks["numexpr"] = ne_out
        figures["numexpr_out"]["threads"] = threads
    for label, got in checks.items():
        want = ones if label.endswith("(c, out=c)") else expected
        if not np.array_equal(got, want):
            raise AssertionError(f"{label} gave a wrong result")
    return figures


def measure_lists(shmaccel: Any, plan: Plan) -> dict[str, dict]:
    values = list(range(LIST_N))
    if shmaccel.double(values) != [v * 2 for v in values]:
        raise AssertionError("shmaccel.double(list) gave a wrong result")

    def comprehension() -> list:
        return [v * 2 for v in values]

    # A floor under any list-in, list-out call, whatever computes it: making a new int object
    # for every result, with CPython's own C loop for that (array.tolist()). Reading the
    # input comes on top.
    doubled = array.array("q", [v * 2 for v in values])

    # Taking turns: goal 3 is the ratio of the first two, its bound that of the last two.
    return time_batches_in_turns({"shmaccel_double_list": partial(shmaccel.double, values),
                                  "comprehension_double_list": comprehension,
                                  "list_floor_make": doubled.tolist},
                                 max(plan.small_batches, 7), plan.list_calls)


# -- the report -------------------------------------------------------------------------------

def figure_row(label: str, stat: dict | None, unit: str) -> str:
    if stat is None:
        return f"| {label} | n/a | | {unit} |"
    return f"| {label} | {fmt(stat['median'])} | {fmt(stat['min'])} – {fmt(stat['max'])} | {unit} |"


def ratio(num: dict | None, den: dict | None) -> float | None:
    if num is None or den is None or not den["median"]:
        return None
    return num["median"] / den["median"]


def pct(part: dict | None, whole: dict | None) -> float | None:
    r = ratio(part, whole)
    return None if r is None else 100 * r


def scaled(stat: dict | None, factor: float) -> dict | None:
    if stat is None:
        return None
    return {k: (v * factor if k in ("median", "min", "max") else v) for k, v in stat.items()}


def build_report(results: dict) -> str:
    """The markdown tables: figures, then ratios (which it also stores in results)."""
    f = results["figures"]
    n = results["config"]["size"]
    size = power_of_ten(n)
    gb = BYTES_PER_ELEM * n / 1e9
    pp = results.get("pingpong") or {}
    lim, lim1 = results["limit"], results["limit_1thread"]
    lim_threads = lim.get("threads", "?")

    def gbs(key: str) -> dict | None:
        stat = f.get(key)
        return inverted(stat, gb) if stat else None

    rows = ["| measurement | median | min – max | unit |", "|---|---:|---:|---|"]
    add = rows.append
    add(figure_row("sem ping-pong round trip, unpinned (C)", pp.get("sem_rtt_us"), "µs"))
    add(figure_row("sem ping-pong, both on one CPU (C)", pp.get("sem_same_cpu_rtt_us"), "µs"))
    add(figure_row("sem ping-pong, on two CPUs (C)", pp.get("sem_cross_cpu_rtt_us"), "µs"))
    add(figure_row("sem ping-pong, cold: 200 µs sleep before each, unpinned (C)",
                   pp.get("sem_cold_rtt_us"), "µs"))
    add(figure_row("sem ping-pong, cold, on two CPUs (C)", pp.get("sem_cold_cross_cpu_rtt_us"),
                   "µs"))
    add(figure_row("spin ping-pong round trip (C)", pp.get("spin_rtt_us"), "µs"))
    add(figure_row(f"shmaccel.square(a, out=b) 1e3 SharedArray, default pool "
                   f"({results['pools'].get('default_threads', '?')} threads)",
                   f.get("rtt_default_us"), "µs/call"))
    add(figure_row("same, Pool(threads=1), back to back", f.get("rtt_1thread_us"), "µs/call"))
    add(figure_row("same, Pool(threads=1) after 200 µs sleep (blocking; batch mean)",
                   f.get("rtt_blocking_us"), "µs/call"))
    single = results.get("blocking_single_call_us")
    if single:
        add(f"| ↳ blocking, single calls: median (p10 – p90) | {fmt(single['median'])} | "
            f"{fmt(single['p10'])} – {fmt(single['p90'])} | µs/call |")
    add(figure_row("numpy np.multiply(x, x, out=y) 1e3", f.get("numpy_small_us"), "µs/call"))
    add(figure_row("ProcessPoolExecutor submit(f).result()", f.get("process_pool_rtt_us"),
                   "µs/call"))
    add(figure_row(f"C limit square {size} out of place ({lim_threads} threads)",
                   lim.get("square_out_gbs"), "GB/s"))
    add(figure_row(f"C limit square {size} in place ({lim_threads} threads)",
                   lim.get("square_inplace_gbs"), "GB/s"))
    add(figure_row(f"C limit memcpy ({lim_threads} threads)", lim.get("memcpy_gbs"), "GB/s"))
    add(figure_row("C limit square out of place (1 thread)", lim1.get("square_out_gbs"), "GB/s"))
    add(figure_row("C limit square in place (1 thread)", lim1.get("square_inplace_gbs"), "GB/s"))
    add(figure_row(f"shmaccel square {size} SharedArray out=", gbs("shmaccel_sharedarray_out"),
                   "GB/s"))
    add(figure_row(f"shmaccel square {size} SharedArray in place",
                   gbs("shmaccel_sharedarray_inplace"), "GB/s"))
    add(figure_row(f"shmaccel square {size} numpy array (copy in, result in arena)",
                   gbs("shmaccel_numpy_in"), "GB/s"))
    add(figure_row(f"numpy np.multiply(x, x, out=y) {size}", gbs("numpy_out"), "GB/s"))
    add(figure_row(f"numpy np.multiply(x, x, out=x) {size}", gbs("numpy_inplace"), "GB/s"))
    if f.get("numexpr_out"):
        add(figure_row(f"numexpr 'x * x' out= ({f['numexpr_out']['threads']} threads)",
                       gbs("numexpr_out"), "GB/s"))
    add(figure_row(f"shmaccel.double(list of {power_of_ten(LIST_N)} ints)",
                   scaled(f.get("shmaccel_double_list"), 1e-3), "ms/call"))
    add(figure_row("floor: array.tolist(), a new int per result", scaled(
        f.get("list_floor_make"), 1e-3), "ms/call"))
    add(figure_row("[v * 2 for v in list]", scaled(f.get("comprehension_double_list"), 1e-3),
                   "ms/call"))

    ratios = results["ratios"]
    rrows = ["| ratio | value | reading |", "|---|---:|---|"]

    def put(key: str, label: str, value: float | None, reading: str) -> None:
        ratios[key] = value
        rrows.append(f"| {label} | {fmt(value)} | {reading} |")

    rtt, rtt_block = f.get("rtt_default_us"), f.get("rtt_blocking_us")
    put("rtt_default_over_spin", "round trip (default) / spin ping-pong",
        ratio(rtt, pp.get("spin_rtt_us")), "times the cache-line floor")
    put("rtt_default_over_1thread", "round trip (default) / round trip Pool(threads=1)",
        ratio(rtt, f.get("rtt_1thread_us")), "> 1: the extra pool thread costs the client")
    put("rtt_default_over_sem", "round trip (default) / sem ping-pong",
        ratio(rtt, pp.get("sem_rtt_us")), "< 1: spinning beats sleeping")
    put("rtt_blocking_over_sem", "round trip (blocking) / sem ping-pong",
        ratio(rtt_block, pp.get("sem_rtt_us")), "about 0.5–1 expected: one or two wake-ups")
    put("rtt_blocking_over_sem_cold_cross_cpu",
        "round trip (blocking) / cold sem ping-pong on two CPUs",
        ratio(rtt_block, pp.get("sem_cold_cross_cpu_rtt_us")),
        "the like-for-like floor: about 1 expected")
    put("rtt_default_over_numpy", "round trip (default) / numpy 1e3 call",
        ratio(rtt, f.get("numpy_small_us")), "what a small call costs more")
    put("process_pool_over_rtt_default", "ProcessPoolExecutor / round trip (default)",
        ratio(f.get("process_pool_rtt_us"), rtt), "times faster than a process pool")
    put("sharedarray_out_speedup_vs_numpy", f"square {size} SharedArray / numpy out-of-place",
        ratio(f.get("numpy_out"), f.get("shmaccel_sharedarray_out")),
        "speed-up (> 1: shmaccel faster)")
    put("sharedarray_inplace_speedup_vs_numpy",
        f"square {size} SharedArray in place / numpy in place",
        ratio(f.get("numpy_inplace"), f.get("shmaccel_sharedarray_inplace")), "speed-up")
    put("numpy_in_speedup_vs_numpy",
        f"square {size} numpy array via shmaccel / numpy out-of-place",
        ratio(f.get("numpy_out"), f.get("shmaccel_numpy_in")), "speed-up, copy in included")
    if f.get("numexpr_out"):
        put("numexpr_speedup_vs_numpy", "numexpr / numpy out-of-place",
            ratio(f.get("numpy_out"), f.get("numexpr_out")), "speed-up")
    put("sharedarray_out_pct_of_limit", "SharedArray out= / C limit out of place",
        pct(gbs("shmaccel_sharedarray_out"), lim.get("square_out_gbs")),
        f"% ({lim_threads} threads in C)")
    put("sharedarray_inplace_pct_of_limit", "SharedArray in place / C limit in place",
        pct(gbs("shmaccel_sharedarray_inplace"), lim.get("square_inplace_gbs")),
        f"% ({lim_threads} threads in C)")
    put("numpy_out_pct_of_1thread_limit", "numpy out-of-place / C limit on 1 thread",
        pct(gbs("numpy_out"), lim1.get("square_out_gbs")), "% (numpy uses one thread)")
    put("limit_threads_speedup", f"C limit {lim_threads} threads / 1 thread, out of place",
        ratio(lim.get("square_out_gbs"), lim1.get("square_out_gbs")),
        "what more cores can give at all")
    put("list_speedup_vs_comprehension", "list double: comprehension / shmaccel",
        ratio(f.get("comprehension_double_list"), f.get("shmaccel_double_list")), "speed-up")
    put("list_best_possible_speedup", "list double: comprehension / making the result ints",
        ratio(f.get("comprehension_double_list"), f.get("list_floor_make")),
        "more than any list-in, list-out call can gain")
    return "\n".join(rows) + "\n\n" + "\n".join(rrows)


def anomalies(results: dict) -> list[str]:
    """Figures far from what the design predicts, each with the likeliest reading."""
    r = results["ratios"]
    f = results["figures"]
    pp = results.get("pingpong") or {}
    load = results["load"]
    out = []

    def median(stat: dict | None) -> float | None:
        return stat["median"] if stat else None

    blocking = r.get("rtt_blocking_over_sem")
    if blocking is not None and not 1 / ANOMALY_FACTOR <= blocking <= ANOMALY_FACTOR:
        out.append(
            f"blocking round trip / sem ping-pong = {fmt(blocking)}: the ping-pong is cheap "
            "when the scheduler wakes each side on the CPU the other is leaving (one CPU: "
            f"{fmt(median(pp.get('sem_same_cpu_rtt_us')))} µs), dear across CPUs (two CPUs: "
            f"{fmt(median(pp.get('sem_cross_cpu_rtt_us')))} µs; cold, after a 200 µs sleep: "
            f"{fmt(median(pp.get('sem_cold_cross_cpu_rtt_us')))} µs). shmaccel's client spins "
            "before it sleeps, so the worker must wake on the other, idle CPU, and when the "
            "spin runs out the client's own wake-up crosses CPUs too: against the cold "
            f"two-CPU ping-pong the ratio is {fmt(r.get('rtt_blocking_over_sem_cold_cross_cpu'))}")
    asleep = results.get("blocking_worker_asleep_fraction")
    if asleep is not None and asleep < 0.8:
        out.append(f"the worker was seen asleep before only {asleep:.0%} of the sampled blocking "
                   "calls: the blocking figure partly measures a spinning worker")
    over_one = r.get("rtt_default_over_1thread")
    busy = results.get("contention_default") or {}
    if over_one is not None and over_one > 1.5:
        out.append(
            f"the default pool's round trip is {fmt(over_one)}x that of Pool(threads=1): while "
            f"calls go back to back its threads kept {busy.get('worker_thread_cpus')} CPUs busy "
            f"and the client got {busy.get('client_cpus')} CPU; a runnable worker thread shared "
            f"the client's CPU in {busy.get('same_cpu_fraction') or 0:.0%} of samples: "
            "pool threads and the client compete for the CPUs; see spin_for_work and "
            "announce_spinning in src/pool.c (clients skip the wake post while a thread spins)")
    for key, label in (("linger_1thread_s", "Pool(threads=1)"), ("linger_default_s",
                                                                 "the default pool")):
        linger = results.get(key)
        if linger is None and key in results:
            out.append(f"{label}'s worker was still busy 5 s after the last call")
        elif linger is not None and linger > 0.25:
            out.append(
                f"{label}'s worker kept a CPU busy for {fmt(linger)} s after the last call; "
                "a thread should stop spinning 50 µs after its last job (src/pool.c SPIN_NS)")
    scaling = r.get("limit_threads_speedup")
    lim = results["limit"]
    big_foreign = (load.get("big") or {}).get("foreign_cpus", 0.0)
    if scaling is not None and scaling < 1.3 and big_foreign >= 0.3:
        out.append(f"the C limit gains only {fmt(scaling)}x from {lim.get('threads', '?')} "
                   f"threads because other processes used {big_foreign} CPUs meanwhile: its "
                   "threads, pinned one per CPU, had to share theirs, so the limit understates "
                   "the machine and the '% of limit' figures overstate shmaccel")
    elif scaling is not None and scaling < 1.3:
        out.append(f"the C limit gains only {fmt(scaling)}x from {lim.get('threads', '?')} "
                   "threads: during this run one core drew (nearly) all the memory bandwidth "
                   "the machine gave, so no multi-threaded square could beat numpy by much")
    spread = lim.get("square_out_gbs")
    if spread and spread["max"] / spread["min"] > 1.5:
        out.append(f"the C limit (out of place, {lim.get('threads', '?')} threads) ranged "
                   f"{fmt(spread['min'])} – {fmt(spread['max'])} GB/s across rounds: the machine "
                   "itself changed speed during the run (vCPU placement on the host, a "
                   "neighbour's memory traffic); the variants took turns, so their ratios hold "
                   "better than their absolute figures")
    if lim and not lim.get("pinned"):
        out.append("the C limit's threads could not be pinned one per CPU: its figures may "
                   "be low")
    for key, label in (("sharedarray_out_pct_of_limit", "SharedArray out="),
                       ("sharedarray_inplace_pct_of_limit", "SharedArray in place")):
        value = r.get(key)
        if value is not None and value < 100 / ANOMALY_FACTOR:
            out.append(f"{label} reaches only {value:.0f}% of the C limit")
        if value is not None and value > 110 and big_foreign < 0.3:
            out.append(f"{label} reaches {value:.0f}% of the C limit: the limit is no ceiling "
                       "here (see its min – max: the machine drifts)")
    for key, name in (("sharedarray_out_pct_of_limit", "shmaccel_sharedarray_out"),
                      ("sharedarray_inplace_pct_of_limit", "shmaccel_sharedarray_inplace")):
        value = r.get(key)
        threads = (results.get("big_worker_threads") or {}).get(name)
        if not threads or not threads["alone_calls"]:
            continue
        calls = threads["alone_calls"] + threads["shared_calls"]
        if threads["alone_calls"] * 2 < calls and (value is None or value >= 75):
            continue
        # The second busiest thread of each call: how long it ran and waited for a CPU.
        pairs = [c for c in threads["calls"] if len(c["run_us"]) > 1]
        reading = ""
        if pairs:
            run_us = statistics.median(c["run_us"][1] for c in pairs)
            wait_us = statistics.median(c["wait_us"][1] for c in pairs)
            reading = (f"; the second pool thread ran {fmt(run_us)} µs and waited for a CPU "
                       f"{fmt(wait_us)} µs per call (medians)")
            if wait_us > run_us and big_foreign >= 0.3:
                reading += (f": runnable but queued for most of the call, while other "
                            f"processes used {big_foreign} CPUs")
            elif wait_us > run_us:
                reading += (": runnable but queued for most of the call, behind the claiming "
                            "thread on its CPU, until the load balancer moved it. Likely "
                            "cause: it is woken while the other CPU is still busy with the "
                            "client spinning in sa_wait, and an idle vCPU does not pull it "
                            "over at once")
        out.append(
            f"{name}: in {threads['alone_calls']} of {calls} calls one pool thread did most of "
            f"the work ({fmt(threads['alone_median_gbs'])} GB/s median, against "
            f"{fmt(threads['shared_median_gbs'])} when both worked"
            + (f"; {value:.0f}% of the C limit overall" if value is not None else "")
            + ")" + reading)
    numpy_in = r.get("numpy_in_speedup_vs_numpy")
    if numpy_in is not None and numpy_in < 1 / ANOMALY_FACTOR:
        out.append(f"shmaccel on a numpy array runs at {fmt(numpy_in)}x numpy: the copy into the "
                   "arena costs more than the kernel saves")
    noisy = [f"{key} ({stat['max'] / stat['min']:.1f}x)" for key, stat in f.items()
             if isinstance(stat, dict) and stat.get("min") and stat["max"] / stat["min"] > 2]
    if noisy:
        out.append("max/min above 2 across repeats (noise): " + ", ".join(noisy))
    busy = [f"{name} ({v['foreign_cpus']})" for name, v in load.items()
            if name != "run" and v["foreign_cpus"] >= 0.3 and v["wall_s"] >= LOAD_MIN_WALL_S]
    if busy:
        out.append("other processes kept CPUs busy during: " + ", ".join(busy)
                   + " (average CPUs in use by them)")
    return out


def plot(results: dict, path: Path, notes: list[str]) -> None:
    """A bar chart of the big-square throughputs next to the JSON, when matplotlib is there."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("matplotlib not installed: no plot (pip install matplotlib)")
        return
    gb = BYTES_PER_ELEM * results["config"]["size"] / 1e9
    bars = []
    for key, label in (("shmaccel_sharedarray_out", "shmaccel out="),
                       ("shmaccel_sharedarray_inplace", "shmaccel in place"),
                       ("shmaccel_numpy_in", "shmaccel on ndarray"),
                       ("numpy_out", "numpy out="), ("numpy_inplace", "numpy in place"),
                       ("numexpr_out", "numexpr out=")):
        if key in results["figures"]:
            bars.append((label, gb / results["figures"][key]["median"]))
    for key, label in (("square_out_gbs", "C limit out="),
                       ("square_inplace_gbs", "C limit in place")):
        if results["limit"].get(key):
            bars.append((label, results["limit"][key]["median"]))
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(bars) + 1.2))
    ax.barh([label for label, _ in bars], [value for _, value in bars])
    ax.invert_yaxis()
    ax.set_xlabel("GB/s (bytes read + written)")
    ax.set_title(f"square of {power_of_ten(results['config']['size'])} float64, "
                 f"{results['machine']['hostname']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    notes.append(f"plot: {path}")


# -- main -------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, for a CI smoke run (well under a minute)")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="where to write the results "
                             "(default: bench/results/<host>-<YYYYMMDD-HHMMSS>.json)")
    parser.add_argument("--size", metavar="N", type=int, default=10**7,
                        help="elements for the big square of the core section (default 10^7)")
    parser.add_argument("--only", metavar="SECTIONS", default=",".join(SECTIONS),
                        help="comma-separated sections to run, of: " + ", ".join(SECTIONS)
                        + " (default: all)")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be positive")
    args.sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--only: unknown section(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(SECTIONS)}")
    return args


def measure_core(shmaccel: Any, plan: Plan, size: int, *, results: dict, notes: list[str],
                 worker_pids: list[int]) -> None:
    """The core section's measurements, in order, into `results`. Each pool it opens is
    closed on the way out, and its worker's pid added to `worker_pids` for the leftover
    check."""
    figures, load = results["figures"], results["load"]
    progress = run_progress()
    progress.expect(CORE_STEPS, part="core")

    programs = build_c_programs(notes)
    progress.advance("core: C yardsticks built")
    if "pingpong" in programs:
        with LoadMeter(load, "pingpong"):
            results["pingpong"] = run_c_program(programs["pingpong"], list(plan.pingpong_args),
                                                notes)
    progress.advance("core: pingpong")

    with LoadMeter(load, "process_pool"):
        figures["process_pool_rtt_us"], results["config"]["process_pool_start_method"] = (
            measure_process_pool(plan))
    progress.advance("core: ProcessPoolExecutor round trip")

    x_small = np.random.default_rng(0).random(SMALL_N)

    with LoadMeter(load, "pool_1thread"):
        single = measure_single_thread_pool(shmaccel, plan, x_small, worker_pids)
    progress.advance("core: Pool(threads=1) round trips, blocking and back to back")
    figures["rtt_blocking_us"] = single["stat"]
    figures["rtt_1thread_us"] = single["back_to_back"]
    results["blocking_single_call_us"] = single["single_call_us"]
    results["blocking_worker_asleep_fraction"] = single["worker_asleep_fraction"]
    results["contention_1thread"] = single["contention"]
    results["linger_1thread_s"] = single["linger_s"]
    results["linger_1thread_probe_calls"] = single["linger_probe_calls"]

    with LimitSampler(programs.get("limit"), size, notes) as limit, \
            shmaccel.default_pool() as pool:
        if pool.name is None:  # a named pool ($SHMACCEL_POOL) is not ours to stop
            worker_pids.append(pool.worker_pid)
        results["pools"]["default_threads"] = pool.threads
        results["pools"]["default_name"] = pool.name

        with LoadMeter(load, "rtt_default"):
            default = measure_default_rtt(shmaccel, plan, x_small, pool.worker_pid)
        progress.advance("core: default round trip, taking turns with numpy's call")
        figures["rtt_default_us"] = default["stat"]
        figures["numpy_small_us"] = default["numpy"]
        results["contention_default"] = default["contention"]
        results["linger_default_s"] = default["linger_s"]

        probe = WorkerProbe(pool.worker_pid, {"shmaccel_sharedarray_out",
                                              "shmaccel_sharedarray_inplace"},
                            BYTES_PER_ELEM * size / 1e9)
        with LoadMeter(load, "big"):
            figures.update(measure_big(shmaccel, plan, size, limit=limit, probe=probe,
                                       notes=notes))
        results["big_worker_threads"] = probe.result()
        progress.advance(f"core: square of {size} float64, with the C limit after each round")

        with LoadMeter(load, "lists"):
            figures.update(measure_lists(shmaccel, plan))
        progress.advance("core: lists")
        results["pools"]["default_stats"] = pool.stats()
    results["limit"] = limit.result("all")
    results["limit_1thread"] = limit.result("one")


def run_sections(shmaccel: Any, args: argparse.Namespace, plan: Plan, *, results: dict,
                 notes: list[str], worker_pids: list[int]) -> None:
    """The sections picked by --only, in order: core (round trips, the big square against
    numpy and the C limit, lists), sizes (every method, dtype and size from 10^3 to 10^8),
    concurrency (1-64 threads, the GIL counter), steady (syscalls, mallocs, RSS over 10^6
    calls). Each adds its own key to `results`."""
    import bench_concurrency
    import bench_sizes
    import bench_steady

    progress = run_progress()
    planned = {"core": CORE_STEPS, "sizes": bench_sizes.planned_steps(args.quick),
               "concurrency": bench_concurrency.planned_steps(args.quick),
               "steady": bench_steady.STEADY_STEPS}
    for section in args.sections:  # announced up front, so that the time left means the run
        progress.expect(planned[section], part=section)
    try:
        run_planned_sections(shmaccel, args, plan, results=results, notes=notes,
                             worker_pids=worker_pids)
    finally:
        progress.close()  # also on Ctrl-C or an error: the terminal line is left clean


def run_planned_sections(shmaccel: Any, args: argparse.Namespace, plan: Plan, *,
                         results: dict, notes: list[str], worker_pids: list[int]) -> None:
    """run_sections' body: each section picked by --only, in order."""
    import bench_concurrency
    import bench_sizes
    import bench_steady

    load = results["load"]
    progress = run_progress()
    if "core" in args.sections:
        measure_core(shmaccel, plan, args.size, results=results, notes=notes,
                     worker_pids=worker_pids)
    if "sizes" in args.sections:
        progress.note("bench: sizes 10^3 - 10^8 x dtypes x methods, with the C limit")
        with LoadMeter(load, "sizes"):
            results["sizes"] = bench_sizes.measure_sizes(shmaccel, args.quick, notes,
                                                         build_c_programs(notes))
    if "concurrency" in args.sections:
        progress.note("bench: concurrency (1-64 threads) and the GIL counter")
        with LoadMeter(load, "concurrency"):
            results["concurrency"] = bench_concurrency.measure_concurrency(
                shmaccel, args.quick, notes, load=load)
    if "steady" in args.sections:
        progress.note("bench: steady state (syscalls, mallocs, RSS over many small calls)")
        with LoadMeter(load, "steady"):
            results["steady"] = bench_steady.measure_steady(shmaccel, args.quick, notes)


def our_workers() -> list[int]:
    """Worker processes this process started that still run (any section's)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                name = f.read().strip()
            fields = stat_fields(f"/proc/{entry.name}/stat")
        except (OSError, IndexError):
            continue
        if name.startswith("shmaccel-worke") and int(fields[1]) == os.getpid() \
                and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = datetime.now()
    wall_start = time.perf_counter()
    notes: list[str] = []
    shm_before = shm_entries()
    worker_pids: list[int] = []

    try:
        import shmaccel
    except ImportError as e:
        print(f"cannot import shmaccel ({e}): run `make` and set PYTHONPATH=pyshim",
              file=sys.stderr)
        return 1

    results: dict = {
        "machine": {**machine_info(), "numpy": np.__version__},
        "config": {"quick": args.quick, "size": args.size, "plan": plan.__dict__,
                   "small_n": SMALL_N, "list_n": LIST_N,
                   "blocking_sleep_us": BLOCKING_SLEEP_S * 1e6,
                   "bytes_per_elem": BYTES_PER_ELEM, "c_flags": C_FLAGS,
                   "shmaccel": shmaccel.__version__},
        "started": started.isoformat(timespec="seconds"),
        "figures": {},
        "ratios": {},
        "pools": {},
        "load": {},
    }
    with LoadMeter(results["load"], "run"):
        run_sections(shmaccel, args, plan, results=results, notes=notes,
                     worker_pids=worker_pids)

    # Everything this run started must be gone: workers reaped, no /dev/shm entry left behind.
    gc.collect()
    leftover_pids = sorted({pid for pid in worker_pids if process_alive(pid)} | set(our_workers()))
    new_shm = sorted(shm_entries() - shm_before)
    children = multiprocessing.active_children()
    results["cleanup"] = {"workers_still_running": leftover_pids, "new_dev_shm_entries": new_shm,
                          "children_still_running": [p.pid for p in children]}
    if leftover_pids:
        notes.append(f"worker processes still running after close: {leftover_pids}")
    if new_shm:
        notes.append(f"new /dev/shm entries after the run (ours or another program's): {new_shm}")
    if children:
        notes.append(f"child processes still running: {[p.pid for p in children]}")

    path = args.json or RESULTS_DIR / (
        f"{results['machine']['hostname']}-{started.strftime('%Y%m%d-%H%M%S')}.json")
    core = "core" in args.sections
    table = build_report(results) if core else ""
    found = anomalies(results) if core else []
    results["anomalies"] = found
    results["goals"] = evaluate_goals(results)
    results["machine"]["loadavg_end"] = os.getloadavg()
    if not args.quick:
        if core:
            plot(results, path.with_suffix(".png"), notes)
        plot_all(results, path.parent, path.stem, notes)
    results["notes"] = notes
    results["elapsed_s"] = round(time.perf_counter() - wall_start, 2)
    write_json(results, path)

    m = results["machine"]
    foreign = results["load"].get("run", {}).get("foreign_cpus", "?")
    print(f"## shmaccel bench{' (quick)' if args.quick else ''}: {m['hostname']}, "
          f"{m['cpu_model']}, {m['usable_cpus']} CPUs, Python {m['python']}, "
          f"numpy {m['numpy']}; other processes used {foreign} CPUs on average\n")
    for part in (table, markdown_tables(results)):
        if part:
            print(part + "\n")
    print("Goals (issue 6), each a ratio within this run:\n")
    print(goals_table(results["goals"]))
    if found:
        print("\nAnomalies:")
        for line in found:
            print(f"- {line}")
    if notes:
        print("\nNotes:")
        for line in notes:
            print(f"- {line}")
    print(f"\nResults: {path} ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
