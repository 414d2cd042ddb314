"""Fixtures and helpers shared by the shmaccel Python tests.

Everything here works on real processes and real shared memory: the reference kernels are plain
Python, process checks read /proc, and every fixture that starts something stops it again, even
when the test fails. Two autouse fixtures keep the suite honest: after each test no new /dev/shm
entry may remain and no shmaccel-worker started by the test may still run; at the end of the
session no worker started by this session may remain at all.
"""

import array
import contextlib
import gc
import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
PYSHIM = ROOT / "pyshim"

if str(PYSHIM) not in sys.path:
    sys.path.insert(0, str(PYSHIM))

# Every process this session starts inherits this tag, so a worker orphaned by a killed child
# can still be recognised as ours after it has been re-parented.
SESSION_TAG_VAR = "SHMACCEL_TEST_SESSION"
# (Reused if this file is imported a second time by the same process.)
SESSION_TAG = os.environ.get(SESSION_TAG_VAR, "")
if not SESSION_TAG.startswith(f"{os.getpid()}-"):
    SESSION_TAG = f"{os.getpid()}-{uuid.uuid4().hex}"
    os.environ[SESSION_TAG_VAR] = SESSION_TAG
# The default pool must be a private worker of this process: tests kill and stop it.
os.environ.pop("SHMACCEL_POOL", None)

# Not at the top: found through the sys.path entry above, with the environment set.
import shmaccel  # noqa: E402

WORKER_PROGRAM = "shmaccel-worker"
DEV_SHM = Path("/dev/shm")
# Python's multiprocessing semaphores belong to other programs; this suite never creates them.
FOREIGN_SHM_PREFIXES = ("sem.mp-",)

OPS = ("double", "square")


def worker_path():
    """The worker binary: $SHMACCEL_WORKER, else build/shmaccel-worker in the source tree."""
    configured = os.environ.get("SHMACCEL_WORKER")
    return Path(configured) if configured else ROOT / "build" / WORKER_PROGRAM


def unique_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------------------------
# dtypes and the pure-Python reference kernels


@dataclass(frozen=True)
class DType:
    name: str
    typecode: str  # array.array typecode
    itemsize: int
    kind: str  # "i" signed, "u" unsigned, "f" float

    @property
    def bits(self):
        return self.itemsize * 8

    @property
    def is_float(self):
        return self.kind == "f"

    @property
    def min(self):
        if self.kind == "i":
            return -(1 << (self.bits - 1))
        if self.kind == "u":
            return 0
        raise TypeError(f"{self.name} has no integer bounds")

    @property
    def max(self):
        if self.kind == "i":
            return (1 << (self.bits - 1)) - 1
        if self.kind == "u":
            return (1 << self.bits) - 1
        raise TypeError(f"{self.name} has no integer bounds")

    def __str__(self):
        return self.name


DTYPES = (
    DType("int8", "b", 1, "i"),
    DType("int16", "h", 2, "i"),
    DType("int32", "i", 4, "i"),
    DType("int64", "q", 8, "i"),
    DType("uint8", "B", 1, "u"),
    DType("uint16", "H", 2, "u"),
    DType("uint32", "I", 4, "u"),
    DType("uint64", "Q", 8, "u"),
    DType("float32", "f", 4, "f"),
    DType("float64", "d", 8, "f"),
)
DTYPE_BY_NAME = {dt.name: dt for dt in DTYPES}
DTYPE_NAMES = tuple(dt.name for dt in DTYPES)

for _dt in DTYPES:
    assert array.array(_dt.typecode).itemsize == _dt.itemsize, _dt

INT64 = DTYPE_BY_NAME["int64"]


def wrap_int(value, dt):
    """value reduced to dt the way two's complement hardware (and numpy) does it."""
    value &= (1 << dt.bits) - 1
    if dt.kind == "i" and value >= 1 << (dt.bits - 1):
        value -= 1 << dt.bits
    return value


def to_float32(value):
    """value rounded to the nearest float32 (out of range becomes +-inf, as in C)."""
    return array.array("f", [value])[0]


def reference(op, x, dt):
    """op applied to one element x of dtype dt, as the worker must compute it."""
    if op not in OPS:
        raise ValueError(op)
    if dt.kind == "f":
        # Python floats are IEEE doubles; a float32 product is exact in double, so rounding it
        # once to float32 gives the correctly rounded float32 result.
        result = x * 2.0 if op == "double" else x * x
        return to_float32(result) if dt.name == "float32" else result
    return wrap_int(x * 2 if op == "double" else x * x, dt)


def reference_list(op, values):
    """What shmaccel.<op>(values) must return for a list: raises OverflowError or TypeError
    where the library must."""
    for index, v in enumerate(values):
        if not isinstance(v, (int, float)):
            raise TypeError(f"element {index} has type {type(v).__name__}")
    if any(isinstance(v, float) for v in values):
        floats = [float(v) for v in values]
        return [v * 2.0 if op == "double" else v * v for v in floats]
    result = []
    for v in values:
        v = int(v)
        if not INT64.min <= v <= INT64.max:
            raise OverflowError(f"{v} is outside int64")
        r = v * 2 if op == "double" else v * v
        if not INT64.min <= r <= INT64.max:
            raise OverflowError(f"{op}({v}) is outside int64")
        result.append(r)
    return result


def special_values(dt):
    """Extremes and awkward values of dt: bounds, zero, values whose double or square just
    fits or just wraps."""
    if dt.kind == "f":
        if dt.name == "float64":
            values = [
                0.0,
                -0.0,
                1.0,
                -1.0,
                0.5,
                -2.5,
                3.0,
                123456.789,
                -98765.4321,
                1.7976931348623157e308,
                -1.7976931348623157e308,
                1e308,
                8.98846567431158e307,
                1.3407807929942596e154,
                1.3407807929942597e154,
                -1e155,
                1e154,
                2.2250738585072014e-308,
                5e-324,
                -5e-324,
                1e-160,
                1.5e-162,
                math.inf,
                -math.inf,
                math.nan,
            ]
        else:
            values = [
                0.0,
                -0.0,
                1.0,
                -1.0,
                0.5,
                -2.5,
                3.0,
                1234.5678,
                -9876.54,
                3.4028234663852886e38,
                -3.4028234663852886e38,
                1.7014117331926443e38,
                1.8446742974197924e19,
                1.8446744073709552e19,
                -2e19,
                1e19,
                1.1754943508222875e-38,
                1.401298464324817e-45,
                -1.401298464324817e-45,
                1e-20,
                math.inf,
                -math.inf,
                math.nan,
            ]
        return [v if dt.name == "float64" else to_float32(v) for v in values]
    lo, hi = dt.min, dt.max
    root = math.isqrt(hi)
    candidates = [
        lo,
        hi,
        lo + 1,
        hi - 1,
        0,
        1,
        2,
        3,
        hi // 2,
        hi // 2 + 1,
        root - 1,
        root,
        root + 1,
        0x55 % (hi + 1),
        (hi + 1) // 3,
    ]
    if dt.kind == "i":
        candidates += [-1, -2, -3, lo // 2, lo // 2 - 1, -root, -root - 1, -(root + 1)]
    seen = []
    for v in candidates:
        if lo <= v <= hi and v not in seen:
            seen.append(v)
    return seen


def random_value(dt, rng):
    if dt.kind == "f":
        pick = rng.random()
        if pick < 0.4:
            value = rng.uniform(-1000.0, 1000.0)
        elif pick < 0.8:
            exponent_limit = 300 if dt.name == "float64" else 38
            value = (
                rng.choice((-1.0, 1.0))
                * rng.random()
                * 10.0 ** rng.randint(-exponent_limit, exponent_limit)
            )
        else:
            value = float(rng.randint(-(10**6), 10**6))
        return value if dt.name == "float64" else to_float32(value)
    pick = rng.random()
    if pick < 0.5:
        return rng.randint(dt.min, dt.max)
    if pick < 0.75:
        return rng.randint(max(dt.min, -1000), min(dt.max, 1000))
    root = math.isqrt(dt.max)
    value = rng.randint(root - 4, root + 4)
    if dt.kind == "i" and rng.random() < 0.5:
        value = -value
    return min(max(value, dt.min), dt.max)


# Inputs longer than this repeat a random block of this (prime) length, so a million-element
# case costs one block of reference work while every position still sees varied values.
REFERENCE_BLOCK = 4099


def tile(block, n):
    if n == 0:
        return block[:0]
    reps = -(-n // len(block))
    return (block * reps)[:n]


def make_case(dt, op, n, seed):
    """(data, expected): array.arrays of typecode dt.typecode and length n, random values with
    every special value of dt included once n allows, and the reference result."""
    rng = random.Random(zlib.crc32(repr(seed).encode()))
    block_len = min(n, REFERENCE_BLOCK)
    specials = special_values(dt)
    values = [random_value(dt, rng) for _ in range(block_len)]
    if block_len:
        if block_len >= len(specials):
            positions = rng.sample(range(block_len), len(specials))
            for pos, v in zip(positions, specials, strict=True):
                values[pos] = v
        else:
            for pos in range(block_len):
                if rng.random() < 0.5:
                    values[pos] = rng.choice(specials)
    block = array.array(dt.typecode, values)
    # Compute from what the array holds (float32 values were rounded on the way in).
    expected_block = array.array(dt.typecode, [reference(op, x, dt) for x in block])
    return tile(block, n), tile(expected_block, n)


def same_element(actual, expected, dt):
    if dt.kind != "f":
        return actual == expected
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == expected and math.copysign(1.0, actual) == math.copysign(
        1.0, expected
    )


def buffer_bytes(obj):
    """The bytes of a buffer in C order."""
    return memoryview(obj).tobytes()


def assert_matches(result, expected, dt, data=None):
    """result (any buffer of dt) holds exactly the elements of expected (an array.array).
    data, if given, is the input, shown next to wrong elements."""
    got = buffer_bytes(result)
    if got == expected.tobytes():
        return
    assert len(got) == len(expected) * dt.itemsize, (
        f"result has {len(got)} bytes, expected {len(expected)} {dt.name} elements"
    )
    actual = array.array(dt.typecode)
    actual.frombytes(got)
    wrong = [
        i for i in range(len(expected)) if not same_element(actual[i], expected[i], dt)
    ]
    if not wrong:
        return  # only NaN payloads differ
    shown = []
    for i in wrong[:8]:
        source = f" input={data[i]!r}" if data is not None else ""
        shown.append(f"[{i}]{source} expected={expected[i]!r} got={actual[i]!r}")
    raise AssertionError(
        f"{len(wrong)} of {len(expected)} {dt.name} elements wrong: " + "; ".join(shown)
    )


def numpy_dtype(dt):
    import numpy as np

    return np.dtype(dt.name)


# ------------------------------------------------------------------------------------------------
# processes, read from /proc


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    comm: str


def read_proc(pid):
    """The /proc/<pid>/stat facts of pid, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    open_paren, close_paren = data.find(b"("), data.rfind(b")")
    fields = data[close_paren + 2 :].split()
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        state=fields[0].decode(),
        comm=data[open_paren + 1 : close_paren].decode(errors="replace"),
    )


def proc_cmdline(pid):
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def all_procs():
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_proc(int(entry))
            if proc is not None:
                procs[proc.pid] = proc
    return procs


def is_worker(proc):
    if proc.comm == WORKER_PROGRAM[:15]:
        return True
    if proc.ppid == 2 or proc.pid == 2:
        return False  # kernel thread
    argv = proc_cmdline(proc.pid)
    return bool(argv) and os.path.basename(argv[0]) == WORKER_PROGRAM


def has_session_tag(pid):
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{SESSION_TAG_VAR}={SESSION_TAG}".encode() in environ.split(b"\0")


def is_descendant(pid, procs, ancestor=None):
    ancestor = os.getpid() if ancestor is None else ancestor
    for _ in range(64):
        proc = procs.get(pid)
        if proc is None or proc.ppid <= 1:
            return False
        if proc.ppid == ancestor:
            return True
        pid = proc.ppid
    return False


def session_workers():
    """{pid: Proc} of worker processes this session started: descendants of this process, or
    carrying this session's tag in their environment (orphans of killed children)."""
    procs = all_procs()
    return {
        pid: proc
        for pid, proc in procs.items()
        if is_worker(proc) and (is_descendant(pid, procs) or has_session_tag(pid))
    }


def pid_exists(pid):
    """True while pid exists at all, zombies included."""
    return read_proc(pid) is not None


def worker_alive(pid):
    """True while pid is a running (not zombie) worker process."""
    proc = read_proc(pid)
    return proc is not None and proc.state not in ("Z", "X") and is_worker(proc)


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate until it is true or timeout seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def kill_worker(pid):
    """SIGKILLs pid if it still is a worker (never some process that reused the pid)."""
    proc = read_proc(pid)
    if proc is None or not is_worker(proc):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    if proc.ppid == os.getpid():
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            time.sleep(0.01)


def all_threads_stopped(pid):
    """True once every thread of pid is in group stop. kill(SIGSTOP) returning is not enough:
    only one thread is woken to start the group stop, and until it runs, a thread spinning on
    another CPU can still pick up work."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_bytes()
        except OSError:
            continue  # the thread has just exited
        if stat[stat.rfind(b")") + 2 :].split()[0] != b"T":
            return False
    return True


@contextlib.contextmanager
def stopped(pid, limit=15.0):
    """SIGSTOPs pid for the duration of the block, and always SIGCONTs it again. A watchdog
    process resumes it after limit seconds in any case, so a call that (wrongly) blocks the
    test until the worker resumes makes the test fail instead of hanging forever."""
    watchdog = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                f"import os, signal, time\ntime.sleep({limit})\n"
                f"try:\n    os.kill({pid}, signal.SIGCONT)\nexcept OSError:\n    pass\n"
            ),
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        os.kill(pid, signal.SIGSTOP)
        assert wait_until(lambda: all_threads_stopped(pid), 2.0), (
            f"process {pid} did not stop"
        )
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        watchdog.kill()
        watchdog.wait()


def live_default_worker_pid():
    """The default pool's worker pid. May start a default pool, so call it only when there is
    a new worker to account for (then the default pool has most likely started it)."""
    try:
        return shmaccel.default_pool().worker_pid
    except (shmaccel.Error, OSError):
        return None


def shm_entries():
    try:
        names = os.listdir(DEV_SHM)
    except FileNotFoundError:
        return set()
    return {name for name in names if not name.startswith(FOREIGN_SHM_PREFIXES)}


def child_env(extra=None):
    """Environment for a child Python: this one, plus pyshim on PYTHONPATH, without
    SHMACCEL_POOL; extra entries set (or, with value None, removed)."""
    env = dict(os.environ)
    env.pop("SHMACCEL_POOL", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PYSHIM)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def stop_process(proc, grace=5.0):
    """Ends a Popen child: SIGCONT (in case a test stopped it), SIGTERM, SIGKILL after grace."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


class ChildProcess:
    """A child with its stdout (and stderr) read line by line, each read with a deadline."""

    def __init__(self, proc):
        self.proc = proc
        self._pending = b""
        self.lines = []

    @property
    def pid(self):
        return self.proc.pid

    def transcript(self):
        tail = self._pending.decode(errors="replace")
        return "\n".join(self.lines + ([tail] if tail else []))

    def readline(self, timeout):
        """Next line (without newline), None at end of output; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"child {self.pid}: no complete line within {timeout} s; output so far:\n"
                    + self.transcript()
                )
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                if self._pending:
                    line, self._pending = self._pending, b""
                    self.lines.append(line.decode(errors="replace"))
                    return self.lines[-1]
                return None
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\n", 1)
        self.lines.append(raw.decode(errors="replace"))
        return self.lines[-1]

    def expect(self, prefix, timeout=30.0):
        """Reads lines until one starts with prefix and returns it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(
                    f"child {self.pid} ended (rc={self.proc.poll()}) before printing "
                    f"{prefix!r}; output:\n{self.transcript()}"
                )
            if line.startswith(prefix):
                return line

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def finish(self, timeout=30.0):
        """Reads the rest of the output and waits for the exit code."""
        deadline = time.monotonic() + timeout
        while self.readline(max(0.0, deadline - time.monotonic())) is not None:
            pass
        return self.proc.wait(max(0.1, deadline - time.monotonic()))


class Children:
    """Processes a test starts; the fixture kills whatever is left of them."""

    def __init__(self):
        self.children = []
        self.foreign_workers = []

    def python(self, code, *args, env=None, stdin=False):
        proc = subprocess.Popen(
            [sys.executable, "-u", "-c", textwrap.dedent(code), *map(str, args)],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            cwd=str(TESTS_DIR),
        )
        child = ChildProcess(proc)
        self.children.append(child)
        return child

    def adopt_worker(self, pid):
        """Marks a worker some child started, to be stopped at teardown if still running."""
        self.foreign_workers.append(pid)

    def cleanup(self):
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)
            for stream in (child.proc.stdin, child.proc.stdout):
                if stream is not None:
                    stream.close()
        for pid in self.foreign_workers:
            if worker_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                # Its client is gone, so it should leave by itself; help it after a grace.
                if not wait_until(lambda pid=pid: not worker_alive(pid), 3.0):
                    kill_worker(pid)


@dataclass
class NamedPool:
    name: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# ------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session", autouse=True)
def session_leaves_no_workers():
    """At the end of the session, once the default pool is closed, no worker this session
    started may remain."""
    yield
    if session_workers():
        with contextlib.suppress(Exception):
            shmaccel.default_pool().close()

    def remaining_workers():
        return {
            pid: proc
            for pid, proc in session_workers().items()
            # An orphan zombie has exited; only our own children must have been reaped.
            if proc.state != "Z" or proc.ppid == os.getpid()
        }

    remaining = remaining_workers()
    deadline = time.monotonic() + 5.0
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = remaining_workers()
    if remaining:
        for pid in remaining:
            kill_worker(pid)
        pytest.fail(f"worker processes left at the end of the session: {remaining}")


@pytest.fixture(autouse=True)
def no_leftover_shm_or_workers():
    """After every test, pass or fail: no new /dev/shm entry, no new worker of ours."""
    shm_before = shm_entries()
    workers_before = set(session_workers())
    yield
    gc.collect()
    problems = []

    if not wait_until(lambda: not (shm_entries() - shm_before), 1.0):
        leaked = sorted(shm_entries() - shm_before)
        if leaked:
            problems.append(f"new /dev/shm entries left behind: {leaked}")

    def leftover_workers():
        found = {
            pid: proc
            for pid, proc in session_workers().items()
            if pid not in workers_before
            # An orphan that has exited stays a zombie only if init does not reap it.
            and not (proc.state == "Z" and proc.ppid != os.getpid())
        }
        if found:
            found.pop(live_default_worker_pid(), None)
        return found

    leftovers = leftover_workers()
    if leftovers:
        # Give exiting workers (and zombies about to be reaped) a moment.
        deadline = time.monotonic() + 2.0
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.05)
            leftovers = leftover_workers()
    if leftovers:
        problems.append(
            "worker processes left behind: "
            + ", ".join(
                f"pid {p.pid} state {p.state} ppid {p.ppid}" for p in leftovers.values()
            )
        )
        for pid in leftovers:
            kill_worker(pid)
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def make_pool():
    """Factory for shmaccel.Pool objects that are closed at teardown."""
    created = []

    def make(*args, **kwargs):
        pool = shmaccel.Pool(*args, **kwargs)
        created.append(pool)
        return pool

    yield make
    for pool in reversed(created):
        with contextlib.suppress(Exception):
            os.kill(pool.worker_pid, signal.SIGCONT)
        with contextlib.suppress(Exception):
            pool.close()


@pytest.fixture
def pool(make_pool):
    """A private pool with two worker threads."""
    return make_pool(threads=2)


@pytest.fixture
def children():
    """Starts child processes (Children.python) and kills what is left of them at teardown."""
    kids = Children()
    yield kids
    kids.cleanup()


def start_named_worker(name, log_path):
    """Starts the worker binary as the pool called name and waits (up to 5 s) until
    shmaccel.Pool(name) connects. On failure the worker is stopped and the test fails."""
    exe = worker_path()
    if not os.access(exe, os.X_OK):
        pytest.skip(f"worker binary not found at {exe} (set SHMACCEL_WORKER)")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(exe), "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
    named = NamedPool(name, proc, log_path)
    deadline = time.monotonic() + 5.0
    last_error = None
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"named worker exited with {proc.returncode}: {named.log()}"
                )
            try:
                probe = shmaccel.Pool(name)
            except (shmaccel.Error, OSError) as exc:
                last_error = exc
            else:
                probe.close()
                return named
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"Pool({name!r}) did not connect within 5 s: {last_error!r}; "
                    f"worker log: {named.log()}"
                )
            time.sleep(0.05)
    except BaseException:
        stop_process(proc)
        raise


def runtime_dir():
    """Where named pools keep their sockets (see sa_runtime_dir in include/shmaccel.h)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "shmaccel" if base else Path(f"/tmp/shmaccel-{os.getuid()}")


def runtime_entries(name):
    """Entries of the runtime directory that belong to the pool called name."""
    try:
        return sorted(
            entry.name for entry in runtime_dir().iterdir() if name in entry.name
        )
    except FileNotFoundError:
        return []


@pytest.fixture
def named_pool(tmp_path):
    """A worker started directly as a named pool; terminated (killed if need be) at teardown,
    and any socket it left removed."""
    name = unique_name("shmaccel-test")
    named = start_named_worker(name, tmp_path / "worker.log")
    try:
        yield named
    finally:
        stop_process(named.proc)
        for entry in runtime_entries(name):
            with contextlib.suppress(OSError):
                (runtime_dir() / entry).unlink()


@pytest.fixture
def np():
    return pytest.importorskip("numpy")


def busy_array(pool, min_call_seconds=0.015, max_bytes=1 << 30):
    """A float64 SharedArray of the pool on which pool.square(a, out=a) takes at least
    min_call_seconds once warm (as far as max_bytes and a quarter of the free /dev/shm allow),
    and the measured time of one such call. Kernels run at memory speed, so one call is short;
    tests loop over such calls to keep the worker computing."""
    stats = os.statvfs(DEV_SHM)
    max_elements = min(max_bytes, stats.f_bavail * stats.f_frsize // 4) // 8
    n = min(1 << 22, max_elements)
    while True:
        data = shmaccel.empty(n, "float64", pool=pool)
        pool.square(data, out=data)  # first touch of the pages in the worker
        started = time.perf_counter()
        pool.square(data, out=data)
        seconds = time.perf_counter() - started
        if seconds >= min_call_seconds or n * 4 > max_elements:
            return data, seconds
        del data
        n *= 4


# ------------------------------------------------------------------------------------------------
# named pools started with scripts/shmaccel-pool, as a user would

CLI = ROOT / "scripts" / "shmaccel-pool"


def cli(*args, timeout=30):
    return subprocess.run(
        [sys.executable, str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )


def pool_status(name):
    result = cli("status", name, "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    return row


@dataclass
class CliPool:
    name: str
    pid: int
    log_path: Path

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def pool_threads():
    """At least two, so that big requests are split into chunks shared by the threads."""
    return min(4, max(2, len(os.sched_getaffinity(0))))


@pytest.fixture
def cli_pool(tmp_path):
    """A named pool started with `shmaccel-pool start`; stopped at teardown, pass or fail
    (killed if it does not stop), and its socket removed."""
    name = unique_name("cli")
    log_path = tmp_path / "pool.log"
    pid = None
    try:
        started = cli(
            "start", name, "--threads", str(pool_threads()), "--log", str(log_path)
        )
        assert started.returncode == 0, started.stderr
        pid = int(started.stdout.strip())
        yield CliPool(name, pid, log_path)
    finally:
        cli("stop", name, "--timeout", "10")
        if pid is not None:
            if running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not running(pid), 5)
        for entry in runtime_entries(name):
            with contextlib.suppress(OSError):
                (runtime_dir() / entry).unlink()


def running(pid):
    """pid runs and is not a zombie. The pool's worker is not our child (start detaches it):
    once dead it is only a zombie waiting for its new parent, which counts as gone."""
    proc = read_proc(pid)
    return proc is not None and proc.state not in ("Z", "X")
