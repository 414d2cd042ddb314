"""What the benchmark scripts share: where things are, the run's progress, statistics and
timing loops, the C yardsticks' build and run, what the machine was doing (LoadMeter), a
description of the machine a run measured, number formatting, and how results are written.
bench.py and its sections (bench_sizes, bench_concurrency, bench_steady) import from here,
never from each other."""

from __future__ import annotations

import gc
import json
import os
import platform
import select
import socket
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from progress import Progress

ROOT = Path(__file__).resolve().parent.parent
BENCH_SRC = ROOT / "bench"
BENCH_BUILD = ROOT / "build" / "bench"
RESULTS_DIR = BENCH_SRC / "results"
DEV_SHM = Path("/dev/shm")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The flags the worker's kernels are built with (-O3, no -march), so that limit.c measures the
# same code shmaccel runs.
C_FLAGS = ["-O3", "-std=c11", "-D_GNU_SOURCE", "-pthread", "-Wall", "-Wextra"]

# bench/ programs that link the C library, built by their own section (bench_steady.py).
SEPARATELY_BUILT = {"steady"}

# Shared libraries built from a bench/ source as well: name -> (source stem, extra flags).
LIBRARIES = {"limit_here.so": ("limit", ["-shared", "-fPIC", "-DLIMIT_LIBRARY"])}


# -- progress ---------------------------------------------------------------------------------

_progress: Progress | None = None


def run_progress() -> Progress:
    """The run's one Progress (a bar, or plain lines in a log), made on first use: bench.py
    and each section add their steps to it (expect) and count them off (advance)."""
    global _progress
    if _progress is None:
        _progress = Progress("bench")
    return _progress


# -- statistics -------------------------------------------------------------------------------

def summary(values: list[float]) -> dict:
    """Median, min, max (and the samples) of a list of figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "samples": [float(f"{v:.6g}") for v in values]}


def inverted(stat: dict, scale: float) -> dict:
    """A summary of scale / x from one of x: a time turned into a throughput."""
    return {"median": scale / stat["median"], "min": scale / stat["max"],
            "max": scale / stat["min"], "n": stat["n"]}


def time_batches(call: Callable[[], Any], batches: int, calls: int) -> dict:
    """Per-call microseconds of `call`, one figure per batch of `calls` calls, after a warm-up."""
    return time_batches_in_turns({"call": call}, batches, calls)["call"]


def time_batches_in_turns(variants: dict[str, Callable[[], Any]], batches: int,
                          calls: int) -> dict[str, dict]:
    """time_batches for several calls at once, their batches taking turns (in the reverse
    order every other round), so that a ratio of two of them is taken over the same stretch
    of a machine whose speed drifts. A few untimed calls before each batch let it start as
    warm as back-to-back calls run (a pool whose spinner went to sleep during the other
    batches is woken outside the timing)."""
    for call in variants.values():
        for _ in range(max(calls // 10, 20)):
            call()
    per_call: dict[str, list[float]] = {name: [] for name in variants}
    rewarm = range(max(calls // 100, 5))
    gc.collect()
    gc.disable()
    try:
        for batch in range(batches):
            order = list(variants.items())
            for name, call in order if batch % 2 == 0 else order[::-1]:
                for _ in rewarm:
                    call()
                loop = range(calls)
                start = time.perf_counter_ns()
                for _ in loop:
                    call()
                per_call[name].append((time.perf_counter_ns() - start) / calls / 1e3)
    finally:
        gc.enable()
    return {name: summary(values) for name, values in per_call.items()}


def time_round_robin(variants: dict[str, Callable[[], Any]], repeats: int,
                     after_round: Callable[[], None] | None = None,
                     observer: Any = None,
                     warmup: int = 2) -> dict[str, dict]:
    """Seconds per call of each variant, each call timed alone, after `warmup` untimed calls
    of each. The variants take turns, one call each per round (then `after_round`), so that a
    machine whose speed drifts during the run (a neighbour's load, a vCPU moved) slows them
    all alike. An `observer` looks at each call from just outside its timing."""
    for call in variants.values():
        for _ in range(warmup):
            call()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, call in variants.items():
                if observer is not None:
                    observer.before(name)
                start = time.perf_counter_ns()
                call()
                seconds[name].append((time.perf_counter_ns() - start) / 1e9)
                if observer is not None:
                    observer.after(name, seconds[name][-1])
            if after_round is not None:
                after_round()
    finally:
        gc.enable()
    return {name: summary(values) for name, values in seconds.items()}


# -- the C yardsticks -------------------------------------------------------------------------

def build_c_programs(notes: list[str]) -> dict[str, Path]:
    """Compiles each bench/*.c into build/bench/ when its source is newer than the program,
    and the LIBRARIES. Returns the programs that are up to date afterwards, by name ("limit",
    "limit_here.so"...); failures become notes."""
    cc = os.environ.get("CC") or "cc"
    compiler_missing = False
    programs = {}
    BENCH_BUILD.mkdir(parents=True, exist_ok=True)
    targets: list[tuple[str, Path, list[str]]] = [
        (source.stem, source, []) for source in sorted(BENCH_SRC.glob("*.c"))
        if source.stem not in SEPARATELY_BUILT]
    targets += [(name, BENCH_SRC / f"{stem}.c", flags) for name, (stem, flags) in LIBRARIES.items()]
    for name, source, flags in targets:
        program = BENCH_BUILD / name
        if not program.exists() or source.stat().st_mtime > program.stat().st_mtime:
            if compiler_missing:
                continue
            command = [cc, *C_FLAGS, *flags, "-o", str(program), str(source)]
            run_progress().note(f"  building {program.relative_to(ROOT)}: {' '.join(command)}")
            try:
                result = subprocess.run(command, check=False, capture_output=True, text=True)
            except OSError as e:
                notes.append(f"could not run the C compiler {cc!r} ({e}): C yardsticks that "
                             "are not already built are left out")
                compiler_missing = True
                continue
            if result.returncode != 0:
                notes.append(f"building {source.name} failed, left out:\n{result.stderr.strip()}")
                continue
        programs[name] = program
    return programs


def run_c_program(program: Path, args: list[str], notes: list[str]) -> dict | None:
    """Runs one yardstick and returns its JSON, or None (with a note) if it failed."""
    try:
        result = subprocess.run([str(program), *args], check=False, capture_output=True,
                                text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"{program.name} failed: {e}")
        return None
    if result.returncode != 0:
        notes.append(f"{program.name} exited with {result.returncode}: {result.stderr.strip()}")
        return None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as e:
        notes.append(f"{program.name} printed no valid JSON: {e}")
        return None


class LimitHere:
    """limit_here() of build/bench/limit_here.so (bench/limit.c as a library): the C limit
    timed over memory this process already has, such as a SharedArray's own pages, so that
    it and shmaccel read and write the same memory. run() returns the seconds of one run (the
    threads' start-up not included); the GIL is released meanwhile (ctypes)."""

    def __init__(self, library: Path) -> None:
        import ctypes
        self._ctypes = ctypes
        self._fn = ctypes.CDLL(str(library)).limit_here
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint,
                             ctypes.POINTER(ctypes.c_double)]

    def run(self, a: int, b: int, n: int, dtype: str, op: str, task: str) -> float:
        """One run of `task` ("inplace": a = op(a); "out": b = op(a)) over n elements at the
        addresses a and b. Raises OSError on failure."""
        seconds = self._ctypes.c_double()
        err = self._fn(a, b, n, dtype.encode(), op.encode(), task.encode(), 0,
                       self._ctypes.byref(seconds))
        if err != 0:
            raise OSError(-err, f"limit_here({dtype}, {op}, {task}) failed")
        return seconds.value


class LimitServer:
    """bench/limit.c --serve: the C limit kept running, so that a benchmark samples it one
    timed run at a time right between its own calls (a moment apart from what it bounds,
    rather than a process start and 2n elements of fresh memory apart). `sample(task)` returns
    the seconds of one run of "inplace", "out" or "memcpy", or None once the program failed
    (with a note); `sample_round()` takes one of each task into `samples`. Its threads sleep
    between samples. Use it as a context manager, or close()."""

    TASKS = ("inplace", "out", "memcpy")
    # sample_round()'s order: in place last, right before the next round's first call, which
    # is shmaccel in place in both users (bench.py and bench_sizes.py).
    ROUND_ORDER = ("memcpy", "out", "inplace")
    TIMEOUT_S = 120

    def __init__(self, program: Path, args: list[str], notes: list[str]) -> None:
        self.notes = notes
        self.info: dict = {}
        self.samples: dict[str, list[float]] = {task: [] for task in self.TASKS}
        self.proc: subprocess.Popen[str] | None = None
        try:
            self.proc = subprocess.Popen([str(program), *args, "--serve"], text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=1)
        except OSError as e:
            notes.append(f"{program.name} --serve failed to start: {e}")
            return
        line = self._answer()
        try:
            self.info = json.loads(line) if line else {}
        except json.JSONDecodeError:
            self.info = {}
        if not self.info.get("ready"):
            self._fail(f"{program.name} --serve did not get ready")

    def _answer(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.TIMEOUT_S)
        return self.proc.stdout.readline() if ready else ""

    def _fail(self, what: str) -> None:
        if self.proc is None:
            return
        self.proc.kill()
        _, err = self.proc.communicate()
        self.notes.append(f"{what}: {err.strip() or f'exit status {self.proc.returncode}'}")
        self.proc = None

    def sample(self, task: str) -> float | None:
        if self.proc is None:
            return None
        assert task in self.TASKS and self.proc.stdin is not None
        try:
            self.proc.stdin.write(task + "\n")
            self.proc.stdin.flush()
            line = self._answer()
            return float(line)
        except (OSError, ValueError):
            self._fail(f"limit.c --serve stopped answering ({task})")
            return None

    def sample_round(self) -> None:
        """One sample of every task, kept in `samples` (a failed one is left out)."""
        for task in self.ROUND_ORDER:
            seconds = self.sample(task)
            if seconds is not None:
                self.samples[task].append(seconds)

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.communicate(input="", timeout=self.TIMEOUT_S)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> LimitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the machine ------------------------------------------------------------------------------

def shm_entries() -> set[str]:
    try:
        return set(os.listdir(DEV_SHM))
    except OSError:
        return set()


def process_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie, reaped or not, counts as gone)."""
    try:
        state = stat_fields(f"/proc/{pid}/stat")[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stat_fields(path: str) -> list[str]:
    """Fields of a /proc/.../stat file after the command name: [0] is the state (field 3)."""
    with open(path) as f:
        return f.read().rpartition(")")[2].split()


def _tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and every process it started: the live ones
    from /proc, the reaped ones from os.times()."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    children: dict[int, list[int]] = defaultdict(list)
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(f"/proc/{entry.name}/stat")
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        children[int(fields[1])].append(pid)
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    stack = list(children[os.getpid()])
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0) / CLK_TCK
        stack.extend(children[pid])
    return total


def _system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (values + [0] * 8)[:8]
    # Interrupt time is left out: with tick-based accounting the wake-up IPIs of a ping-pong
    # land there, charged to no process, and would read as someone else's load.
    return (user + nice + system) / CLK_TCK, steal / CLK_TCK


# Below this a section is too short for jiffy-grained CPU accounting to mean much.
LOAD_MIN_WALL_S = 0.5


class LoadMeter:
    """Measures how busy the rest of the machine was during a section: the CPUs used by
    processes that are not ours (foreign_cpus) and stolen by the hypervisor (steal_cpus),
    averaged over the section. The counters tick in jiffies (usually 10 ms per CPU), so the
    figure is only meaningful for sections of LOAD_MIN_WALL_S or more."""

    def __init__(self, sink: dict, section: str) -> None:
        self.sink, self.section = sink, section

    def __enter__(self) -> LoadMeter:
        self.start: tuple[float, ...] | None
        try:
            self.start = (time.perf_counter(), *_system_cpu_seconds(), _tree_cpu_seconds())
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.start is None or exc[0] is not None:
            return
        try:
            end = (time.perf_counter(), *_system_cpu_seconds(), _tree_cpu_seconds())
        except OSError:
            return
        wall = end[0] - self.start[0]
        busy, steal, ours = (e - s for e, s in zip(end[1:], self.start[1:], strict=True))
        self.sink[self.section] = {
            "wall_s": round(wall, 3),
            "foreign_cpus": round(max(busy - ours, 0.0) / wall, 2),
            "steal_cpus": round(steal / wall, 2),
            "own_cpus": round(ours / wall, 2),
        }


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def power_of_ten(n: int) -> str:
    exponent = len(str(n)) - 1
    return f"1e{exponent}" if n == 10**exponent else str(n)





def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """Host, CPUs, kernel, Python, load average at the start, and the git commit measured."""
    info = {
        "hostname": socket.gethostname(),
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                check=False, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def write_json(results: dict, path: Path) -> None:
    """Writes through a temporary file, so that an interrupted run leaves no half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def finish_standalone(results: dict, notes: list[str], *, kind: str, title: str, body: str,
                      shm_before: set[str], started: datetime, wall_start: float,
                      path: Path | None) -> None:
    """The common end of a section run on its own: a note for new /dev/shm entries, the
    machine's load at the end, the notes and elapsed time into `results` (which has a
    "machine" entry), the JSON written to `path` (default:
    bench/results/<kind>-<host>-<YYYYMMDD-HHMMSS>.json), then the title, the body, the notes
    and where the results went, printed."""
    run_progress().close()
    new_shm = sorted(shm_entries() - shm_before)
    if new_shm:
        notes.append(f"new /dev/shm entries after the run (ours or another program's): {new_shm}")
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["notes"] = notes
    results["elapsed_s"] = round(time.perf_counter() - wall_start, 2)
    path = path or RESULTS_DIR / (
        f"{kind}-{results['machine']['hostname']}-{started.strftime('%Y%m%d-%H%M%S')}.json")
    write_json(results, path)
    print(title + "\n")
    print(body)
    if notes:
        print("\nNotes:")
        for line in notes:
            print(f"- {line}")
    print(f"\nResults: {path} ({results['elapsed_s']} s)")
