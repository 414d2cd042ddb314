#!/usr/bin/env python3
"""bench_fairness.py -- a light client's call latency on a named pool, alone and next to a flood.

Starts a named pool (one thread per CPU) with scripts/shmaccel-pool, then, three times over:

  * alone: a light client (this process) times square of a 1,000-element float64 SharedArray,
    one call at a time, each with perf_counter_ns;
  * flooded, the neighbour joined later: a flooding process connects after the light client
    and keeps its threads' requests in flight (square, in place, of big float64 arrays, for
    ever), and the light client times the same calls again;
  * flooded, the light client joined later: the same flood, but the light client connects
    after the flooder. The worker gives each client a seat (the lowest free one) and serves
    seats round robin, so this case shows whether the order of arrival matters. (An idle
    observer session holds the lowest seat throughout, so the two always get the next two
    seats in the order they connect.)

Each flooded phase stops at its number of calls or its time budget, whichever comes first (a
starved client then shows few calls and a huge max rather than a run that never ends). The
flooder's throughput during each phase comes from the pool's counters (all elements minus
the light client's, 16 bytes each: 8 read, 8 written). Reports p50, p90, p99 and max per
phase as the medians over the repeats, and flooded p99 / alone p99 (goal: <= 2), as a
markdown table; writes everything to bench/results/fairness-<host>-<YYYYMMDD-HHMMSS>.json
(or --json PATH). The flooder is killed and the pool stopped however the run ends.

    PYTHONPATH=pyshim python3 scripts/bench_fairness.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import array
import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "scripts" / "shmaccel-pool"
RESULTS_DIR = ROOT / "bench" / "results"
PYSHIM = ROOT / "pyshim"

sys.path.insert(0, str(PYSHIM))
import shmaccel  # noqa: E402
from shmaccel._cli import pid_running  # noqa: E402

from benchlib import machine_info, write_json  # noqa: E402

LIGHT_N = 1000
BYTES_PER_ELEM = 16  # square of float64: 8 read + 8 written
GOAL_P99_RATIO = 2.0
REPEATS = 5
FLOOD_READY_S = 30.0
ALONE_CALL_TIMEOUT_S = 10.0  # a call alone takes microseconds: a hang, not a figure
SCENARIOS = ("alone", "flooded_neighbour_later", "flooded_light_later")
TITLES = {
    "alone": "alone",
    "flooded_neighbour_later": "flooded, neighbour joined later",
    "flooded_light_later": "flooded, light client joined later",
}


@dataclass(frozen=True)
class Plan:
    calls: int  # light calls timed per phase (at most)
    warmup: int
    phase_budget_s: float  # a flooded phase ends after this long in any case
    flood_threads: int
    flood_elements: int
    flood_arrays: int


FULL = Plan(calls=20000, warmup=1000, phase_budget_s=5.0, flood_threads=32,
            flood_elements=4_000_000, flood_arrays=8)
QUICK = Plan(calls=1000, warmup=100, phase_budget_s=2.0, flood_threads=16,
             flood_elements=1_000_000, flood_arrays=4)

# argv: pool name, threads, elements, arrays. Each thread squares one of the arrays in place
# for ever; they hold zeros, so threads sharing one cannot change what it holds. Prints
# FLOODING (with its seat) once at least half the threads have a request queued or running
# and requests complete.
FLOODER = r"""
import sys, threading, time
import shmaccel

name, nthreads, n, narrays = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pool = shmaccel.Pool(name)
arrays = [pool.zeros(n, "float64") for _ in range(narrays)]


def flood(a):
    while True:
        pool.square(a, out=a)


for i in range(nthreads):
    threading.Thread(target=flood, args=(arrays[i % narrays],), daemon=True).start()
deadline = time.monotonic() + float(sys.argv[5])
while True:
    stats = pool.stats()
    if stats["client_in_flight"] >= nthreads // 2 and stats["client_requests"] > 0:
        break
    if time.monotonic() > deadline:
        print("NOT FLOODING", stats, flush=True)
        sys.exit(1)
    time.sleep(0.01)
print(f"FLOODING {stats['seat']} {stats['client_in_flight']}", flush=True)
sys.stdin.read()  # until the benchmark closes the pipe or kills us
"""


# -- the machine --------------------------------------------------------------------------------

# -- the pool and the flooder -------------------------------------------------------------------

def child_env() -> dict:
    env = dict(os.environ)
    env.pop("SHMACCEL_POOL", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PYSHIM)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


class NamedPool:
    """A pool started with `shmaccel-pool start`; stop() stops it, killing it if it must."""

    def __init__(self, threads: int, log_dir: Path) -> None:
        self.name = f"bench-fairness-{uuid.uuid4().hex[:8]}"
        self.pid: int | None = None
        self.log_path = log_dir / "pool.log"
        started = cli("start", self.name, "--threads", str(threads), "--log", str(self.log_path))
        if started.returncode != 0:
            raise RuntimeError(f"shmaccel-pool start failed: {started.stderr.strip()}")
        self.pid = int(started.stdout.strip())

    def stop(self) -> None:
        cli("stop", self.name, "--timeout", "5")
        if self.pid is not None and pid_running(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while pid_running(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        # A killed pool leaves its socket behind; the runtime directory is the CLI's.
        with contextlib.suppress(OSError, ValueError, TypeError):
            Path(shmaccel._shmaccel.pool_socket_path(self.name)).unlink()


class Flooder:
    """The flooding neighbour: a process of plan.flood_threads threads on big arrays."""

    def __init__(self, pool_name: str, plan: Plan) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", FLOODER, pool_name, str(plan.flood_threads),
             str(plan.flood_elements), str(plan.flood_arrays), str(FLOOD_READY_S)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=child_env())
        self.seat: int | None = None

    def wait_flooding(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None  # stdout=PIPE
        line = stdout.readline()  # the child gives up after FLOOD_READY_S itself
        if not line.startswith("FLOODING"):
            rest = stdout.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"the flooder did not start flooding: {line}{rest}".strip())
        self.seat = int(line.split()[1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


def wait_for_seats_reclaimed(observer: shmaccel.Pool, timeout: float = 10.0) -> None:
    """Waits until the observer is the pool's only client, then a little more, so that the
    seats of the sessions just closed or killed are free again (a seat is reused only once
    no job of its former client runs). Then the next client to connect gets the lowest seat
    after the observer's, and the one after it the next."""
    deadline = time.monotonic() + timeout
    while observer.stats()["clients"] > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)


# -- measuring ----------------------------------------------------------------------------------

def percentile(sorted_ns: list[int], p: float) -> float:
    """Nearest-rank percentile of sorted samples, in microseconds."""
    rank = max(1, math.ceil(p / 100 * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1000


def light_phase(pool: shmaccel.Pool, plan: Plan, budget_s: float | None) -> dict:
    """Times plan.calls squares of a 1,000-element float64 SharedArray (fewer if budget_s runs
    out), after plan.warmup untimed ones, and the flood's throughput meanwhile."""
    values = array.array("d", [(i - LIGHT_N // 2) * 0.5 for i in range(LIGHT_N)])
    data = pool.array(values)
    out = pool.empty(LIGHT_N, "float64")
    deadline = math.inf if budget_s is None else time.monotonic() + budget_s
    call_timeout = ALONE_CALL_TIMEOUT_S if budget_s is None else budget_s
    for _ in range(plan.warmup):
        pool.square(data, out=out, timeout=call_timeout)
        if time.monotonic() > deadline:
            break
    before, t0 = pool.stats(), time.monotonic()
    samples: list[int] = []
    timeouts = 0
    deadline = math.inf if budget_s is None else time.monotonic() + budget_s
    for _ in range(plan.calls):
        start = time.perf_counter_ns()
        try:
            pool.square(data, out=out, timeout=call_timeout)
        except TimeoutError:
            timeouts += 1
        samples.append(time.perf_counter_ns() - start)
        if timeouts or time.monotonic() > deadline:
            break
    seconds = time.monotonic() - t0
    after = pool.stats()
    if not timeouts and out.tolist() != [v * v for v in values]:
        raise RuntimeError("the light client's result is wrong")
    flood_elements = ((after["elements"] - before["elements"])
                      - (after["client_elements"] - before["client_elements"]))
    flood_requests = ((after["requests"] - before["requests"])
                      - (after["client_requests"] - before["client_requests"]))
    samples.sort()
    return {
        "calls": len(samples),
        "timeouts": timeouts,
        "truncated": len(samples) < plan.calls,
        "seconds": seconds,
        "seat": before["seat"],
        "p50_us": percentile(samples, 50),
        "p90_us": percentile(samples, 90),
        "p99_us": percentile(samples, 99),
        "max_us": samples[-1] / 1000,
        "flood_gb_s": flood_elements * BYTES_PER_ELEM / seconds / 1e9,
        "flood_requests_per_s": flood_requests / seconds,
    }


def one_repeat(pool_name: str, observer: shmaccel.Pool, plan: Plan, log) -> dict:
    """The three phases once. Every flooder and light session it opens is gone on return."""
    phases: dict[str, dict] = {}
    flooder: Flooder | None = None
    light: shmaccel.Pool | None = None
    try:
        wait_for_seats_reclaimed(observer)
        light = shmaccel.Pool(pool_name)
        log(f"  alone (light seat {light.stats()['seat']})")
        phases["alone"] = light_phase(light, plan, None)
        flooder = Flooder(pool_name, plan)
        flooder.wait_flooding()
        log(f"  flooded, neighbour joined later (light seat {light.stats()['seat']}, "
            f"flooder seat {flooder.seat})")
        phases["flooded_neighbour_later"] = light_phase(light, plan, plan.phase_budget_s)
        phases["flooded_neighbour_later"]["flooder_seat"] = flooder.seat
        flooder.kill()
        light.close()
        light = None

        wait_for_seats_reclaimed(observer)
        flooder = Flooder(pool_name, plan)
        flooder.wait_flooding()
        light = shmaccel.Pool(pool_name)
        log(f"  flooded, light client joined later (light seat {light.stats()['seat']}, "
            f"flooder seat {flooder.seat})")
        phases["flooded_light_later"] = light_phase(light, plan, plan.phase_budget_s)
        phases["flooded_light_later"]["flooder_seat"] = flooder.seat
    finally:
        if flooder is not None:
            flooder.kill()
        if light is not None:
            light.close()
    return phases


def summarise(repeats: list[dict]) -> dict:
    """Per phase: the median over the repeats of each figure."""
    summary = {}
    for phase in SCENARIOS:
        runs = [r[phase] for r in repeats]
        summary[phase] = {
            key: statistics.median(run[key] for run in runs)
            for key in ("calls", "p50_us", "p90_us", "p99_us", "max_us", "flood_gb_s",
                        "flood_requests_per_s")
        }
        summary[phase]["timeouts"] = sum(run["timeouts"] for run in runs)
        summary[phase]["light_seats"] = sorted({run["seat"] for run in runs})
        summary[phase]["flooder_seats"] = sorted({run.get("flooder_seat") for run in runs}
                                                 - {None})
    alone_p99 = summary["alone"]["p99_us"]
    for phase in SCENARIOS[1:]:
        summary[phase]["p99_ratio"] = summary[phase]["p99_us"] / alone_p99
    return summary


def report(results: dict) -> str:
    s = results["summary"]
    lines = [
        f"light client: square of {LIGHT_N} float64 (SharedArray), "
        f"pool of {results['config']['pool_threads']} threads, medians of {REPEATS} repeats; "
        f"flood: {results['config']['flood_threads']} threads x "
        f"{results['config']['flood_elements']:,} float64",
        "",
        "| phase | light seat | flooder seat | calls | p50 us | p90 us | p99 us | max us "
        "| p99 / alone p99 | flood GB/s | flood req/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in SCENARIOS:
        f = s[phase]
        ratio = f"{f['p99_ratio']:.0f}x" if "p99_ratio" in f else "-"
        flood = "-" if phase == "alone" else f"{f['flood_gb_s']:.1f}"
        rate = "-" if phase == "alone" else f"{f['flood_requests_per_s']:.0f}"
        seats = ",".join(map(str, f["light_seats"]))
        fseats = ",".join(map(str, f["flooder_seats"])) or "-"
        lines.append(
            f"| {TITLES[phase]} | {seats} | {fseats} | {f['calls']:.0f} | {f['p50_us']:.1f} "
            f"| {f['p90_us']:.1f} | {f['p99_us']:.1f} | {f['max_us']:.1f} | {ratio} "
            f"| {flood} | {rate} |")
    lines.append("")
    for phase in SCENARIOS[1:]:
        f = s[phase]
        verdict = "meets" if f["p99_ratio"] <= GOAL_P99_RATIO else "MISSES"
        note = ""
        if f["calls"] < results["config"]["calls"]:
            note = (f" (only {f['calls']:.0f} of {results['config']['calls']} calls fit in the "
                    f"{results['config']['phase_budget_s']} s budget)")
        lines.append(f"- {TITLES[phase]}: flooded p99 / alone p99 = {f['p99_ratio']:.1f}, "
                     f"{verdict} the goal of <= {GOAL_P99_RATIO:g}{note}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer calls, a smaller flood and shorter budgets")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="where to write the results "
                             "(default: bench/results/fairness-<host>-<YYYYMMDD-HHMMSS>.json)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    threads = len(os.sched_getaffinity(0))
    started = datetime.now()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": {"quick": args.quick, **asdict(plan), "light_n": LIGHT_N,
                   "pool_threads": threads, "repeats": REPEATS,
                   "bytes_per_flood_element": BYTES_PER_ELEM, "goal_p99_ratio": GOAL_P99_RATIO,
                   "shmaccel": shmaccel.__version__},
        "started": started.isoformat(timespec="seconds"),
    }

    def log(message: str) -> None:
        print(f"bench_fairness: {message}", file=sys.stderr, flush=True)

    # SIGTERM ends the run through the finally below, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as log_dir:
        pool = observer = None
        try:
            pool = NamedPool(threads, Path(log_dir))
            log(f"pool {pool.name} (pid {pool.pid}, {threads} threads)")
            # An idle client for the whole run: it holds the lowest seat, so that the seats of
            # the light client and the flooder follow the order in which they connect, and it
            # tells when closed sessions are gone (wait_for_seats_reclaimed).
            observer = shmaccel.Pool(pool.name)
            repeats = []
            for k in range(REPEATS):
                log(f"repeat {k + 1} of {REPEATS}")
                repeats.append(one_repeat(pool.name, observer, plan, log))
        except BaseException:
            if pool is not None:
                with contextlib.suppress(OSError):
                    tail = pool.log_path.read_text(errors="replace").strip()[-2000:]
                    log(f"worker log: {tail}")
            raise
        finally:
            if observer is not None:
                observer.close()
            if pool is not None:
                pool.stop()
    results["repeats"] = repeats
    results["summary"] = summarise(repeats)
    results["seconds"] = (datetime.now() - started).total_seconds()
    results["machine"]["loadavg_end"] = os.getloadavg()
    text = report(results)
    print(text)
    path = args.json or RESULTS_DIR / (
        f"fairness-{results['machine']['hostname']}-{started:%Y%m%d-%H%M%S}.json")
    write_json(results, path)
    print(f"\nresults: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
