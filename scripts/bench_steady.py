#!/usr/bin/env python3
"""bench_steady.py -- checks that shmaccel's small calls cost nothing once warm.

The claim: 10^6 consecutive `pool.square(a, out=b)` on two SharedArrays of 1,000 float64 do
no shm_open, mmap or malloc on the hot path, and neither the client's nor the worker's
resident memory moves (+-1 %). Three measurements, each after a warm-up:

  * syscalls: a child Python process runs the calls under `strace -f` (which follows the
    worker it spawns), tracing only the memory-mapping and file-creating calls and the
    os.stat() of two marker paths; the calls traced between the markers are counted per name,
    for the client's threads and for the worker's. Then, if it works, a `strace -c -f`
    attached to both processes for the steady phase alone gives every syscall per call
    (futex included), a figure ptrace itself inflates;
  * malloc: bench/steady.c, linked against build/libshmaccel.a with the allocator wrapped
    (-Wl,--wrap), counts the C client library's malloc/calloc/realloc/free/posix_memalign
    (and mmap, shm_open...) during the calls;
  * RSS: in this process, the client's and the worker's resident set after the warm-up and
    after every tenth of the calls.

Prints a markdown table and writes the results (with the machine's description) to
bench/results/steady-<host>-<YYYYMMDD-HHMMSS>.json or --json PATH.

    PYTHONPATH=pyshim python3 scripts/bench_steady.py [--quick] [--json PATH]

--quick: 10^4 calls under strace and 10^5 for the rest (seconds). strace is optional (the
syscall part is skipped with a note when it is missing and cannot be installed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_BUILD,
    BENCH_SRC,
    ROOT,
    finish_standalone,
    machine_info,
    process_alive,
    run_c_program,
    run_progress,
    shm_entries,
)

SMALL_N = 1000  # float64 elements per call
FULL_CALLS = 10**6
QUICK_CALLS = 10**5
QUICK_STRACE_CALLS = 10**4
WARMUP_CALLS = 10**4
STRACE_BUDGET_S = 60.0  # the longest strace run of the full mode, roughly
SUMMARY_CALLS = {True: 10**4, False: 10**5}  # under strace -c (every syscall stops), by quick
RSS_SAMPLES = 10  # after every tenth of the calls
RSS_FLAT_PCT = 1.0

# What the strace run traces. The first two groups are what a steady call must not do; brk,
# mprotect (glibc grows a thread's malloc arena with it) and madvise (malloc trimming) are
# signs of a malloc that had to go to the kernel; the stat family carries the markers.
FORBIDDEN = ("mmap", "munmap", "mremap", "memfd_create", "openat", "ftruncate", "fallocate")
ALSO_TRACED = ("open", "shmget", "shmat", "shmdt", "shmctl", "brk", "mprotect", "madvise")
MARKER_CALLS = ("stat", "lstat", "fstat", "newfstatat", "statx")
TRACED = FORBIDDEN + ALSO_TRACED + MARKER_CALLS
MARKER_DIR = "/nonexistent"
BEGIN_MARKER = "shmaccel-steady-begin"
END_MARKER = "shmaccel-steady-end"

STEADY_SOURCE = BENCH_SRC / "steady.c"
STEADY_PROGRAM = BENCH_BUILD / "steady"
LIBRARY = ROOT / "build" / "libshmaccel.a"
HEADER = ROOT / "include" / "shmaccel.h"
STEADY_CFLAGS = ["-O2", "-std=c11", "-D_GNU_SOURCE", "-pthread", "-Wall", "-Wextra", "-Werror",
                 "-I", "include"]
# The allocator, and what sets up shared memory: every one of them libshmaccel.a calls
# (nm -u), plus posix_memalign, which it does not call today.
WRAPPED = ("malloc", "calloc", "realloc", "free", "posix_memalign", "mmap", "munmap", "shm_open",
           "memfd_create", "ftruncate", "posix_fallocate")
MALLOC_KEYS = ("malloc", "calloc", "realloc", "free", "posix_memalign")

# `PID syscall(` (a whole call or its first half), or `PID <... syscall resumed>`.
STRACE_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()")
# A row of `strace -c`: % time, seconds, usecs/call, calls, [errors,] syscall.
SUMMARY_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def log(message: str) -> None:
    run_progress().note(f"steady: {message}")


def power_of_ten(n: int) -> str:
    exponent = len(str(n)) - 1
    return f"10^{exponent}" if n == 10**exponent else f"{n:,}"


# -- the child processes ----------------------------------------------------------------------

def run_child(mode: str, calls: int) -> int:
    """The Python process that strace watches (`--child strace|attach N`): a private pool,
    WARMUP_CALLS calls, then `calls` more, delimited by the stat of two marker paths (strace)
    or by a handshake on stdin/stdout (attach). Prints one JSON line with the pids and thread
    ids of itself and its worker, read while they all still run."""
    import shmaccel

    pool = shmaccel.Pool()
    try:
        a = pool.array([float(i % 100) for i in range(SMALL_N)], "float64")
        b = pool.empty(SMALL_N, "float64")
        square = pool.square
        for _ in range(WARMUP_CALLS):
            square(a, out=b)
        ids = {"client_pid": os.getpid(), "worker_pid": pool.worker_pid,
               "client_tids": sorted(int(t) for t in os.listdir("/proc/self/task")),
               "worker_tids": sorted(int(t) for t in os.listdir(f"/proc/{pool.worker_pid}/task"))}
        if mode == "attach":
            print(json.dumps(ids), flush=True)
            sys.stdin.readline()  # strace is attached
        else:
            try:
                os.stat(f"{MARKER_DIR}/{BEGIN_MARKER}")
            except OSError:
                pass
        start = time.perf_counter()
        for _ in range(calls):
            square(a, out=b)
        ids["seconds"] = time.perf_counter() - start
        if mode == "attach":
            print(json.dumps({"seconds": ids["seconds"]}), flush=True)
            sys.stdin.readline()  # strace has detached
        else:
            try:
                os.stat(f"{MARKER_DIR}/{END_MARKER}")
            except OSError:
                pass
            print(json.dumps(ids), flush=True)
    finally:
        pool.close()
    return 0


def child_command(shmaccel: Any, mode: str, calls: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a child that imports this `shmaccel`."""
    env = dict(os.environ)
    package_parent = str(Path(shmaccel.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    env["SHMACCEL_WORKER"] = shmaccel.worker_path()
    return [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(calls)], env


# -- syscalls ---------------------------------------------------------------------------------

def find_strace(notes: list[str]) -> str | None:
    """strace's path, installing it with apt-get when root and it is missing."""
    found = shutil.which("strace")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        if not found:
            notes.append("strace not found: syscalls not traced (install it: "
                         "`apt-get install -y strace` or your distribution's package)")
        return found
    log("strace missing: apt-get install -y strace")
    try:
        subprocess.run(["apt-get", "install", "-y", "strace"], check=False, capture_output=True,
                       timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"apt-get install strace failed ({e}): syscalls not traced")
    found = shutil.which("strace")
    if not found:
        notes.append("strace could not be installed with apt-get: syscalls not traced")
    return found


def count_between_markers(lines: list[str], ids: dict) -> dict[str, Counter]:
    """Traced syscalls that started after the begin marker's stat and before the end marker's,
    by process (client, worker, other) and name."""
    client = {ids["client_pid"], *ids["client_tids"]}
    worker = {ids["worker_pid"], *ids["worker_tids"]}
    counts: dict[str, Counter] = {"client": Counter(), "worker": Counter(), "other": Counter()}
    inside = False
    for line in lines:
        match = STRACE_LINE.match(line)
        if match is None or match.group(2) is not None:  # exits, signals, second halves
            continue
        if BEGIN_MARKER in line:
            inside = True
            continue
        if END_MARKER in line:
            break
        if inside:
            tid, name = int(match.group(1)), match.group(3)
            who = "client" if tid in client else "worker" if tid in worker else "other"
            counts[who][name] += 1
    return counts


def trace_between_markers(shmaccel: Any, strace: str, calls: int, notes: list[str]) -> dict | None:
    """One strace run of `calls` calls: the counts between the markers and the time taken."""
    command, env = child_command(shmaccel, "strace", calls)
    with tempfile.TemporaryDirectory(prefix="shmaccel-steady-") as tmp:
        trace_log = Path(tmp) / "strace.log"
        full = [strace, "-f", "--seccomp-bpf", "-qq", "-e", f"trace={','.join(TRACED)}",
                "-e", "signal=none", "-o", str(trace_log), *command]
        log(f"strace run of {calls} calls: {' '.join(full[:8])} ... --child strace {calls}")
        start = time.perf_counter()
        try:
            result = subprocess.run(full, check=False, capture_output=True, text=True, env=env,
                                    timeout=max(300.0, 3 * STRACE_BUDGET_S))
        except (OSError, subprocess.TimeoutExpired) as e:
            notes.append(f"the strace run of {calls} calls failed: {e}")
            return None
        wall = time.perf_counter() - start
        if result.returncode != 0:
            notes.append(f"the strace run exited with {result.returncode}: "
                         f"{result.stderr.strip()[-2000:]}")
            return None
        try:
            ids = json.loads(result.stdout.strip().splitlines()[-1])
            lines = trace_log.read_text(errors="replace").splitlines()
        except (IndexError, json.JSONDecodeError, OSError) as e:
            notes.append(f"the strace run left no usable output ({e}): {result.stdout[-500:]}")
            return None
    if not any(BEGIN_MARKER in line for line in lines):
        notes.append("strace recorded no begin marker: its trace set misses the stat call "
                     "os.stat() makes here")
        return None
    if "seccomp" in result.stderr:
        notes.append(f"strace: {result.stderr.strip()[:300]}")
    counts = count_between_markers(lines, ids)
    between = {who: dict(sorted(c.items())) for who, c in counts.items()
               if who != "other" or c}
    return {"calls_traced": calls, "seconds": round(ids["seconds"], 3),
            "run_seconds": round(wall, 3), "between_markers": between,
            "forbidden_total": sum(c[name] for c in counts.values() for name in FORBIDDEN),
            "worker_threads": len(ids["worker_tids"]), "client_threads": len(ids["client_tids"])}


def wait_traced(tids: list[tuple[int, int]], timeout: float) -> bool:
    """Waits until every (pid, tid) has a tracer (strace attached to all threads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            traced = 0
            for pid, tid in tids:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    traced += any(line.startswith("TracerPid:") and line.split()[1] != "0"
                                  for line in f)
        except OSError:
            return False
        if traced == len(tids):
            return True
        time.sleep(0.01)
    return False


def summary_of_steady_phase(shmaccel: Any, strace: str, calls: int,
                            notes: list[str]) -> dict | None:
    """`strace -c -f` attached to the client and its worker after the warm-up and detached
    after `calls` calls: every syscall of the steady phase, counted. ptrace stops each
    syscall, which slows the calls and so changes how often each side gives up spinning and
    sleeps on a futex: the futex figures are an upper bound."""
    command, env = child_command(shmaccel, "attach", calls)
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=env)
    tracer: subprocess.Popen | None = None
    try:
        assert child.stdin is not None and child.stdout is not None
        ids = json.loads(child.stdout.readline())
        with tempfile.TemporaryDirectory(prefix="shmaccel-steady-") as tmp:
            out = Path(tmp) / "summary.txt"
            tracer = subprocess.Popen([strace, "-c", "-f", "-qq", "-o", str(out),
                                       "-p", str(ids["client_pid"]), "-p", str(ids["worker_pid"])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            tids = ([(ids["client_pid"], t) for t in ids["client_tids"]]
                    + [(ids["worker_pid"], t) for t in ids["worker_tids"]])
            if not wait_traced(tids, 10.0):
                notes.append("strace -c could not attach to every thread within 10 s "
                             "(ptrace restricted?): no syscall summary")
                return None
            child.stdin.write("go\n")
            child.stdin.flush()
            seconds = json.loads(child.stdout.readline())["seconds"]
            tracer.send_signal(signal.SIGINT)
            _, err = tracer.communicate(timeout=30)
            tracer = None
            child.stdin.write("exit\n")
            child.stdin.flush()
            table = out.read_text() if out.exists() else ""
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        notes.append(f"strace -c of the steady phase failed: {e}")
        return None
    finally:
        if tracer is not None:
            tracer.kill()
            tracer.wait()
        try:
            child.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    per_syscall = {}
    for line in table.splitlines():
        row = SUMMARY_ROW.match(line)
        if row and row.group(3) != "total":
            per_syscall[row.group(3)] = {"calls": int(row.group(1)),
                                         "errors": int(row.group(2) or 0)}
    if not per_syscall:
        notes.append(f"strace -c printed no table: {err.strip()[:300]}")
        return None
    total = sum(v["calls"] for v in per_syscall.values())
    return {"calls": calls, "seconds": round(seconds, 3), "syscalls": per_syscall,
            "syscalls_per_call": round(total / calls, 4)}


def not_traced() -> dict:
    return {"available": False, "calls_traced": 0, "seconds": 0.0,
            "between_markers": {"client": {}, "worker": {}}, "forbidden_total": 0}


def measure_syscalls(shmaccel: Any, quick: bool, notes: list[str]) -> dict:
    """The strace section: one run between markers (full mode: 10^6 calls when a short run
    says it takes at most about STRACE_BUDGET_S, else as many as fit), then the summary."""
    strace = find_strace(notes)
    if strace is None:
        return not_traced()
    result = trace_between_markers(shmaccel, strace, QUICK_STRACE_CALLS, notes)
    if result is not None and not quick:
        per_call = result["seconds"] / QUICK_STRACE_CALLS
        calls = FULL_CALLS
        if per_call * FULL_CALLS > 1.25 * STRACE_BUDGET_S:
            calls = max(QUICK_STRACE_CALLS, int(STRACE_BUDGET_S / per_call // 10**4 * 10**4))
            notes.append(f"under strace a call took {per_call * 1e6:.1f} µs: "
                         f"{power_of_ten(FULL_CALLS)} calls would take "
                         f"{per_call * FULL_CALLS:.0f} s, so {calls} were traced")
        if calls > QUICK_STRACE_CALLS:
            result = trace_between_markers(shmaccel, strace, calls, notes) or result
    if result is None:
        return not_traced()
    log("strace -c attached to the steady phase")
    result["summary"] = summary_of_steady_phase(shmaccel, strace, SUMMARY_CALLS[quick], notes)
    return {"available": True, **result}


# -- malloc in the C client -------------------------------------------------------------------

def build_steady(notes: list[str]) -> Path | None:
    """Compiles bench/steady.c against build/libshmaccel.a into build/bench/steady when it, the
    library or include/shmaccel.h is newer than the program. Returns the program, or None with
    a note."""
    if not LIBRARY.exists():
        notes.append(f"{LIBRARY.relative_to(ROOT)} missing (run make): malloc not counted")
        return None
    program = STEADY_PROGRAM
    newest = max(path.stat().st_mtime for path in (STEADY_SOURCE, LIBRARY, HEADER))
    if program.exists() and program.stat().st_mtime >= newest:
        return program
    BENCH_BUILD.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC") or "cc"
    command = [cc, *STEADY_CFLAGS, "-o", str(program.relative_to(ROOT)),
               str(STEADY_SOURCE.relative_to(ROOT)), str(LIBRARY.relative_to(ROOT)),
               "-Wl," + ",".join(f"--wrap={name}" for name in WRAPPED), "-lrt"]
    log(f"building {program.relative_to(ROOT)}: {' '.join(command)}")
    try:
        result = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True)
    except OSError as e:
        notes.append(f"could not run the C compiler {cc!r} ({e}): malloc not counted")
        return None
    if result.returncode != 0:
        notes.append(f"building steady.c failed, malloc not counted:\n{result.stderr.strip()}")
        return None
    return program


def measure_malloc(shmaccel: Any, calls: int, notes: list[str]) -> dict | None:
    program = build_steady(notes)
    if program is None:
        return None
    log(f"steady.c: {calls} calls")
    found = run_c_program(program, [shmaccel.worker_path(), "--calls", str(calls),
                                    "--warmup", str(WARMUP_CALLS), "--count", str(SMALL_N)],
                          notes)
    if found is None:
        return None
    return {"calls": found["calls"], **{key: found[key] for key in MALLOC_KEYS},
            **{key: found[key] for key in WRAPPED if key not in MALLOC_KEYS},
            "heap_in_use_change_bytes": found["heap_in_use_change_bytes"],
            "seconds": found["seconds"], "before_steady": found["before_steady"]}


# -- resident memory --------------------------------------------------------------------------

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kb(pid: int | None) -> int:
    """Resident set of this process (None, from /proc/self/statm) or of `pid` (VmRSS)."""
    if pid is None:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError(f"no VmRSS for pid {pid}")


def voluntary_switches(pid: int) -> int:
    """Times the threads of `pid` went to sleep (a futex wait among them), summed: what a
    steady call costs in sleeps, seen without slowing it down as strace does."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that just ended
    return total


def max_change_pct(samples: list[int]) -> float:
    """The sample farthest from the first, as a signed percentage of the first."""
    first = samples[0]
    farthest = max(samples, key=lambda s: abs(s - first))
    return round(100.0 * (farthest - first) / first, 3)


def measure_rss(shmaccel: Any, calls: int) -> tuple[dict, int]:
    """RSS of this process and of a private pool's worker after the warm-up and after every
    tenth of `calls` calls. Returns the section and the worker's pid."""
    with shmaccel.Pool() as pool:
        a = pool.array([float(i % 100) for i in range(SMALL_N)], "float64")
        b = pool.empty(SMALL_N, "float64")
        square = pool.square
        for _ in range(WARMUP_CALLS):
            square(a, out=b)
        client, worker = [rss_kb(None)], [rss_kb(pool.worker_pid)]
        step = calls // RSS_SAMPLES
        switches = (voluntary_switches(os.getpid()), voluntary_switches(pool.worker_pid))
        start = time.perf_counter()
        for _ in range(RSS_SAMPLES):
            for _ in range(step):
                square(a, out=b)
            client.append(rss_kb(None))
            worker.append(rss_kb(pool.worker_pid))
        seconds = time.perf_counter() - start
        # Sleeps in the sampling itself (reading /proc) are too few to matter.
        switches = (voluntary_switches(os.getpid()) - switches[0],
                    voluntary_switches(pool.worker_pid) - switches[1])
    return {"client": client, "worker": worker, "client_change_pct": max_change_pct(client),
            "worker_change_pct": max_change_pct(worker),
            "at_calls": [i * step for i in range(RSS_SAMPLES + 1)],
            "seconds": round(seconds, 3),
            "sleeps_per_call": {"client": round(switches[0] / (step * RSS_SAMPLES), 4),
                                "worker": round(switches[1] / (step * RSS_SAMPLES), 4)}
            }, pool.worker_pid


# -- the whole measurement --------------------------------------------------------------------

STEADY_STEPS = 3  # progress steps: RSS, mallocs, syscalls


def measure_steady(shmaccel: Any, quick: bool, notes: list[str]) -> dict:
    """The three measurements of the steady state (see the module's docstring), as
    {"calls", "strace", "malloc", "rss_kb"}. Every pool and worker it starts is gone on
    return; failures of a part become notes (and an empty or None part)."""
    calls = QUICK_CALLS if quick else FULL_CALLS
    progress = run_progress()
    progress.expect(STEADY_STEPS, part="steady")
    rss, worker_pid = measure_rss(shmaccel, calls)
    progress.advance(f"steady: RSS over {calls} calls")
    malloc = measure_malloc(shmaccel, calls, notes)
    progress.advance(f"steady: mallocs over {calls} calls")
    syscalls = measure_syscalls(shmaccel, quick, notes)
    progress.advance("steady: syscalls (strace -c)")
    if process_alive(worker_pid):
        notes.append(f"the RSS pool's worker {worker_pid} still runs after close")
    return {"calls": calls, "strace": syscalls, "malloc": malloc, "rss_kb": rss}


# -- the report -------------------------------------------------------------------------------

def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items() if n) or "none"


def verdict(ok: bool) -> str:
    return "ok" if ok else "**NO**"


def build_report(results: dict) -> str:
    steady = results["steady"]
    rows = ["| check | calls | client | worker | verdict |", "|---|---|---|---|---|"]
    trace = steady["strace"]
    if trace["available"]:
        between = trace["between_markers"]
        forbidden = {who: {name: n for name, n in c.items() if name in FORBIDDEN}
                     for who, c in between.items()}
        rows.append(f"| {', '.join(FORBIDDEN)} (strace, between markers) | "
                    f"{power_of_ten(trace['calls_traced'])} in {trace['seconds']} s | "
                    f"{counts_text(forbidden.get('client', {}))} | "
                    f"{counts_text(forbidden.get('worker', {}))} | "
                    f"{verdict(trace['forbidden_total'] == 0)} |")
        others = {who: {name: n for name, n in c.items() if name not in FORBIDDEN}
                  for who, c in between.items()}
        rows.append(f"| other traced: {', '.join(ALSO_TRACED + MARKER_CALLS)} | "
                    f"{power_of_ten(trace['calls_traced'])} | "
                    f"{counts_text(others.get('client', {}))} | "
                    f"{counts_text(others.get('worker', {}))} | "
                    f"{verdict(not any(others.values()))} |")
        if between.get("other"):
            rows.append(f"| traced in neither process | | {counts_text(between['other'])} | | |")
        summary = trace.get("summary")
        if summary:
            per_call = sorted(summary["syscalls"].items(), key=lambda kv: -kv[1]["calls"])
            text = ", ".join(f"{name} {v['calls'] / summary['calls']:.3g}"
                             for name, v in per_call[:6])
            rows.append(f"| every syscall per call (strace -c, both processes) | "
                        f"{power_of_ten(summary['calls'])} | {text} | | "
                        f"{summary['syscalls_per_call']:.3g}/call |")
    else:
        rows.append("| syscalls (strace) | | not measured | | |")
    malloc = steady["malloc"]
    if malloc is not None:
        allocs = {key: malloc[key] for key in MALLOC_KEYS}
        mapping = {key: malloc[key] for key in WRAPPED if key not in MALLOC_KEYS}
        rows.append(f"| malloc family in the C client (--wrap) | {power_of_ten(malloc['calls'])} "
                    f"in {malloc['seconds']:.3g} s | {counts_text(allocs)}; heap in use "
                    f"{malloc['heap_in_use_change_bytes']:+d} B | | "
                    f"{verdict(not any(allocs.values()))} |")
        rows.append(f"| mmap, shm_open... in the C client (--wrap) | "
                    f"{power_of_ten(malloc['calls'])} | {counts_text(mapping)} | | "
                    f"{verdict(not any(mapping.values()))} |")
    else:
        rows.append("| malloc in the C client | | not measured | | |")
    rss = steady["rss_kb"]
    flat = max(abs(rss["client_change_pct"]), abs(rss["worker_change_pct"])) <= RSS_FLAT_PCT
    rows.append(f"| RSS kB: first -> last (largest change) | {power_of_ten(steady['calls'])} in "
                f"{rss['seconds']} s | {rss['client'][0]} -> {rss['client'][-1]} "
                f"({rss['client_change_pct']:+.2f} %) | {rss['worker'][0]} -> {rss['worker'][-1]} "
                f"({rss['worker_change_pct']:+.2f} %) | {verdict(flat)} |")
    sleeps = rss["sleeps_per_call"]
    rows.append(f"| voluntary context switches per call (no tracer) | "
                f"{power_of_ten(steady['calls'])} | {sleeps['client']:.3g} | "
                f"{sleeps['worker']:.3g} | |")
    return "\n".join(rows)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_STRACE_CALLS} calls under strace, {QUICK_CALLS} otherwise")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="where to write the results "
                             "(default: bench/results/steady-<host>-<YYYYMMDD-HHMMSS>.json)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CALLS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args.child[0], int(args.child[1]))
    try:
        import shmaccel
    except ImportError as e:
        print(f"cannot import shmaccel ({e}): run `make` and set PYTHONPATH=pyshim",
              file=sys.stderr)
        return 1
    started = datetime.now()
    wall_start = time.perf_counter()
    notes: list[str] = []
    shm_before = shm_entries()
    results: dict = {
        "machine": machine_info(),
        "config": {"quick": args.quick, "small_n": SMALL_N, "warmup_calls": WARMUP_CALLS,
                   "traced": list(TRACED), "forbidden": list(FORBIDDEN),
                   "wrapped": list(WRAPPED), "shmaccel": shmaccel.__version__},
        "started": started.isoformat(timespec="seconds"),
    }
    results["steady"] = measure_steady(shmaccel, args.quick, notes)
    m = results["machine"]
    finish_standalone(results, notes, kind="steady",
                      title=f"## shmaccel steady state{' (quick)' if args.quick else ''}: "
                            f"square of {SMALL_N} float64 on SharedArrays (out=), after "
                            f"{WARMUP_CALLS} warm-up calls; {m['hostname']}, "
                            f"{m['usable_cpus']} CPUs",
                      body=build_report(results), shm_before=shm_before, started=started,
                      wall_start=wall_start, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
