"""bench_goals.py -- the performance goals of issue 6, checked against one run's results.

Each goal is a ratio measured within the same run (never an absolute time), so that a slower
or faster machine moves both sides alike. `evaluate(results)` returns, per goal, the figure,
the target and whether it holds (None when the run did not measure it: a section skipped or
a peer not installed); `goals_table()` renders them as markdown. bench.py stores both in the
results JSON and prints the table last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _median(stat: Any) -> float | None:
    if isinstance(stat, dict):
        value = stat.get("median")
        return float(value) if value is not None else None
    return float(stat) if isinstance(stat, (int, float)) else None


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def _size_rows(results: dict) -> list[dict]:
    return (results.get("sizes") or {}).get("rows") or []


def _largest_n(results: dict, dtype: str, op: str = "square") -> int | None:
    ns = [r["n"] for r in _size_rows(results) if r["dtype"] == dtype and r["op"] == op
          and r["method"] == "shmaccel_shared_inplace"]
    return max(ns) if ns else None


def _cell(results: dict, method: str, dtype: str, n: int | None, op: str = "square",
          key: str = "seconds") -> float | None:
    """The median of `key` ("seconds" or "gbs") of one row of the size sweep."""
    for row in _size_rows(results):
        if (row["method"], row["dtype"], row["n"], row["op"]) == (method, dtype, n, op):
            return _median(row.get(key))
    return None


def _pct_of_limit(results: dict, method: str, limit: str, dtype: str) -> float | None:
    n = _largest_n(results, dtype)
    mine, ceiling = _cell(results, method, dtype, n, key="gbs"), _cell(
        results, limit, dtype, n, key="gbs")
    value = _ratio(mine, ceiling)
    return value * 100 if value is not None else None


def _limit(results: dict, task: str, dtype: str) -> str:
    """The C limit that goal 1 compares with: the one over the SharedArrays' own memory
    (c_limit_here_*) when the run has it at the largest size, else limit.c's own memory.
    Under a hypervisor the same code runs at different speeds on different pages (how the
    host backs them), and the SharedArrays' pages are the ones shmaccel must use."""
    here = f"c_limit_here_{task}"
    if _cell(results, here, dtype, _largest_n(results, dtype)) is not None:
        return here
    return f"c_limit_{task}"


def _big_goals(results: dict) -> list[tuple[str, float | None, str, Callable[[float], bool]]]:
    n = _largest_n(results, "float64")
    size = f"10^{len(str(n)) - 1}" if n else "largest"
    limit_in = _limit(results, "inplace", "float64")
    inplace = _pct_of_limit(results, "shmaccel_shared_inplace", limit_in, "float64")
    out = _pct_of_limit(results, "shmaccel_shared_out", _limit(results, "out", "float64"),
                        "float64")
    vs_numpy = _ratio(_cell(results, "numpy_inplace", "float64", n),
                      _cell(results, "shmaccel_shared_inplace", "float64", n))
    bound = _ratio(_cell(results, "numpy_inplace", "float64", n),
                   _cell(results, limit_in, "float64", n))
    # The same against limit.c's own, freshly touched memory, for the record.
    separate = _pct_of_limit(results, "shmaccel_shared_inplace", "c_limit_inplace", "float64")
    goals = [
        (f"1. square {size} float64 SharedArray in place, % of the C limit ({limit_in})",
         inplace, ">= 85 %", lambda v: v >= 85),
        ("1. same, speed-up over numpy in place", vs_numpy, ">= 1.5x", lambda v: v >= 1.5),
        # The most any code running this kernel on every core of this machine gains over
        # numpy's one thread: the C limit's own speed-up. Below 1.5x the goal above cannot
        # hold here, whatever shmaccel does.
        ("1. (bound) same for the C limit: numpy in place / C limit in place", bound,
         ">= 1.5x", lambda v: v >= 1.5),
        (f"1. square {size} float64 SharedArray out=, % of the C limit", out, ">= 85 %",
         lambda v: v >= 85),
        ("1. (diagnostic) in place, % of the C limit over limit.c's own memory", separate,
         ">= 85 %", lambda v: v >= 85),
    ]
    for dtype in ("int32", "int64"):
        mine = _pct_of_limit(results, "shmaccel_shared_inplace", _limit(results, "inplace", dtype),
                             dtype)
        goals.append((f"1. {dtype} in place, % of its C limit / float64's", _ratio(mine, inplace),
                      "0.9 - 1.1", lambda v: 0.9 <= v <= 1.1))
    return goals


def evaluate(results: dict) -> list[dict]:
    """Every goal: {"goal", "figure", "target", "holds"} (holds None: not measured)."""
    ratios = results.get("ratios") or {}
    figures = results.get("figures") or {}
    conc = results.get("concurrency") or {}
    gil_bound = conc.get("gil_bound") or {}
    steady = results.get("steady") or {}

    list_1e6 = _ratio(_cell(results, "list_comprehension", "int64", 10**6, op="double"),
                      _cell(results, "shmaccel_list", "int64", 10**6, op="double"))
    list_1e5 = _ratio(_median(figures.get("comprehension_double_list")),
                      _median(figures.get("shmaccel_double_list")))
    strace = steady.get("strace") or {}
    malloc = steady.get("malloc")
    rss = steady.get("rss_kb") or {}
    allocations = (sum(malloc.get(k, 0) for k in ("malloc", "calloc", "realloc",
                                                     "posix_memalign"))
                   if malloc else None)
    rss_change = (max(abs(rss["client_change_pct"]), abs(rss["worker_change_pct"]))
                  if "client_change_pct" in rss and "worker_change_pct" in rss else None)

    goals: list[tuple[str, float | None, str, Callable[[float], bool]]] = [
        *_big_goals(results),
        ("2. 1e3 round trip / numpy's own call (a core idle)",
         ratios.get("rtt_default_over_numpy"), "<= 2x", lambda v: v <= 2),
        ("2. 1e3 round trip when it must block / cold C semaphore ping-pong",
         ratios.get("rtt_blocking_over_sem_cold_cross_cpu"), "<= 1.3x", lambda v: v <= 1.3),
        ("2. ProcessPoolExecutor round trip / 1e3 round trip",
         ratios.get("process_pool_over_rtt_default"), ">= 100x", lambda v: v >= 100),
        ("3. double(list of 1e5 ints): speed-up over the list comprehension", list_1e5,
         ">= 2x", lambda v: v >= 2),
        ("3. (bound) comprehension / making 1e5 result ints alone (array.tolist)",
         ratios.get("list_best_possible_speedup"), ">= 2x", lambda v: v >= 2),
        ("3. same at 1e6", list_1e6, ">= 1x", lambda v: v >= 1),
        ("4. 64 threads of 1e3 calls: % of 1-thread rate x cores",
         conc.get("goal_64_threads_pct"), ">= 50 %", lambda v: v >= 50),
        # What 64 threads keep of pure-Python work's rate (work as long as a call): a call
        # that keeps the GIL does no better.
        ("4. (bound) same for pure-Python work as long as one call (it holds the GIL, as a "
         "small call does)", gil_bound.get("pct_of_1_thread_x_cores"), ">= 50 %",
         lambda v: v >= 50),
        # ... and with every stall longer than waking a sleeping thread hidden by releasing
        # the GIL for free: an estimate of the best mix of both (measure_gil_bound).
        ("4. (bound) 64 threads, % of 1-thread rate x cores, the best mix of keeping and "
         "releasing the GIL (stalls beyond a thread's wake-up hidden for free; an estimate)",
         gil_bound.get("overlap_bound_pct"), ">= 50 %", lambda v: v >= 50),
        ("4. (diagnostic) 64 threads, % of 1-thread rate x cores, GIL switch interval 50 ms "
         "instead of CPython's 5 ms",
         (conc.get("switch_interval_diagnostic") or {}).get("pct_of_1_thread_x_cores"),
         ">= 50 %", lambda v: v >= 50),
        ("4. counter thread while 8 threads wait on long calls: % of its solo rate",
         (conc.get("gil") or {}).get("pct_of_solo"), ">= 80 %", lambda v: v >= 80),
        ("5. shm_open/mmap/munmap/memfd/ftruncate syscalls during 1e6 small calls",
         strace.get("forbidden_total") if strace.get("available") else None, "0",
         lambda v: v == 0),
        ("5. malloc/calloc/realloc calls in the C client during 1e6 calls", allocations, "0",
         lambda v: v == 0),
        ("5. RSS change of client and worker over 1e6 calls (largest, %)", rss_change,
         "<= 1 %", lambda v: v <= 1),
    ]
    return [{"goal": name, "figure": value, "target": target,
             "holds": None if value is None else bool(check(value))}
            for name, value, target, check in goals]


def goals_table(goals: list[dict]) -> str:
    """The goals as a markdown table."""
    rows = ["| goal | measured | target | holds |", "|---|---:|---:|:---:|"]
    for g in goals:
        value = g["figure"]
        shown = "not measured" if value is None else (
            f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}")
        mark = {True: "yes", False: "**no**", None: "–"}[g["holds"]]
        rows.append(f"| {g['goal']} | {shown} | {g['target']} | {mark} |")
    return "\n".join(rows)
