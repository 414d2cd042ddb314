"""The benchmark's timing helpers that ratios rest on: batches taking turns (goal 2 and goal 3
compare calls timed that way), the GIL bound's hand-off probe, which pins threads and
must leave the calling thread's CPUs as it found them, and the arithmetic of the bound's
best mix of keeping and releasing the GIL."""

from __future__ import annotations

import itertools
import os
import sys
import threading
from array import array
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

pytest.importorskip("numpy")  # bench_concurrency needs numpy; the test extra installs it

import bench_concurrency  # noqa: E402

import benchlib  # noqa: E402


def test_batches_in_turns_time_every_variant_and_alternate_their_order():
    seen: list[str] = []
    variants = {name: (lambda name=name: seen.append(name)) for name in ("a", "b", "c")}
    stats = benchlib.time_batches_in_turns(variants, batches=4, calls=10)
    assert set(stats) == {"a", "b", "c"}
    assert all(stats[name]["n"] == 4 for name in stats)
    # Past the warm-up (20 calls each), each batch is 5 untimed calls and 10 timed ones of
    # one variant, in the order a b c, then c b a, ...: runs of the same name merge where
    # the order turns.
    timed = seen[3 * 20:]
    runs = [(name, len(list(group))) for name, group in itertools.groupby(timed)]
    assert runs == [("a", 15), ("b", 15), ("c", 30), ("b", 15), ("a", 30), ("b", 15),
                    ("c", 30), ("b", 15), ("a", 15)]


def test_batches_in_turns_count_only_the_timed_calls():
    calls = {"n": 0}

    def call() -> None:
        calls["n"] += 1

    stats = benchlib.time_batches_in_turns({"x": call}, batches=3, calls=200)
    warm, rewarm = max(200 // 10, 20), max(200 // 100, 5)
    assert calls["n"] == warm + 3 * (rewarm + 200)
    assert stats["x"]["n"] == 3 and stats["x"]["min"] > 0


@pytest.mark.parametrize("same_cpu", [True, False])
def test_handoff_probe_restores_the_calling_threads_cpus(same_cpu):
    before = os.sched_getaffinity(0)
    seconds = bench_concurrency.handoff_s(same_cpu=same_cpu, rounds=200)
    assert os.sched_getaffinity(0) == before
    assert 0 < seconds < 1


def test_a_thread_still_running_after_its_join_timeout_is_reported_as_a_hang():
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="bench-stuck", daemon=True)
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="bench-stuck still running"):
            bench_concurrency.join_or_raise(thread, 0.01)
    finally:
        release.set()
    bench_concurrency.join_or_raise(thread, 5)  # once it ends, joining it says nothing


def test_handoff_probe_restores_the_cpus_when_the_ping_pong_fails(monkeypatch):
    before = os.sched_getaffinity(0)

    def broken_clock() -> float:
        raise RuntimeError("clock broke")

    real_thread = bench_concurrency.threading.Thread
    with monkeypatch.context() as m:
        # The partner thread does nothing (it would wait for a ping that never comes), and
        # the probe fails once it has pinned the calling thread.
        m.setattr(bench_concurrency.threading, "Thread",
                  lambda *a, **k: real_thread(target=lambda: None, daemon=True))
        m.setattr(bench_concurrency.time, "perf_counter", broken_clock)
        with pytest.raises(RuntimeError, match="clock broke"):
            bench_concurrency.handoff_s(same_cpu=True, rounds=10)
    assert os.sched_getaffinity(0) == before


def test_best_mix_caps_each_calls_time_at_a_hand_off_and_keeps_the_repeats_rate():
    # Calls of 1, 2 and 3 us and one of 42 us; the repeat made one call per 20 us (its loop
    # around the calls included). Capped at a 5 us hand-off, only the slow call gains: its
    # 37 us beyond the hand-off, 37/4 us off the mean call.
    latencies = array("q", [1000, 2000, 3000, 42000])
    assert bench_concurrency.best_mix_gain(5e4, latencies, 5e-6) == pytest.approx(
        20 / (20 - 37 / 4))
    # Against its own rate: the same calls in a repeat of one call per 40 us gain less.
    assert bench_concurrency.best_mix_gain(2.5e4, latencies, 5e-6) == pytest.approx(
        40 / (40 - 37 / 4))
    # Calls no longer than the hand-off gain nothing.
    assert bench_concurrency.best_mix_gain(5e4, latencies, 50e-6) == 1.0
