#!/usr/bin/env python3
"""bench_concurrency.py -- shmaccel called from many Python threads at once, and whether the
threads that wait on it leave the GIL to the others.

Two measurements, each repeated, the repeats taking turns so that a machine whose speed
drifts slows every case alike:

  * threads: 1, 4, 16 and 64 Python threads, released together by a barrier, each calling
    `pool.square(a, out=b)` back to back on its own float64 SharedArrays of 10^3 and of 10^5
    elements on the default pool (one pool thread per CPU) for a fixed time; and the same
    with `np.multiply(x, x, out=y)` on numpy arrays, for comparison. Per case: the aggregate
    calls/s and elements/s (median, min-max over the repeats), every call's latency
    (perf_counter_ns around it; p50/p90/p99/max over all repeats and a sorted sample), and
    errors (exceptions, and outputs found wrong when checked after each repeat).
  * the GIL: a pure-Python counter thread (`while not stop: n += 1`) runs alone for a fixed
    time, then while 8 other threads each wait on squares of 2*10^7 float64 (2*10^6 with
    --quick; one shared input SharedArray, an output each) on a Pool(threads=1), which leaves
    a CPU to the counter; the counter's rate during, as % of its rate alone, says how little
    waiting on shmaccel holds the GIL. Then the same with 8 numpy threads doing the same
    multiplies. A note gives the share of a CPU the counter got each time, to tell a counter
    slowed by the GIL from one short of a CPU on a busy machine.

Imported by scripts/bench.py (measure_concurrency) and runnable alone; then it prints a
markdown table and writes bench/results/concurrency-<host>-<YYYYMMDD-HHMMSS>.json (or
--json PATH). Progress goes to stderr.

    PYTHONPATH=pyshim python3 scripts/bench_concurrency.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import (
    LoadMeter,
    finish_standalone,
    fmt,
    machine_info,
    process_alive,
    run_progress,
    shm_entries,
    summary,
)

THREAD_COUNTS = (1, 4, 16, 64)
SIZES = (10**3, 10**5)
LATENCY_SAMPLE = 1000  # latencies kept per case in the JSON, a uniform sample of all
GIL_WAITERS = 8
GIL_POOL_THREADS = 1
GIL_SETTLE_S = 0.2  # lets every waiter get its first request queued before the counter starts
JOIN_TIMEOUT_S = 60.0  # a thread still running this long after its end is a hang



@dataclass(frozen=True)
class Plan:
    """How long and how often to measure."""

    cell_s: float  # back-to-back calls per thread count, size and impl, per repeat
    repeats: int
    gil_s: float  # the counter's run, alone and during, per repeat
    gil_repeats: int
    gil_n: int  # elements per call of the waiting threads


# Quick mode's waiting threads use 2*10^6 elements: 18 arrays of 2*10^7 (2.9 GB) take seconds
# to fault in, and its counter runs are too short to see many calls end anyway.
FULL = Plan(cell_s=2.0, repeats=3, gil_s=2.0, gil_repeats=5, gil_n=2 * 10**7)
QUICK = Plan(cell_s=0.3, repeats=2, gil_s=0.3, gil_repeats=2, gil_n=2 * 10**6)


# -- threads calling back to back -------------------------------------------------------------

@dataclass
class ThreadRun:
    """What one calling thread did in one repeat of a case."""

    latencies_ns: array
    start_ns: int = 0
    end_ns: int = 0
    errors: int = 0
    first_error: str | None = None


def call_until(call: Callable[[], Any], barrier: threading.Barrier, seconds: float,
               run: ThreadRun) -> None:
    """Calls `call` back to back from the barrier's release for `seconds`, timing each call.
    Any exception counts as an error and the loop goes on, so that a failing pool shows up as
    errors rather than as a run that ends early."""
    clock = time.perf_counter_ns
    record = run.latencies_ns.append
    barrier.wait()
    run.start_ns = clock()
    end = run.start_ns + int(seconds * 1e9)
    now = run.start_ns
    while now < end:
        before = clock()
        try:
            call()
        except Exception as e:  # noqa: BLE001 -- every failure is counted, whatever it is
            run.errors += 1
            if run.first_error is None:
                run.first_error = f"{type(e).__name__}: {e}"
        now = clock()
        record(now - before)
    run.end_ns = now


def join_or_raise(thread: threading.Thread, timeout: float) -> None:
    """Joins `thread`; RuntimeError if it still runs `timeout` seconds on (a hang)."""
    thread.join(timeout)
    if thread.is_alive():
        raise RuntimeError(f"{thread.name} still running {JOIN_TIMEOUT_S} s after its end")


def run_case(calls: list[Callable[[], Any]], seconds: float) -> tuple[float, list[ThreadRun]]:
    """One thread per callable, all released together; returns (calls/s of them all, from the
    first thread's start to the last one's end, and each thread's run)."""
    runs = [ThreadRun(array("q")) for _ in calls]
    barrier = threading.Barrier(len(calls))
    threads = [threading.Thread(target=call_until, args=(call, barrier, seconds, run),
                                name=f"bench-caller-{i}", daemon=True)
               for i, (call, run) in enumerate(zip(calls, runs, strict=True))]
    gc.collect()
    for thread in threads:
        thread.start()
    for thread in threads:
        join_or_raise(thread, seconds + JOIN_TIMEOUT_S)
    wall_ns = max(r.end_ns for r in runs) - min(r.start_ns for r in runs)
    return sum(len(r.latencies_ns) for r in runs) / (wall_ns / 1e9), runs


@dataclass
class Case:
    """One impl at one thread count and size: its operands (one pair per thread) and what
    the repeats found."""

    impl: str
    threads: int
    n: int
    calls: list[Callable[[], Any]]
    outputs: list[np.ndarray]  # each thread's output, as numpy (a view, for SharedArrays)
    expected: list[np.ndarray]
    rates: list[float]
    latencies_ns: list[array]
    errors: int = 0
    diagnostic_rates: list[float] = field(default_factory=list)  # diagnose_switch_interval

    def reset_outputs(self) -> None:
        for out in self.outputs:
            out.fill(0.0)

    def wrong_outputs(self) -> int:
        return sum(not np.array_equal(out, want)
                   for out, want in zip(self.outputs, self.expected, strict=True))


def planned_steps(quick: bool, cases: int = 2 * len(SIZES) * len(THREAD_COUNTS)) -> int:
    """Progress steps of the section: every case (two impls at every size and thread count)
    in every repeat, the diagnostic's and the GIL bound's repeats, the GIL repeats."""
    plan = QUICK if quick else FULL
    return plan.repeats * (cases + 2) + plan.gil_repeats


def make_cases(pool: Any) -> list[Case]:
    """Every impl at every thread count and size. Each thread of a case has arrays of its own;
    the cases of one impl and size share them (they never run at the same time)."""
    cases = []
    for seed, n in enumerate(SIZES):
        rng = np.random.default_rng(seed)
        operands: dict[str, list[tuple]] = {"shmaccel": [], "numpy": []}
        for _ in range(max(THREAD_COUNTS)):
            x = rng.random(n) + 0.5
            want = x * x
            a = pool.array(x)
            b = pool.zeros(n, "float64")
            operands["shmaccel"].append(
                (partial(pool.square, a, out=b), np.frombuffer(b, dtype=np.float64), want))
            y = np.zeros(n)
            operands["numpy"].append((partial(np.multiply, x, x, out=y), y, want))
        for impl, triples in operands.items():
            for t in THREAD_COUNTS:
                calls, outputs, expected = (list(column) for column in zip(*triples[:t],
                                                                          strict=True))
                cases.append(Case(impl, t, n, calls, outputs, expected, [], []))
    return cases


def measure_threads(shmaccel: Any, plan: Plan, notes: list[str],
                    worker_pids: list[int]) -> tuple[list[Case], dict | None]:
    """Every impl, thread count and size, the cases taking turns within each repeat. The
    default pool is closed on the way out (as scripts/bench.py does), its worker's pid added to
    `worker_pids` when it is private. Also returns goal 4's bound (measure_gil_bound)."""
    with shmaccel.default_pool() as pool:
        if pool.name is None:  # a named pool ($SHMACCEL_POOL) is not ours to stop
            worker_pids.append(pool.worker_pid)
        cases = make_cases(pool)
        progress = run_progress()
        progress.expect(planned_steps(plan is QUICK, len(cases)), part="concurrency")
        for case in cases:  # untimed: page faults, the client's latency estimate, thread start
            run_case(case.calls, min(plan.cell_s, 0.05))
        for repeat in range(plan.repeats):
            for case in cases:
                case.reset_outputs()
                rate, runs = run_case(case.calls, plan.cell_s)
                case.rates.append(rate)
                case.latencies_ns.extend(r.latencies_ns for r in runs)
                case.errors += sum(r.errors for r in runs)
                first = next((r.first_error for r in runs if r.first_error), None)
                if first:
                    notes.append(f"{case.impl}, {case.threads} threads, n={case.n}: "
                                 f"{sum(r.errors for r in runs)} calls failed, first: {first}")
                wrong = case.wrong_outputs()
                if wrong:
                    case.errors += wrong
                    notes.append(f"{case.impl}, {case.threads} threads, n={case.n}: {wrong} "
                                 "outputs wrong after a repeat")
                progress.advance(f"concurrency: repeat {repeat + 1}/{plan.repeats}: "
                                 f"{case.impl}, {case.threads} threads, n={case.n}")
        diagnose_switch_interval(cases, plan, notes)
        gil_bound = measure_gil_bound(cases, plan)
        # The operands hold the pool's arena (numpy views, SharedArrays in the partials):
        # dropped before the pool closes, so that the arena goes with it.
        for case in cases:
            case.calls.clear()
            case.outputs.clear()
    return cases, gil_bound


# CPython's GIL switch interval for the diagnostic run (the default is 5 ms).
DIAGNOSTIC_SWITCH_INTERVAL_S = 0.05


def python_work(iterations: int) -> None:
    """Pure-Python work that holds the GIL throughout: the GIL bound's stand-in for a call."""
    for _ in range(iterations):
        pass


# Lock ping-pong round trips per sample of a hand-off's cost.
HANDOFF_ROUNDS = 5000


def handoff_s(same_cpu: bool, rounds: int = HANDOFF_ROUNDS) -> float:
    """What it costs one Python thread to let another, which sleeps, run Python: two threads
    pass a token through two locks, so every pass wakes a sleeping thread that must then take
    the GIL. With `same_cpu` both threads are pinned to one CPU (the case of a machine whose
    CPUs are all busy: the woken thread gets the waker's), else to two different CPUs (an idle
    CPU's wake-up; on a 1-CPU machine, the same). Returns seconds per pass (half a round
    trip)."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()
    main_cpus = os.sched_getaffinity(0)
    cpus = sorted(main_cpus)
    mine, theirs = {cpus[0]}, {cpus[0] if same_cpu or len(cpus) < 2 else cpus[1]}

    def other() -> None:
        os.sched_setaffinity(0, theirs)  # this thread only (Linux)
        for _ in range(rounds):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other, name="bench-handoff", daemon=True)
    os.sched_setaffinity(0, mine)
    try:
        thread.start()
        start = time.perf_counter()
        for _ in range(rounds):
            ping.release()
            pong.acquire()
        elapsed = time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, main_cpus)
    join_or_raise(thread, JOIN_TIMEOUT_S)
    return elapsed / (2 * rounds)


def work_as_long_as(call_s: float, seconds: float) -> int:
    """The python_work iterations whose calls, timed as run_case times a call (the same loop
    around it), take `call_s` each on one thread: fitted from two short runs and corrected on
    up to two more, or, should noise make the longer run look no slower, from the work's own
    time alone."""
    def per_call(iterations: int) -> float:
        rate, _ = run_case([partial(python_work, iterations)], seconds)
        return 1 / rate

    probe = 1000
    empty, full = per_call(0), per_call(probe)
    if full <= empty * 1.5:
        start = time.perf_counter()
        python_work(100 * probe)
        return max(1, round(call_s / ((time.perf_counter() - start) / (100 * probe))))
    iterations = max(1, round((call_s - empty) / ((full - empty) / probe)))
    for _ in range(2):  # the fit's line is not quite straight that far down: correct on it
        took = per_call(iterations)
        if took <= empty or abs(took - call_s) < 0.05 * call_s:
            break
        iterations = max(1, round(iterations * max(call_s - empty, 0.0) / (took - empty)))
    return iterations


def measure_gil_bound(cases: list[Case], plan: Plan) -> dict | None:
    """Goal 4's bound in this run: the most calls per second 64 threads could make, whatever a
    call does with the GIL while it waits, under CPython's switching as it runs here.

    Keeping the GIL: then it is busy for the whole of every call, so 64 threads make at most
    what one makes, less what CPython's switching between them costs. Pure-Python work as
    long as one 10^3 shmaccel call, from 1 thread and from 64 taking turns, measures that
    share ("pct_of_1_thread_x_cores": on C cores, 100/C % when switching costs nothing).

    Releasing it, so that another thread's Python runs during this call's wait: the caller
    and the worker's spinner already keep both CPUs busy, so the other thread must be woken
    from sleep, which costs "handoff_s" (handoff_s(), on one CPU and across two) before it
    runs any Python; "handoff_calls" is the cheaper one in whole calls. Releasing can only
    gain on calls that stall for longer than that: at best a call then takes the GIL for
    min(its time, the hand-off). "overlap_bound_pct" is the 1-thread rate with every call so
    capped (the time by which the calls outlast the hand-off taken off the mean call), times
    the share of pure-Python work's rate that 64 threads keep: what the best mix of keeping
    and releasing reaches. It is taken per repeat, each repeat's calls against its own rate,
    and the median is kept. It counts every hand-off as free of CPU and every stall as
    hidden, though another thread's call needs the same worker that stalls, but applies that
    share, measured on work as long as a whole call, to the shorter capped calls: an
    estimate of the ceiling, not a proof.

    Returns {"iterations", "call_s", "work_s" (the work's time per call on one thread,
    timing loop included, as call_s),
    "rates": {threads: summary of calls/s}, "pct_of_1_thread_x_cores", "handoff_s":
    {"same_cpu", "cross_cpu"}: summaries, "handoff_calls", "overlap_bound_pct"}, or None."""
    single = next((c for c in cases if (c.impl, c.threads, c.n) == ("shmaccel", 1, SIZES[0])),
                  None)
    if single is None or not single.rates:
        run_progress().advance("concurrency: no GIL bound (no 1-thread case)", plan.repeats)
        return None
    call_s = 1 / statistics.median(single.rates)
    iterations = work_as_long_as(call_s, min(plan.cell_s, 0.2))
    work = partial(python_work, iterations)
    counts = (1, max(THREAD_COUNTS))
    rates: dict[int, list[float]] = {t: [] for t in counts}
    handoffs: dict[str, list[float]] = {"same_cpu": [], "cross_cpu": []}
    for repeat in range(plan.repeats):
        for threads in counts:
            rate, _ = run_case([work] * threads, plan.cell_s)
            rates[threads].append(rate)
        for where, samples in handoffs.items():
            samples.append(handoff_s(same_cpu=where == "same_cpu"))
        run_progress().advance(f"concurrency: GIL bound {repeat + 1}/{plan.repeats}: "
                               f"pure Python as long as a call, 1 and {counts[1]} threads; "
                               "a GIL hand-off")
    cores = len(os.sched_getaffinity(0))
    kept = statistics.median(rates[counts[1]]) / statistics.median(rates[1])
    handoff = min(statistics.median(v) for v in handoffs.values())
    # One thread: one latency array per repeat, in step with the rates.
    overlap = [100 * kept * best_mix_gain(rate, latencies, handoff) / cores
               for rate, latencies in zip(single.rates, single.latencies_ns, strict=True)]
    return {"iterations": iterations, "call_s": call_s,
            "work_s": 1 / statistics.median(rates[1]),
            "rates": {str(t): summary(r) for t, r in rates.items()},
            "pct_of_1_thread_x_cores": 100 * kept / cores,
            "handoff_s": {where: summary(v) for where, v in handoffs.items()},
            "handoff_calls": handoff / call_s,
            "overlap_bound_pct": statistics.median(overlap)}


def best_mix_gain(rate: float, latencies_ns: array, handoff_s: float) -> float:
    """How much faster one repeat's calls (made at `rate` calls/s, `latencies_ns` each) would
    run with every call's time capped at `handoff_s`: what releasing the GIL could hide."""
    times = np.frombuffer(latencies_ns, dtype=np.int64) / 1e9
    call_s = 1 / rate
    hidden_s = float(np.maximum(times - handoff_s, 0).mean()) if len(times) else 0.0
    return call_s / max(call_s - hidden_s, call_s / 100)


def diagnose_switch_interval(cases: list[Case], plan: Plan, notes: list[str]) -> None:
    """The 64-thread 10^3 shmaccel case once more with a 50 ms GIL switch interval: if it runs
    much faster, what bounds it at the default 5 ms is CPython's GIL hand-offs (a thread that
    had to wait for the worker asks for the GIL back and, 5 ms later, forces a switch), not
    the pool. Stored in case.diagnostic_rates."""
    case = next((c for c in cases if (c.impl, c.threads, c.n)
                 == ("shmaccel", max(THREAD_COUNTS), SIZES[0])), None)
    if case is None:
        run_progress().advance("concurrency: no diagnostic case", plan.repeats)
        return
    before = sys.getswitchinterval()
    sys.setswitchinterval(DIAGNOSTIC_SWITCH_INTERVAL_S)
    try:
        for repeat in range(plan.repeats):
            case.reset_outputs()
            rate, runs = run_case(case.calls, plan.cell_s)
            case.diagnostic_rates.append(rate)
            if any(r.errors for r in runs) or case.wrong_outputs():
                notes.append("switch-interval diagnostic: calls failed or outputs were wrong")
            run_progress().advance(
                f"concurrency: diagnostic {repeat + 1}/{plan.repeats}: shmaccel, "
                f"{case.threads} threads, switch interval "
                f"{DIAGNOSTIC_SWITCH_INTERVAL_S * 1e3:.0f} ms")
    finally:
        sys.setswitchinterval(before)


def case_row(case: Case) -> dict:
    """A case's row of the results: rates over the repeats, latencies over all its calls."""
    latencies = np.concatenate([np.frombuffer(a, dtype=np.int64) for a in case.latencies_ns])
    latencies_us = latencies / 1e3
    p50, p90, p99 = np.percentile(latencies_us, [50, 90, 99])
    rng = np.random.default_rng(case.threads * 1_000_003 + case.n)
    sample = (latencies_us if len(latencies_us) <= LATENCY_SAMPLE
              else rng.choice(latencies_us, LATENCY_SAMPLE, replace=False))
    return {
        "impl": case.impl,
        "threads": case.threads,
        "n": case.n,
        "calls_per_s": summary(case.rates),
        "elements_per_s": summary([rate * case.n for rate in case.rates]),
        "latency_us": {"p50": float(p50), "p90": float(p90), "p99": float(p99),
                       "max": float(latencies_us.max())},
        "latency_sample_us": [round(float(v), 3) for v in np.sort(sample)],
        "calls": int(latencies.size),
        "errors": case.errors,
    }


# -- the GIL ------------------------------------------------------------------------------------

@dataclass
class CounterRun:
    """One run of the counter: its increments per second, and how much of a CPU it and the
    rest of this process (the main thread sleeps: the waiting threads) used meanwhile."""

    rate: float
    counter_cpus: float
    others_cpus: float


def count_while(seconds: float) -> CounterRun:
    """Runs a pure-Python counter in a thread of its own for `seconds` (this thread sleeps,
    releasing the GIL) and returns its rate."""
    stop = [False]
    result: list[tuple[int, float, float]] = []

    def counter() -> None:
        n = 0
        cpu_start = time.thread_time()
        start = time.perf_counter()
        while not stop[0]:
            n += 1
        result.append((n, time.perf_counter() - start, time.thread_time() - cpu_start))

    thread = threading.Thread(target=counter, name="bench-counter", daemon=True)
    process_start = time.process_time()
    thread.start()
    time.sleep(seconds)
    stop[0] = True
    thread.join()
    process_cpu = time.process_time() - process_start
    n, wall, cpu = result[0]
    return CounterRun(n / wall, cpu / wall, max(process_cpu - cpu, 0.0) / wall)


def count_during(waits: Sequence[Callable[[], Any]], seconds: float,
                 notes: list[str], label: str) -> CounterRun:
    """The counter's rate while one thread per callable calls it back to back; the callers
    start first and stop (after their current call) once the counter is done."""
    stop = [False]
    done = [0] * len(waits)
    failures: list[str] = []

    def wait_loop(i: int, call: Callable[[], Any]) -> None:
        while not stop[0]:
            try:
                call()
            except Exception as e:  # noqa: BLE001 -- reported, and the loop ends
                failures.append(f"{type(e).__name__}: {e}")
                return
            done[i] += 1

    threads = [threading.Thread(target=wait_loop, args=(i, call), name=f"bench-waiter-{i}",
                                daemon=True) for i, call in enumerate(waits)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(GIL_SETTLE_S)
        before = sum(done)
        run = count_while(seconds)
        during = sum(done) - before
    finally:
        stop[0] = True
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
    if failures:
        notes.append(f"GIL, {label}: {len(failures)} waiting threads failed, first: "
                     f"{failures[0]}")
    if during == 0:
        notes.append(f"GIL, {label}: no call finished during the counter's {seconds} s (each "
                     "took longer); the waiters were busy throughout, but their GIL handoffs "
                     "at the end of each call were not sampled")
    return run


def measure_gil(shmaccel: Any, plan: Plan, notes: list[str], worker_pids: list[int]) -> dict:
    """The counter alone, during shmaccel waits and during numpy work, taking turns."""
    solo: list[CounterRun] = []
    during: list[CounterRun] = []
    numpy_during: list[CounterRun] = []
    call = f"square of {plan.gil_n:.0e} float64".replace("e+0", "e")
    run_progress().note(f"concurrency: GIL: {GIL_WAITERS} x {call} on "
                        f"Pool(threads={GIL_POOL_THREADS}), numpy alike")
    # One input shared by every thread (only read), one output each: 9 arrays per impl.
    x = np.full(plan.gil_n, 1.5)
    want = 1.5 * 1.5
    numpy_outs = [np.zeros(plan.gil_n) for _ in range(GIL_WAITERS)]
    numpy_waits = [partial(np.multiply, x, x, out=y) for y in numpy_outs]
    with shmaccel.Pool(threads=GIL_POOL_THREADS) as pool:
        worker_pids.append(pool.worker_pid)
        a = pool.array(x)
        outs = [pool.zeros(plan.gil_n, "float64") for _ in range(GIL_WAITERS)]
        waits = [partial(pool.square, a, out=b) for b in outs]
        for repeat in range(plan.gil_repeats):
            solo.append(count_while(plan.gil_s))
            during.append(count_during(waits, plan.gil_s, notes, "shmaccel"))
            numpy_during.append(count_during(numpy_waits, plan.gil_s, notes, "numpy"))
            run_progress().advance(f"concurrency: GIL repeat {repeat + 1}/{plan.gil_repeats}")
        wrong = sum(not np.all(np.frombuffer(b, dtype=np.float64)[::4099] == want) for b in outs)
        del a, outs, waits
    wrong += sum(not np.all(y[::4099] == want) for y in numpy_outs)
    if wrong:
        notes.append(f"GIL: {wrong} outputs of the waiting threads were wrong")
    solo_stat = summary([run.rate for run in solo])
    during_stat = summary([run.rate for run in during])
    numpy_stat = summary([run.rate for run in numpy_during])

    def cpus(runs: list[CounterRun], field: str) -> str:
        return f"{statistics.median(getattr(run, field) for run in runs):.2f}"

    def per_cpu(runs: list[CounterRun]) -> float:
        return statistics.median(run.rate / max(run.counter_cpus, 1e-9) for run in runs)

    # Why the counter slowed: it got less of a CPU (other processes, or the waiting threads
    # themselves busy), or it had the CPU but waited for the GIL. Its rate per CPU second
    # tells them apart: it hardly changes when only the CPU was short.
    notes.append(f"GIL: CPUs used (medians): the counter {cpus(solo, 'counter_cpus')} alone; "
                 f"{cpus(during, 'counter_cpus')} during the shmaccel waits, the waiting "
                 f"threads {cpus(during, 'others_cpus')}; {cpus(numpy_during, 'counter_cpus')} "
                 f"during numpy, its threads {cpus(numpy_during, 'others_cpus')}. The counter's "
                 f"rate per CPU second during, as % of alone: "
                 f"{100 * per_cpu(during) / per_cpu(solo):.0f}% (shmaccel), "
                 f"{100 * per_cpu(numpy_during) / per_cpu(solo):.0f}% (numpy)")
    return {
        "solo_rate": solo_stat,
        "during_rate": during_stat,
        "pct_of_solo": 100 * during_stat["median"] / solo_stat["median"],
        "waiting_threads": GIL_WAITERS,
        "pool_threads": GIL_POOL_THREADS,
        "call": call,
        "numpy_during_rate": numpy_stat,
        "numpy_pct_of_solo": 100 * numpy_stat["median"] / solo_stat["median"],
    }


# -- the whole measurement --------------------------------------------------------------------

def measure_concurrency(shmaccel: Any, quick: bool, notes: list[str],
                        load: dict | None = None) -> dict:
    """Both measurements (see the module's docstring); notes gather what went wrong, and
    `load`, when given, how busy the rest of the machine was during each (bench.LoadMeter)."""
    plan = QUICK if quick else FULL
    load = {} if load is None else load
    worker_pids: list[int] = []
    with LoadMeter(load, "concurrency_threads"):
        cases, gil_bound = measure_threads(shmaccel, plan, notes, worker_pids)
    rows = [case_row(case) for case in cases]
    with LoadMeter(load, "concurrency_gil"):
        gil = measure_gil(shmaccel, plan, notes, worker_pids)
    gc.collect()
    leftover = [pid for pid in worker_pids if process_alive(pid)]
    if leftover:
        notes.append(f"worker processes still running after their pools closed: {leftover}")
    cores = len(os.sched_getaffinity(0))

    def rate(impl: str, threads: int, n: int) -> float:
        return next(r["calls_per_s"]["median"] for r in rows
                    if (r["impl"], r["threads"], r["n"]) == (impl, threads, n))

    single = {str(n): rate("shmaccel", 1, n) for n in SIZES}
    diagnostic = next((c.diagnostic_rates for c in cases if c.diagnostic_rates), [])
    return {
        "switch_interval_diagnostic": ({
            "switch_interval_s": DIAGNOSTIC_SWITCH_INTERVAL_S, "threads": max(THREAD_COUNTS),
            "n": SIZES[0], "calls_per_s": summary(diagnostic),
            "pct_of_1_thread_x_cores": 100 * statistics.median(diagnostic)
            / (single[str(SIZES[0])] * cores)} if diagnostic else None),
        "cores": cores,
        "rows": rows,
        "single_thread_calls_per_s": single,
        "goal_64_threads_pct": (100 * rate("shmaccel", max(THREAD_COUNTS), SIZES[0])
                                / (single[str(SIZES[0])] * cores)),
        "gil_bound": gil_bound,
        "gil": gil,
    }


# -- the report -------------------------------------------------------------------------------

def report(results: dict) -> str:
    """Markdown: the thread table, then the GIL figures."""
    lines = [
        ("| impl | threads | n | calls/s | min – max | elements/s | p50 µs | p90 µs | p99 µs "
         "| max µs | calls | errors |"),
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(results["rows"], key=lambda r: (r["n"], r["threads"], r["impl"])):
        c, lat = r["calls_per_s"], r["latency_us"]
        lines.append(
            f"| {r['impl']} | {r['threads']} | {r['n']} | {fmt(c['median'])} "
            f"| {fmt(c['min'])} – {fmt(c['max'])} | {r['elements_per_s']['median']:.3g} "
            f"| {fmt(lat['p50'])} | {fmt(lat['p90'])} | {fmt(lat['p99'])} | {fmt(lat['max'])} "
            f"| {r['calls']} | {r['errors']} |")
    single = results["single_thread_calls_per_s"]
    gil = results["gil"]
    lines.append("")
    lines.append(f"- one thread, shmaccel: {fmt(single['1000'])} calls/s at 1e3, "
                 f"{fmt(single['100000'])} at 1e5")
    lines.append(f"- {max(THREAD_COUNTS)} threads at 1e3: "
                 f"{fmt(results['goal_64_threads_pct'])}% of one thread's rate x "
                 f"{results['cores']} cores")
    bound = results.get("gil_bound")
    if bound:
        lines.append(f"- bound: pure-Python work as long as a call, {max(THREAD_COUNTS)} threads: "
                     f"{fmt(bound['pct_of_1_thread_x_cores'])}% of one thread's rate x "
                     f"{results['cores']} cores (work {fmt(bound['work_s'] * 1e6)} µs a "
                     f"call, the call {fmt(bound['call_s'] * 1e6)} µs); waking a sleeping "
                     f"thread to run Python took "
                     f"{fmt(bound['handoff_s']['same_cpu']['median'] * 1e6)} µs on one CPU, "
                     f"{fmt(bound['handoff_s']['cross_cpu']['median'] * 1e6)} µs across two: "
                     f"{fmt(bound['handoff_calls'])} calls' time at least; so at most "
                     f"{fmt(bound['overlap_bound_pct'])}% with every stall longer than that "
                     "hidden (an estimate)")
    lines.append(f"- GIL: a pure-Python counter ran at {fmt(gil['pct_of_solo'])}% of its solo "
                 f"rate ({fmt(gil['during_rate']['median'])} vs "
                 f"{fmt(gil['solo_rate']['median'])} /s) while {gil['waiting_threads']} "
                 f"threads waited on {gil['call']} (Pool(threads={gil['pool_threads']}))")
    if gil["numpy_pct_of_solo"] is not None:
        lines.append(f"- GIL: {fmt(gil['numpy_pct_of_solo'])}% of solo with "
                     f"{gil['waiting_threads']} numpy threads doing the same multiplies")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short cases and fewer repeats, for a smoke run")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="where to write the results (default: "
                             "bench/results/concurrency-<host>-<YYYYMMDD-HHMMSS>.json)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = datetime.now()
    wall_start = time.perf_counter()
    try:
        import shmaccel
    except ImportError as e:
        print(f"cannot import shmaccel ({e}): run `make` and set PYTHONPATH=pyshim",
              file=sys.stderr)
        return 1
    shm_before = shm_entries()
    notes: list[str] = []
    load: dict = {}
    results: dict = {
        "machine": {**machine_info(), "numpy": np.__version__},
        "config": {"quick": args.quick, "plan": asdict(QUICK if args.quick else FULL),
                   "thread_counts": list(THREAD_COUNTS), "sizes": list(SIZES),
                   "shmaccel": shmaccel.__version__},
        "started": started.isoformat(timespec="seconds"),
    }
    results.update(measure_concurrency(shmaccel, args.quick, notes, load))
    results["load"] = load

    gc.collect()
    busy = [f"{name} ({v['foreign_cpus']})" for name, v in load.items()
            if v["foreign_cpus"] >= 0.3]
    if busy:
        notes.append("other processes kept CPUs busy during: " + ", ".join(busy)
                     + " (average CPUs in use by them)")
    m = results["machine"]
    finish_standalone(results, notes, kind="concurrency",
                      title=f"## shmaccel concurrency{' (quick)' if args.quick else ''}: "
                            f"{m['hostname']}, {m['cpu_model']}, {results['cores']} CPUs, "
                            f"Python {m['python']}, numpy {m['numpy']}",
                      body=report(results), shm_before=shm_before, started=started,
                      wall_start=wall_start, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
