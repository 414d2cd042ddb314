#!/usr/bin/env python3
"""bench_plots.py -- the charts and markdown tables of a bench.py results JSON.

bench.py imports it (`plot_all`, `markdown_tables`); run alone, it redraws the charts of a
results file next to it (or in --out-dir) and prints its tables:

    python3 scripts/bench_plots.py RESULTS.json [--out-dir DIR]

Each section of the results ("sizes", "concurrency", "steady") is optional: a missing one has
no chart and no table. Without matplotlib there are no charts, only a note saying so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Every method bench.py may measure, in the order the charts and tables show them, with the
# colour it keeps in every chart.
METHOD_COLOURS = {
    "shmaccel_shared_inplace": "#1f77b4",
    "shmaccel_shared_out": "#17becf",
    "shmaccel_numpy": "#2ca02c",
    "shmaccel_list": "#9467bd",
    "numpy_expr": "#ff7f0e",
    "numpy_out": "#d62728",
    "numpy_inplace": "#e377c2",
    "numexpr": "#8c564b",
    "list_comprehension": "#bcbd22",
    "mp_pool_map": "#98df8a",
    "process_pool_executor": "#c5b0d5",
    "c_limit_inplace": "#000000",
    "c_limit_out": "#555555",
    "c_memcpy": "#999999",
}
SPARE_COLOURS = ("#ffbb78", "#ff9896", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#aec7e8")
THREAD_COLOURS = {1: "#1f77b4", 4: "#ff7f0e", 16: "#2ca02c", 64: "#d62728"}
BASELINE = "numpy_out"  # speed-ups are over numpy writing into a preallocated out=
LIMITS = ("c_limit_inplace", "c_limit_out")
CDF_N = 1000
# What the steady state must not do between its markers (bench_steady.py's forbidden_total).
FORBIDDEN = ("mmap", "munmap", "mremap", "memfd_create", "openat", "ftruncate", "fallocate")
ALLOCATORS = ("malloc", "calloc", "realloc", "posix_memalign")
FIGSIZE = (8, 5)


# -- reading the results ----------------------------------------------------------------------

def section(results: dict, name: str) -> dict:
    """One section of the suite's results ("sizes", "concurrency", "steady"); {} when absent.

    Also reads the JSON a section's own script writes when run alone, which holds that
    section's keys at the top level next to "machine" and "started"."""
    value = results.get(name)
    if isinstance(value, dict):
        return value
    if "rows" not in results:
        return {}
    if name == "sizes" and isinstance(value, list):
        return results
    if name == "concurrency" and ("gil" in results or "single_thread_calls_per_s" in results):
        return results
    return {}


def median(value: Any) -> float | None:
    """The median of a summary dict, or a plain number as it is; None for anything else."""
    if isinstance(value, dict):
        value = value.get("median")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def size_rows(results: dict, op: str | None = None, dtype: str | None = None) -> list[dict]:
    """The rows of the size sweep that have a median time, optionally of one op and dtype."""
    sizes = section(results, "sizes")
    return [row for row in sizes.get("rows") or []
            if median(row.get("seconds")) and (op is None or row.get("op") == op)
            and (dtype is None or row.get("dtype") == dtype)]


def method_order(rows: Iterable[dict]) -> list[str]:
    """The methods of `rows`: the known ones in their usual order, then any others as found."""
    present: list[str] = []
    for row in rows:
        if row["method"] not in present:
            present.append(row["method"])
    known = [m for m in METHOD_COLOURS if m in present]
    return known + [m for m in present if m not in METHOD_COLOURS]


def labels_of(rows: Iterable[dict]) -> dict[str, str]:
    return {row["method"]: row.get("label") or row["method"] for row in rows}


def kinds_of(rows: Iterable[dict]) -> dict[str, str]:
    return {row["method"]: row.get("kind", "peer") for row in rows}


def colour(method: str, methods: list[str]) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    unknown = [m for m in methods if m not in METHOD_COLOURS]
    return SPARE_COLOURS[unknown.index(method) % len(SPARE_COLOURS)]


def by_n(rows: Iterable[dict], method: str) -> dict[int, dict]:
    """The time summaries of one method, by array size."""
    return {int(row["n"]): row["seconds"] for row in rows if row["method"] == method}


def dtypes_of(results: dict) -> list[str]:
    listed = section(results, "sizes").get("dtypes") or []
    found = [row.get("dtype") for row in size_rows(results)]
    return [d for d in dict.fromkeys([*listed, *found]) if d is not None]


def ops_of(results: dict) -> list[str]:
    listed = section(results, "sizes").get("ops") or []
    found = [row.get("op") for row in size_rows(results)]
    return [o for o in dict.fromkeys([*listed, *found]) if o is not None]


def concurrency_rows(results: dict, impl: str | None = None) -> list[dict]:
    rows = section(results, "concurrency").get("rows") or []
    return [row for row in rows if impl is None or row.get("impl") == impl]


# -- formatting -------------------------------------------------------------------------------

def fmt(value: float | None) -> str:
    """Three significant figures, without an exponent below a million."""
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_time(seconds: float | None) -> str:
    """A time in the unit that keeps it between 1 and 1000: ns, µs, ms or s."""
    if seconds is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{fmt(seconds / scale)} {unit}"
    return f"{fmt(seconds / 1e-9)} ns"


def fmt_rate(value: float | None) -> str:
    """A count per second with an SI prefix: 12.3k, 4.56M."""
    if value is None:
        return "n/a"
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{fmt(value / scale)}{prefix}"
    return fmt(value)


def fmt_speedup(value: float | None) -> str:
    return "n/a" if value is None else f"{fmt(value)}×"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def power_of_ten(n: int) -> str:
    exponent = len(str(n)) - 1
    return f"10^{exponent}" if n == 10**exponent and n >= 10 else str(n)


def table(header: list[str], rows: list[list[str]], align_left: int = 1) -> str:
    """A markdown table, its first `align_left` columns left-aligned and the others right."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if i < align_left else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def machine_line(results: dict) -> str:
    """Which machine and when, for the second line of every chart title."""
    m = results.get("machine") or {}
    parts = [m.get("hostname"), m.get("cpu_model")]
    cpus = m.get("usable_cpus") or m.get("nproc")
    if cpus:
        parts.append(f"{cpus} CPUs")
    started = results.get("started")
    if started:
        parts.append(str(started)[:16].replace("T", " "))
    return ", ".join(str(p) for p in parts if p) or "unknown machine"


# -- the charts -------------------------------------------------------------------------------

def plot_all(results: dict, out_dir: Path, stem: str, notes: list[str]) -> list[Path]:
    """Draws every chart the results have data for into out_dir as <stem>-<chart>.png.

    Returns the files written. Without matplotlib it writes nothing and adds a note saying how
    to get it; a chart that fails to draw is left out with a note, and the others are drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.container import Container
    except ImportError:
        notes.append("matplotlib not installed: no plots (pip install matplotlib)")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    charts: list[tuple[str, Any]] = [
        (f"time-vs-size-{dtype}", lambda ax, d=dtype: plot_time_vs_size(ax, results, d))
        for dtype in dtypes_of(results)]
    charts += [("speedup", lambda ax: plot_speedup(ax, results)),
               ("latency-cdf", lambda ax: plot_latency_cdf(ax, results)),
               ("concurrency", lambda ax: plot_concurrency(ax, results))]
    written = []
    for name, draw in charts:
        path = out_dir / f"{stem}-{name}.png"
        fig, ax = plt.subplots(figsize=FIGSIZE)
        try:
            what = draw(ax)
            if what is None:  # nothing to draw for this chart
                continue
            ax.set_title(f"{what}\n{machine_line(results)}", fontsize=10)
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                # The measured series (error-bar containers) above the reference lines.
                order = sorted(range(len(handles)),
                               key=lambda i: not isinstance(handles[i], Container))
                ax.legend([handles[i] for i in order], [labels[i] for i in order],
                          loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                          frameon=False)
            fig.savefig(path, dpi=110, bbox_inches="tight")
            written.append(path)
        except (KeyError, TypeError, ValueError) as e:
            notes.append(f"plot {name} left out: {type(e).__name__}: {e}")
        finally:
            plt.close(fig)
    if written:
        notes.append(f"plots: {', '.join(str(p) for p in written)}")
    return written


def spread(stat: Any) -> tuple[float, float, float]:
    """The median of a summary, and how far below and above it its min and max lie (0 for a
    plain number or a missing end): the error bars of one point. Callers keep only the points
    that have a median; one without counts as 0."""
    mid = median(stat) or 0.0
    low = median(stat.get("min")) if isinstance(stat, dict) else None
    high = median(stat.get("max")) if isinstance(stat, dict) else None
    return (mid, max(mid - low, 0.0) if low is not None else 0.0,
            max(high - mid, 0.0) if high is not None else 0.0)


def log_grid(ax: Any) -> None:
    ax.grid(True, which="major", linewidth=0.6, alpha=0.6)
    ax.grid(True, which="minor", linewidth=0.3, alpha=0.3)


def plot_time_vs_size(ax: Any, results: dict, dtype: str) -> str | None:
    """Seconds per square vs n, log-log, one line per method, min-max error bars."""
    rows = size_rows(results, "square", dtype)
    if not rows:
        return None
    methods, labels, kinds = method_order(rows), labels_of(rows), kinds_of(rows)
    for method in methods:
        points = [(n, spread(stat)) for n, stat in sorted(by_n(rows, method).items())]
        ns = [n for n, _ in points]
        mid = [m for _, (m, _, _) in points]
        below = [b for _, (_, b, _) in points]
        above = [a for _, (_, _, a) in points]
        limit = kinds[method] == "limit"
        ax.errorbar(ns, mid, yerr=[below, above], label=labels[method],
                    color=colour(method, methods), linestyle="--" if limit else "-",
                    marker=None if limit else "o", markersize=3.5, linewidth=1.3, capsize=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("elements (n)")
    ax.set_ylabel("seconds per call (median, bars min–max)")
    log_grid(ax)
    return f"square of {dtype}: time per call vs size"


def plot_speedup(ax: Any, results: dict) -> str | None:
    """numpy_out's time over each method's time vs n, float64 square."""
    rows = size_rows(results, "square", "float64")
    base = by_n(rows, BASELINE)
    if not base:
        return None
    methods, labels, kinds = method_order(rows), labels_of(rows), kinds_of(rows)
    shown = [m for m in methods
             if kinds[m] == "shmaccel" or m == "numexpr" or m in LIMITS]
    drawn = False
    for method in shown:
        points = [(n, base[n]["median"] / s["median"])
                  for n, s in sorted(by_n(rows, method).items()) if n in base]
        if not points:
            continue
        limit = kinds[method] == "limit"
        ax.plot([n for n, _ in points], [r for _, r in points], label=labels[method],
                color=colour(method, methods), linestyle="--" if limit else "-",
                marker=None if limit else "o", markersize=3.5, linewidth=1.3)
        drawn = True
    if not drawn:
        return None
    ax.axhline(1.0, color="#d62728", linewidth=1.0, linestyle=":",
               label=f"{labels.get(BASELINE, BASELINE)} (= 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("elements (n)")
    ax.set_ylabel(f"speed-up over {labels.get(BASELINE, BASELINE)} (median times)")
    log_grid(ax)
    return "square of float64: speed-up over numpy with out= vs size"


def plot_latency_cdf(ax: Any, results: dict) -> str | None:
    """The CDF of call latency at n=1000 per thread count, shmaccel solid, numpy dashed.
    A row without its sorted samples is drawn from its percentiles, as markers."""
    rows = [row for row in concurrency_rows(results) if row.get("n") == CDF_N]
    if not rows:
        return None
    threads = sorted({int(row["threads"]) for row in rows})
    spare = iter(SPARE_COLOURS)
    colours = {t: THREAD_COLOURS.get(t) or next(spare, "#7f7f7f") for t in threads}
    drawn = False
    for impl, style in (("shmaccel", "-"), ("numpy", "--")):
        for row in sorted((r for r in rows if r.get("impl") == impl),
                          key=lambda r: int(r["threads"])):
            t = int(row["threads"])
            label = f"{impl}, {t} thread{'s' if t != 1 else ''}"
            sample = sorted(v for v in row.get("latency_sample_us") or [] if v and v > 0)
            if sample:
                fractions = [(i + 1) / len(sample) for i in range(len(sample))]
                ax.step(sample, fractions, where="post", color=colours[t], linestyle=style,
                        linewidth=1.3, label=label)
                drawn = True
                continue
            pcts = row.get("latency_us") or {}
            points = [(pcts[k], q) for k, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99),
                                                ("max", 1.0)) if median(pcts.get(k))]
            if points:
                ax.plot([v for v, _ in points], [q for _, q in points], color=colours[t],
                        linestyle=style, marker="o", markersize=3.5, label=label + " (pcts)")
                drawn = True
    if not drawn:
        return None
    ax.set_xscale("log")
    ax.set_ylim(0, 1.005)
    ax.set_xlabel("call latency (µs)")
    ax.set_ylabel("fraction of calls at or below")
    log_grid(ax)
    return f"latency of square calls on {CDF_N} elements, N threads calling at once"


def plot_concurrency(ax: Any, results: dict) -> str | None:
    """Aggregate calls/s vs threads per n, shmaccel solid, numpy dashed; one thread's
    sequential rate dotted, and the core count as a vertical line."""
    conc = section(results, "concurrency")
    rows = concurrency_rows(results)
    if not rows:
        return None
    sizes = sorted({int(row["n"]) for row in rows})
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
    colours = {n: palette[i % len(palette)] for i, n in enumerate(sizes)}
    drawn = False
    for impl, style in (("shmaccel", "-"), ("numpy", "--")):
        for n in sizes:
            points = sorted(((int(r["threads"]), spread(r["calls_per_s"])) for r in rows
                             if r.get("impl") == impl and int(r["n"]) == n
                             and median(r.get("calls_per_s"))), key=lambda p: p[0])
            if not points:
                continue
            mid = [m for _, (m, _, _) in points]
            below = [b for _, (_, b, _) in points]
            above = [a for _, (_, _, a) in points]
            ax.errorbar([t for t, _ in points], mid, yerr=[below, above], color=colours[n],
                        linestyle=style, marker="o", markersize=3.5, linewidth=1.3,
                        capsize=2, label=f"{impl}, n={power_of_ten(n)}")
            drawn = True
    if not drawn:
        return None
    single = conc.get("single_thread_calls_per_s") or {}
    for n in sizes:
        rate = median(single.get(str(n), single.get(n)))
        if rate:
            ax.axhline(rate, color=colours[n], linestyle=":", linewidth=1.0,
                       label=f"shmaccel, one thread in a loop, n={power_of_ten(n)}")
    cores = median(conc.get("cores"))
    if cores:
        ax.axvline(cores, color="#7f7f7f", linestyle="-.", linewidth=0.8,
                   label=f"{cores:.0f} cores")
    threads = sorted({int(row["threads"]) for row in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(threads, [str(t) for t in threads])
    ax.set_yscale("log")
    ax.set_xlabel("threads calling at once")
    ax.set_ylabel("calls/s, all threads (median, bars min–max)")
    log_grid(ax)
    return "square calls per second vs calling threads"


# -- the tables -------------------------------------------------------------------------------

def markdown_tables(results: dict) -> str:
    """Markdown tables of each section present: times by size, bandwidth by dtype,
    concurrency, the GIL counter, the steady state. An empty string when there is none."""
    parts = [table_times(results), table_bandwidth(results), table_skipped(results),
             table_concurrency(results),
             table_gil(results), table_steady(results)]
    return "\n\n".join(p for p in parts if p)


def table_times(results: dict) -> str:
    """(a) float64 square: median time per n and method, speed-up over numpy_out."""
    rows = size_rows(results, "square", "float64")
    if not rows:
        return ""
    methods, labels = method_order(rows), labels_of(rows)
    base = by_n(rows, BASELINE)
    series = {m: by_n(rows, m) for m in methods}
    body = []
    for n in sorted({int(row["n"]) for row in rows}):
        cells = [power_of_ten(n)]
        for m in methods:
            stat = series[m].get(n)
            if stat is None:
                cells.append("–")
                continue
            cell = fmt_time(stat["median"])
            if n in base and m != BASELINE:
                cell += f" ({fmt_speedup(base[n]['median'] / stat['median'])})"
            cells.append(cell)
        body.append(cells)
    speedup = f" (speed-up over {labels[BASELINE]})" if base else ""
    return (f"### square of float64: median time per call{speedup}\n\n"
            + table(["n", *(labels[m] for m in methods)], body))


def table_skipped(results: dict) -> str:
    """What the size sweep left out, and why."""
    skipped = section(results, "sizes").get("skipped") or []
    if not skipped:
        return ""
    return "Left out of the size sweep: " + "; ".join(
        f"{s.get('method', '?')} ({s.get('reason', 'no reason given')})" for s in skipped) + "."


def table_bandwidth(results: dict) -> str:
    """(b) per op and dtype at its largest n: GB/s of each method, % of the C limits."""
    sections = []
    for op in ops_of(results):
        columns = []  # (dtype, n, rows at that n)
        for dtype in dtypes_of(results):
            rows = [r for r in size_rows(results, op, dtype) if median(r.get("gbs"))]
            if rows:
                n = max(int(r["n"]) for r in rows)
                columns.append((dtype, n, [r for r in rows if int(r["n"]) == n]))
        if not columns:
            continue
        all_rows = [r for _, _, rows in columns for r in rows]
        methods, labels = method_order(all_rows), labels_of(all_rows)
        gbs = {(dtype, r["method"]): float(r["gbs"]) for dtype, _, rows in columns for r in rows}
        kinds = kinds_of(all_rows)
        limit_names = [labels[m] for m in LIMITS if m in methods]
        body = []
        for m in methods:
            cells = [labels[m]]
            for dtype, _, _ in columns:
                value = gbs.get((dtype, m))
                if value is None:
                    cells.append("–")
                    continue
                shares = [fmt_pct(100 * value / gbs[(dtype, lim)])
                          if gbs.get((dtype, lim)) else "n/a"
                          for lim in LIMITS if lim in methods]
                cells.append(f"{fmt(value)}" + (f" ({' / '.join(shares)})"
                                                if shares and kinds[m] != "limit" else ""))
            body.append(cells)
        share_note = (f" (% of {' / '.join(limit_names)})" if limit_names else "")
        sections.append(f"### {op}: GB/s at the largest n{share_note}\n\n"
                        + table(["method", *(f"{d}, n={power_of_ten(n)}"
                                             for d, n, _ in columns)], body))
    return "\n\n".join(sections)


def table_concurrency(results: dict) -> str:
    """(c) concurrency: threads x n, calls/s, p50/p99, errors, shmaccel vs numpy."""
    conc = section(results, "concurrency")
    rows = concurrency_rows(results)
    if not rows:
        return ""
    cells_by = {(r.get("impl"), int(r["threads"]), int(r["n"])): r for r in rows}
    impls = [i for i in ("shmaccel", "numpy") if any(r.get("impl") == i for r in rows)]
    impls += sorted({str(r.get("impl")) for r in rows} - set(impls))
    header = ["threads", "n"]
    for impl in impls:
        header += [f"{impl} calls/s", f"{impl} p50 / p99 µs", f"{impl} errors"]
    body = []
    for n in sorted({int(r["n"]) for r in rows}):
        for t in sorted({int(r["threads"]) for r in rows}):
            if not any((impl, t, n) in cells_by for impl in impls):
                continue
            cells = [str(t), power_of_ten(n)]
            for impl in impls:
                row = cells_by.get((impl, t, n))
                if row is None:
                    cells += ["–", "–", "–"]
                    continue
                lat = row.get("latency_us") or {}
                errors = row.get("errors")
                cells += [fmt_rate(median(row.get("calls_per_s"))),
                          f"{fmt(median(lat.get('p50')))} / {fmt(median(lat.get('p99')))}",
                          "n/a" if errors is None else str(errors)]
            body.append(cells)
    out = "### concurrency: N threads calling square at once\n\n" + table(header, body, 2)
    facts = []
    single = conc.get("single_thread_calls_per_s") or {}
    if single:
        facts.append("shmaccel, one thread calling in a loop: " + ", ".join(
            f"{fmt_rate(median(v))} calls/s at n={power_of_ten(int(k))}"
            for k, v in sorted(single.items(), key=lambda kv: int(kv[0]))
            if median(v) is not None))
    goal = median(conc.get("goal_64_threads_pct"))
    if goal is not None:
        facts.append(f"shmaccel with 64 threads at n={power_of_ten(CDF_N)}: {fmt_pct(goal)} of "
                     "one thread's rate × cores")
    if conc.get("cores") is not None:
        facts.append(f"{conc['cores']} cores")
    diag = conc.get("switch_interval_diagnostic")
    if diag:
        facts.append(f"the same 64 threads with a {diag['switch_interval_s'] * 1e3:.0f} ms GIL "
                     f"switch interval (CPython's default is 5 ms): "
                     f"{fmt_rate(median(diag['calls_per_s']))} calls/s, "
                     f"{fmt_pct(diag['pct_of_1_thread_x_cores'])} of one thread's rate × cores")
    if facts:
        out += "\n\n" + "; ".join(facts) + "."
    return out


def table_gil(results: dict) -> str:
    """(d) the GIL counter: how fast a pure-Python thread counts alone and while others call."""
    gil = section(results, "concurrency").get("gil") or {}
    solo = median(gil.get("solo_rate"))
    if solo is None:
        return ""
    waiting = gil.get("waiting_threads", "?")
    call = gil.get("call", "square")
    body = [["counting alone", fmt_rate(solo), "100%"]]
    during = median(gil.get("during_rate"))
    pct = median(gil.get("pct_of_solo"))
    if pct is None and during is not None:
        pct = 100 * during / solo
    body.append([f"while {waiting} threads wait in shmaccel {call}", fmt_rate(during),
                 fmt_pct(pct)])
    numpy_during = median(gil.get("numpy_during_rate"))
    if numpy_during is not None:
        numpy_pct = median(gil.get("numpy_pct_of_solo"))
        if numpy_pct is None:
            numpy_pct = 100 * numpy_during / solo
        body.append([f"while {waiting} threads run the same in numpy", fmt_rate(numpy_during),
                     fmt_pct(numpy_pct)])
    out = ("### GIL: a pure-Python counter thread\n\n"
           + table(["counter", "counts/s", "% of alone"], body))
    if gil.get("pool_threads") is not None:
        out += f"\n\nshmaccel pool threads: {gil['pool_threads']}."
    return out


def table_steady(results: dict) -> str:
    """(e) steady state: forbidden syscalls, mallocs, RSS change over many small calls."""
    steady = section(results, "steady")
    if not steady:
        return ""
    body = []
    calls = steady.get("calls")
    if calls is not None:
        body.append(["calls measured", str(calls)])
    strace = steady.get("strace")
    if isinstance(strace, dict) and strace.get("available") is False:
        body.append(["syscalls", "not traced (strace not available)"])
    elif isinstance(strace, dict):
        traced = strace.get("calls_traced", calls)
        if strace.get("forbidden_total") is not None:
            body.append([f"forbidden syscalls in {traced} calls ({', '.join(FORBIDDEN)})",
                         str(strace["forbidden_total"])])
        for side, counts in (strace.get("between_markers") or {}).items():
            if not isinstance(counts, dict):
                continue
            total = sum(v for v in counts.values() if isinstance(v, int))
            per_call = f", {fmt(total / traced)} per call" if traced else ""
            seen = ", ".join(f"{name} {count}" for name, count in sorted(counts.items())
                             if name in FORBIDDEN and count)
            body.append([f"{side} syscalls", f"{total}{per_call}; forbidden: {seen or 'none'}"])
    malloc = steady.get("malloc")
    if isinstance(malloc, dict):
        allocations = sum(malloc.get(k) or 0 for k in ALLOCATORS)
        found = ", ".join(f"{k} {malloc[k]}" for k in (*ALLOCATORS, "free")
                          if malloc.get(k) is not None)
        body.append([f"C client allocations in {malloc.get('calls', '?')} calls",
                     f"{allocations} ({found})" if found else str(allocations)])
    elif "malloc" in steady:
        body.append(["C client allocations", "not measured"])
    rss = steady.get("rss_kb")
    if isinstance(rss, dict):
        for who in ("client", "worker"):
            change = median(rss.get(f"{who}_change_pct"))
            if change is not None:
                body.append([f"{who} RSS change", f"{change:+.2f}%"])
    if not body:
        return ""
    return "### steady state: many small calls\n\n" + table(["measure", "value"], body)


# -- main -------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a results JSON written by bench.py")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the PNGs go (default: next to the JSON)")
    args = parser.parse_args(argv)
    try:
        with open(args.results) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read {args.results}: {e}", file=sys.stderr)
        return 2
    if not isinstance(results, dict):
        print(f"{args.results} is not a bench.py results object", file=sys.stderr)
        return 2
    notes: list[str] = []
    plot_all(results, args.out_dir or args.results.parent, args.results.stem, notes)
    tables = markdown_tables(results)
    print(tables or "no section this script knows (sizes, concurrency, steady) in the results")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
