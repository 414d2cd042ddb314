"""Resources (issue 5, item 6): a small or full /dev/shm, a request above the pool's limit, and
waits that a step of the wall clock cannot disturb.

/dev/shm is made small by running a child in its own mount namespace (`unshare -m`, as root)
with a 64 MB tmpfs mounted over /dev/shm, the size Docker gives a container by default. There a
request that does not fit must raise MemoryError when its memory is allocated, never SIGBUS,
and small calls must keep working. The real clock is never touched: strace shows that no wait
of the client or the worker is measured against CLOCK_REALTIME.
"""

import array
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import shmaccel

from conftest import (
    TESTS_DIR,
    child_env,
    runtime_dir,
    runtime_entries,
    stop_process,
    unique_name,
    worker_path,
)

SMALL_SHM_MB = 64

# Shared by every child below: fails loudly on anything but a clean MemoryError, and checks
# that the pool's worker lived through it.
CHILD_PRELUDE = r"""
import array, gc, os, sys, time
import shmaccel

MB = 1 << 20

def shm_free_mb():
    st = os.statvfs("/dev/shm")
    return st.f_bavail * st.f_frsize / MB

def shm_names():
    return sorted(os.listdir("/dev/shm"))

def expect_memory_error(what, fn):
    began = time.monotonic()
    try:
        fn()
    except MemoryError as exc:
        assert "shared memory" in str(exc), f"{what}: a MemoryError not from shmaccel: {exc}"
        print(f"MEMORYERROR {what} {time.monotonic() - began:.3f}s", flush=True)
        return
    raise AssertionError(f"{what}: no MemoryError")

def small_calls_work(pool=None):
    run = pool if pool is not None else shmaccel
    assert run.double([1, -2, 3]) == [2, -4, 6]
    for n in (1_000, 10_000, 100_000):
        a = shmaccel.array(array.array("d", range(n)), pool=pool)
        assert run.square(a, out=a) is a
        assert a[n - 1] == float(n - 1) ** 2 and a[7] == 49.0
        del a

def worker_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False

def my_children():
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids += f.read().split()
    return pids
"""


@functools.lru_cache(maxsize=1)
def private_shm_unavailable():
    """Why a private /dev/shm cannot be mounted here, or None when it can."""
    if os.geteuid() != 0:
        return "mounting a private /dev/shm needs root (unshare -m)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs -o size=1m shmaccel-probe /dev/shm"],
        capture_output=True, text=True, timeout=30,
    )
    if probe.returncode != 0:
        return f"unshare -m cannot mount a tmpfs here: {probe.stderr.strip()}"
    return None


@pytest.fixture
def small_shm():
    """Runs Python code in a child whose /dev/shm is a private 64 MB tmpfs (optionally with
    filler_kb of it taken by an unrelated file first). The mount goes with the child's mount
    namespace, so nothing is left to clean up but the process itself."""
    reason = private_shm_unavailable()
    if reason:
        pytest.skip(reason)

    def run(code, filler_kb=0, timeout=60):
        script = f"mount -t tmpfs -o size={SMALL_SHM_MB}m shmaccel-test /dev/shm"
        if filler_kb:
            # dd without the sanitizer runtime `make sanitize` preloads for the extension.
            script += (f" && env -u LD_PRELOAD dd if=/dev/zero of=/dev/shm/filler bs=1K"
                       f" count={filler_kb}"
                       " status=none")
        script += ' && exec "$0" -u -c "$1"'
        try:
            proc = subprocess.run(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                 sys.executable, CHILD_PRELUDE + textwrap.dedent(code)],
                capture_output=True, text=True, timeout=timeout, env=child_env(),
                cwd=str(TESTS_DIR),
            )
        except subprocess.TimeoutExpired as exc:  # run() has killed it: its worker follows
            pytest.fail(f"child hung for {timeout} s; output: {exc.stdout!r} {exc.stderr!r}")
        output = proc.stdout + proc.stderr
        assert proc.returncode != -signal.SIGBUS, f"SIGBUS:\n{output}"
        assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{output}"
        assert proc.stdout.rstrip().endswith("OK"), output
        return proc.stdout

    return run


def test_small_dev_shm_serves_small_calls_and_refuses_what_does_not_fit(small_shm):
    out = small_shm(
        """
        assert 60 < shm_free_mb() <= 64, shm_free_mb()
        small_calls_work()
        pid = shmaccel.default_pool().worker_pid
        n = 10_000_000  # 80 MB of float64 or int64: more than the whole /dev/shm
        expect_memory_error("zeros", lambda: shmaccel.zeros(20_000_000, "float64"))
        expect_memory_error("list", lambda: shmaccel.double([3] * n))
        expect_memory_error("array.array", lambda: shmaccel.square(array.array("d", bytes(8 * n))))
        try:
            import numpy as np
        except ImportError:
            np = None
        if np is not None:
            expect_memory_error("numpy", lambda: shmaccel.square(np.ones(n)))
            # The copy in (40 MB) fits; the result in the arena (40 MB more) does not, even
            # once the empty arenas kept for reuse have given way.
            expect_memory_error("numpy result", lambda: shmaccel.square(np.ones(5 * MB)))
            assert (shmaccel.square(np.full(1000, 3.0)) == 9.0).all()
        # Refused at allocation: the worker never saw them, and serves on.
        assert worker_alive(pid) and shmaccel.default_pool().worker_pid == pid
        small_calls_work()
        # What does fit still works: 3 MB in, 3 MB out.
        big = shmaccel.array(array.array("d", [1.5]) * (3 * MB // 8))
        assert shmaccel.square(big)[-1] == 2.25
        del big
        assert shm_names() == [], shm_names()
        shmaccel.default_pool().close()
        print("OK")
        """
    )
    assert out.count("MEMORYERROR") >= 3, out


def test_full_dev_shm_makes_the_pool_start_fail_cleanly(small_shm):
    # 62 MB of 64 taken: the pool's first arena (16 MB) cannot be reserved.
    out = small_shm(
        """
        assert shm_free_mb() < 3, shm_free_mb()
        for attempt in range(2):  # and a second time: nothing was left half started
            expect_memory_error(f"pool start {attempt}", lambda: shmaccel.double([1, 2]))
            expect_memory_error(f"Pool() {attempt}", lambda: shmaccel.Pool(threads=1))
        deadline = time.monotonic() + 2
        while my_children() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert my_children() == [], f"workers of failed starts still running: {my_children()}"
        assert shm_names() == ["filler"], shm_names()
        os.unlink("/dev/shm/filler")
        small_calls_work()
        shmaccel.default_pool().close()
        print("OK")
        """,
        filler_kb=62 * 1024,
    )
    assert out.count("MEMORYERROR") == 4, out


def test_dev_shm_filled_while_the_pool_runs(small_shm):
    # Another program fills /dev/shm behind a running pool: what fits in the arenas it has
    # still works, what needs a new arena fails cleanly, and the worker carries on.
    small_shm(
        """
        pool = shmaccel.Pool(threads=2)
        small_calls_work(pool)
        fd = os.open("/dev/shm/filler", os.O_CREAT | os.O_WRONLY, 0o600)
        os.posix_fallocate(fd, 0, int((shm_free_mb() - 1) * MB))
        assert shm_free_mb() < 2, shm_free_mb()
        for _ in range(3):
            small_calls_work(pool)  # inside the arena the pool already has
            expect_memory_error("new arena", lambda: pool.zeros(3 * MB, "float64"))
            expect_memory_error("list", lambda: pool.double([2] * (3 * MB)))
        assert worker_alive(pool.worker_pid)
        os.close(fd)
        os.unlink("/dev/shm/filler")
        a = pool.zeros(3 * MB, "float64")
        assert pool.double(a, out=a) is a
        del a
        pool.close()
        print("OK")
        """
    )


def test_empty_arenas_kept_for_reuse_give_way_to_a_new_one_that_needs_their_room(small_shm):
    # Arenas left empty are kept for reuse; when /dev/shm then has no room for a bigger one,
    # they are released first rather than the call failing.
    small_shm(
        """
        pool = shmaccel.Pool(threads=1)
        a = pool.zeros(3 * MB, "float64")  # 24 MB: a second arena beside the first 16 MB
        assert pool.double(a, out=a) is a
        del a
        assert shm_free_mb() < 26, shm_free_mb()  # both still held, for reuse
        b = pool.zeros(5 * MB, "float64")  # 40 MB: fits only once they are gone
        assert pool.double(b, out=b) is b and b[-1] == 0.0
        del b
        small_calls_work(pool)
        pool.close()
        print("OK")
        """
    )


# ------------------------------------------------------------------------------------------------
# a request above the pool's limit

MAX_COUNT = 1000


@pytest.fixture
def limited_pool(tmp_path):
    """A named pool whose worker accepts at most MAX_COUNT elements per request (the worker's
    --max-count; neither Pool() nor shmaccel-pool start exposes it)."""
    exe = worker_path()
    if not os.access(exe, os.X_OK):
        pytest.skip(f"worker binary not found at {exe} (set SHMACCEL_WORKER)")
    name = unique_name("shmaccel-limit")
    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(exe), "--name", name, "--threads", "2", "--max-count", str(MAX_COUNT)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
        )
    try:
        deadline = time.monotonic() + 5
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                pool = shmaccel.Pool(name)
                break
            except (shmaccel.Error, OSError):
                assert time.monotonic() < deadline, "the pool never accepted a client"
                time.sleep(0.02)
        with contextlib.closing(pool):
            yield pool, proc
    finally:
        stop_process(proc)
        for entry in runtime_entries(name):
            with contextlib.suppress(OSError):
                (runtime_dir() / entry).unlink()


def test_request_above_the_pools_limit_is_refused_and_the_pool_serves_on(limited_pool):
    pool, proc = limited_pool
    errors_before = pool.stats()["errors"]
    too_big = [
        ("list", lambda: pool.double(list(range(MAX_COUNT + 1)))),
        ("SharedArray", lambda: pool.square(pool.zeros(MAX_COUNT + 1, "int32"))),
        ("array.array", lambda: pool.square(array.array("d", [1.0]) * 50_000)),
        ("future", lambda: pool.submit("double", [1] * (MAX_COUNT + 1)).result(timeout=5)),
    ]
    for what, call in too_big:
        with pytest.raises(shmaccel.Error) as caught:
            call()
        error = caught.value
        assert type(error) is shmaccel.Error, f"{what}: {error!r}"
        assert "larger than the pool's limit" in str(error), f"{what}: {error}"
        # The pool is unharmed: the largest allowed request works right after.
        assert pool.double(list(range(MAX_COUNT))) == [2 * v for v in range(MAX_COUNT)]
    assert pool.stats()["errors"] == errors_before + len(too_big)
    assert proc.poll() is None and pool.stats()["worker_pid"] == proc.pid


# ------------------------------------------------------------------------------------------------
# the wall clock


@functools.lru_cache(maxsize=1)
def strace_path():
    """strace, installed with apt-get when missing and allowed; None if unavailable."""
    found = shutil.which("strace")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "strace"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (install, ["apt-get", "update", "-q"], install):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(command, capture_output=True, timeout=180, env=env)
        if shutil.which("strace"):
            break
    return shutil.which("strace")


CLOCK_CHILD = r"""
import os, signal, threading, time
import shmaccel


def all_threads_stopped(pid):
    # kill() returns before every thread of the worker has stopped, and one still running
    # could take the call below and finish it. Stopped under strace reads "t" (ptrace stop).
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue  # the thread has just exited
        if state not in (b"T", b"t"):
            return False
    return True


pool = shmaccel.Pool(threads=2)
a = shmaccel.zeros(3_000_000, pool=pool)  # 24 MB: the client sleeps while it computes
for _ in range(3):
    pool.square(a, out=a, timeout=10)  # timed
    pool.square(a, out=a)              # blocking
os.kill(pool.worker_pid, signal.SIGSTOP)
deadline = time.monotonic() + 20
while not all_threads_stopped(pool.worker_pid) and time.monotonic() < deadline:
    time.sleep(0.001)
try:
    pool.double(a, out=a, timeout=0.2)  # a wait that times out
except TimeoutError:
    print("TIMEOUT", flush=True)
os.kill(pool.worker_pid, signal.SIGCONT)
time.sleep(0.2)  # the worker's threads go to sleep
assert pool.double([1, 2]) == [2, 4]
pool.close()
print("OK", flush=True)
"""

# strace -Y prints each pid followed by its command name in angle brackets.
TRACE_LINE = re.compile(r"^(\d+)<([^>]*)>\s+(\w+)\((.*)$")


def test_waits_are_on_the_monotonic_clock(tmp_path):
    strace = strace_path()
    if strace is None:
        pytest.skip("strace is not installed (and could not be installed)")
    trace = tmp_path / "waits.trace"
    waits = "futex,clock_nanosleep,nanosleep,poll,ppoll,select,pselect6,epoll_wait,epoll_pwait"
    proc = subprocess.run(
        [strace, "-f", "-qq", "-Y", "-e", "signal=none", "-o", str(trace), "-e",
         f"trace={waits}", sys.executable, "-u", "-c", CLOCK_CHILD],
        capture_output=True, text=True, timeout=60, env=child_env(), cwd=str(TESTS_DIR),
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TIMEOUT" in proc.stdout and proc.stdout.rstrip().endswith("OK"), proc.stdout

    realtime, monotonic_waits = [], {}
    for line in trace.read_text().splitlines():
        match = TRACE_LINE.match(line)
        if match is None:
            continue
        _, comm, syscall, args = match.groups()
        # An absolute wait on the wall clock would end early or late when the clock is
        # stepped. Relative sleeps (nanosleep, usleep: CLOCK_REALTIME with flags 0), poll
        # timeouts, and waits without a timeout (pthread_join's futex carries the realtime
        # flag, with NULL for a timeout) do not depend on it.
        timed = "{tv_sec" in args
        if syscall == "futex" and "FUTEX_CLOCK_REALTIME" in args and timed:
            realtime.append(line)
        if syscall == "clock_nanosleep" and "CLOCK_REALTIME" in args and "TIMER_ABSTIME" in args:
            realtime.append(line)
        if syscall == "futex" and "FUTEX_WAIT_BITSET" in args and timed:
            monotonic_waits[comm] = monotonic_waits.get(comm, 0) + 1
    assert realtime == [], "waits on CLOCK_REALTIME:\n" + "\n".join(realtime[:10])
    # The trace did see the timed waits of both sides (sem_clockwait on CLOCK_MONOTONIC).
    assert monotonic_waits.get("shmaccel-worker", 0) > 0, monotonic_waits
    client_waits = sum(n for comm, n in monotonic_waits.items() if comm != "shmaccel-worker")
    assert client_waits > 0, monotonic_waits
