"""The benchmark's yardsticks: bench/limit.c's --serve mode, which the size sweep samples
between shmaccel's own calls, and how the sweep groups the methods it times."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

np = pytest.importorskip("numpy")  # bench_sizes needs numpy; the test extra installs it

import bench_sizes  # noqa: E402

import benchlib  # noqa: E402

N = 1_000_000


@pytest.fixture(scope="module")
def limit_program() -> Path:
    notes: list[str] = []
    programs = benchlib.build_c_programs(notes)
    if "limit" not in programs:
        pytest.fail(f"bench/limit.c did not build: {notes}")
    return programs["limit"]


def cpu_seconds(pid: int) -> float:
    fields = benchlib.stat_fields(f"/proc/{pid}/stat")
    # After the command name: utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / benchlib.CLK_TCK


def test_limit_server_answers_each_task_with_the_seconds_of_one_run(limit_program):
    proc = subprocess.run([str(limit_program), str(N), "--threads", "2", "--serve"],
                          input="inplace\nout\nmemcpy\ninplace\n", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ready, *answers = proc.stdout.splitlines()
    assert '"ready": true' in ready and '"n": 1000000' in ready
    assert len(answers) == 4
    seconds = [float(a) for a in answers]
    # A million float64 in well under a second, and more than the clock's resolution.
    assert all(1e-6 < s < 1.0 for s in seconds), seconds


def test_limit_server_refuses_an_unknown_task_and_exits_2(limit_program):
    proc = subprocess.run([str(limit_program), "1000", "--serve"], input="inplace\nsquare\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert 'unknown task "square"' in proc.stderr
    assert len(proc.stdout.splitlines()) == 2  # ready, then the one good task's answer


def test_limit_server_threads_sleep_between_samples(limit_program):
    """Idle, the server must leave the CPUs to the calls it is measured against: its
    threads sleep instead of spinning in their barrier."""
    proc = subprocess.Popen([str(limit_program), str(N), "--threads", "2", "--serve"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert '"ready": true' in proc.stdout.readline()
        proc.stdin.write("inplace\n")
        proc.stdin.flush()
        float(proc.stdout.readline())
        before = cpu_seconds(proc.pid)
        time.sleep(1.0)
        idle = cpu_seconds(proc.pid) - before
        # Spinning, two threads would burn about 2 s here.
        assert idle < 0.2, f"the idle server used {idle:.2f} s of CPU in 1 s"
    finally:
        proc.kill()
        proc.wait()


def test_limit_server_wrapper_samples_and_leaves_no_process(limit_program):
    notes: list[str] = []
    with benchlib.LimitServer(limit_program, [str(N)], notes) as server:
        pid = server.proc.pid if server.proc is not None else None
        samples = [server.sample(task) for task in benchlib.LimitServer.TASKS]
    assert notes == []
    assert all(s is not None and s > 0 for s in samples), samples
    assert pid is not None and not benchlib.process_alive(pid)


def test_limit_server_wrapper_notes_a_program_that_fails(tmp_path):
    notes: list[str] = []
    with benchlib.LimitServer(Path("/bin/false"), [], notes) as server:
        assert server.sample("inplace") is None
    assert notes and "did not get ready" in notes[0]


def test_a_slow_in_place_check_does_not_make_its_method_very_slow():
    """An in-place method's check fills its array and copies the result out, which at 10^8
    took longer than the call itself by far: timed from the check, shmaccel in place was
    put among the very slow methods (3 calls, between numpy's allocations) instead of beside
    the C limit."""
    expected = np.arange(4.0)

    def slow_check():
        time.sleep(bench_sizes.SLOW_CALL_S + 0.1)
        return expected.copy()

    def call():
        time.sleep(2 * bench_sizes.FAST_CALL_S)

    variant = bench_sizes.Variant("shmaccel_shared_inplace", slow_check, call,
                                  reset=lambda: None)
    figures = bench_sizes.time_variants([variant], expected, bench_sizes.QUICK, "test",
                                        after_round=lambda: None)
    # Timed as what it is, a call of a few milliseconds: with the slow group's repeats, not
    # the very slow group's SLOW_REPEATS.
    assert bench_sizes.QUICK.max_repeats > bench_sizes.SLOW_REPEATS
    assert figures["shmaccel_shared_inplace"]["n"] == bench_sizes.QUICK.max_repeats


def test_limit_here_computes_over_memory_it_is_given():
    notes: list[str] = []
    library = benchlib.build_c_programs(notes).get("limit_here.so")
    assert library is not None, notes
    here = benchlib.LimitHere(library)
    x = np.arange(N, dtype=np.int64) - N // 2
    y = np.zeros(N, dtype=np.int64)
    seconds = here.run(x.ctypes.data, y.ctypes.data, N, "int64", "square", "out")
    assert seconds > 0
    assert np.array_equal(y, x * x)
    here.run(x.ctypes.data, x.ctypes.data, N, "int64", "double", "inplace")
    assert np.array_equal(x, (np.arange(N, dtype=np.int64) - N // 2) * 2)
    with pytest.raises(OSError):
        here.run(x.ctypes.data, y.ctypes.data, N, "int16", "square", "out")
