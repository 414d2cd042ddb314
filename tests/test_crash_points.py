"""Crash points (issue 5, item 5): SHMACCEL_FAULT=<point> makes the worker or the client abort()
at a named step of the protocol, and every point is walked here.

A worker point kills the private default pool of a child issuing mixed calls from several
threads: every call returns the exact result or raises WorkerDiedError within 1 s of the
worker's death, the next call starts a fresh worker, and once the pools are closed the child's
descriptors and shared mappings are back to their baseline. A client point kills a client:
a named pool keeps its worker (same pid), takes the seat back and serves another client
without a single error; a private worker exits with its client.

The points are read from the sources (every sa__fault_point call), so a new one is covered
as soon as it exists.
"""

import json
import os
import re
import signal
import threading
import time

import pytest

import shmaccel

from conftest import PYSHIM, ROOT, session_workers, stopped, wait_until, worker_alive

DEATH_NOTICE_LIMIT = 1.0  # seconds from a worker's death to WorkerDiedError (issue 5, item 1)
SEAT_RECLAIM_LIMIT = 1.0  # seconds from a client's death to its seat being free again

POINT_CALL = re.compile(r'sa__fault_point\(\s*"([^"]+)"\s*\)')


def fault_points():
    """Every point named in an sa__fault_point call of the C sources, in file order."""
    points = []
    for path in sorted((ROOT / "src").glob("*.c")) + sorted((PYSHIM / "ext").glob("*.c")):
        for point in POINT_CALL.findall(path.read_text()):
            if point not in points:
                points.append(point)
    return points


POINTS = fault_points()
WORKER_POINTS = [p for p in POINTS if p.startswith("worker-")]
CLIENT_POINTS = [p for p in POINTS if p.startswith("client-")]

# The steps of the protocol that issue 5 names, and the points that stand for each.
ISSUE_STEPS = {
    "slot claimed": {"client-slot-claimed", "worker-slot-claimed"},
    "request written": {"client-request-written"},
    "worker woken": {"client-worker-woken", "worker-slot-claimed"},
    "chunk done": {"worker-chunk-done"},
    "completion posted": {"worker-after-complete"},
    "arena registration": {"worker-arena-registered", "client-arena-registered"},
}


def test_every_protocol_step_of_the_issue_has_crash_points():
    for step, points in ISSUE_STEPS.items():
        missing = points - set(POINTS)
        assert not missing, f"step {step!r}: no crash point {sorted(missing)} in src/"
    odd = [p for p in POINTS if not p.startswith(("client-", "worker-"))]
    assert not odd, f"points must say which side aborts (client-/worker-): {odd}"


def test_every_crash_point_is_documented_in_fault_c():
    header = (ROOT / "src" / "fault.c").read_text().split("*/", 1)[0]
    undocumented = [p for p in POINTS if not re.search(rf"\b{re.escape(p)}\b", header)]
    assert not undocumented, f"points missing from the comment atop src/fault.c: {undocumented}"


# ------------------------------------------------------------------------------------------------
# worker points

# argv[1]: the point (also in SHMACCEL_FAULT, which the first worker inherits). Prints WORKER
# <pid>, then RESULT <json> with every call's outcome and timing, and the resource checks.
WORKER_CRASH_CHILD = r"""
import array, gc, json, os, resource, select, sys, threading, time
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the aborting worker inherits it
import shmaccel

point = sys.argv[1]
THREADS = 4
AFTER_DEATH = 0.6  # seconds of calls on the restarted pool, at least
PF_EXITING = 0x4  # include/linux/sched.h: the task has begun to exit

def open_fds():
    return sorted(os.listdir("/proc/self/fd"))

def shared_mappings():
    with open("/proc/self/maps") as maps:
        return [line.strip() for line in maps if "shmaccel" in line or "/dev/shm" in line]

# Inputs and exact results, computed in Python before anything runs.
small = list(range(-500, 500))
small_doubled = [v * 2 for v in small]
floats = [v * 0.5 for v in range(-2000, 2000)]
floats_squared = [v * v for v in floats]
big = array.array("d", [((k * 7919) % 10007) * 0.25 - 1000.0 for k in range(300_000)])
big_squared = array.array("d", [v * v for v in big]).tobytes()  # 2.4 MB: chunked
mid = array.array("i", range(-25_000, 25_000))
mid_doubled = array.array("i", [v * 2 for v in mid]).tobytes()

def call_small():
    return shmaccel.double(small) == small_doubled

def call_big():
    return shmaccel.square(big).tobytes() == big_squared

def call_shared():
    a = shmaccel.array(mid)
    return shmaccel.double(a, out=a) is a and memoryview(a).tobytes() == mid_doubled

def call_submit():
    return shmaccel.default_pool().submit("square", floats).result(timeout=10) == floats_squared

KINDS = [call_small, call_big, call_shared, call_submit]

baseline_fds = open_fds()
baseline_maps = shared_mappings()
calls = [[] for _ in range(THREADS)]
death = {}
began = time.monotonic()
try:
    first_pid = shmaccel.default_pool().worker_pid
except shmaccel.WorkerDiedError:
    # The point lies in the pool's start (the first arena is registered there): the death
    # falls within this call, so its duration bounds the time to the error.
    first_pid = None
    death["at"] = began
    calls[0].append(("pool_start", began, time.monotonic(), "died", True))
# The worker was spawned with SHMACCEL_FAULT in its environment; the ones the default pool
# starts after it dies must not abort again. (This library's own copy of the setting is read
# once, and it names a worker point that the client never reaches.)
del os.environ["SHMACCEL_FAULT"]
print("WORKER", first_pid, flush=True)

def watch_worker():
    pidfd = os.pidfd_open(first_pid)
    ready, _, _ = select.select([pidfd], [], [], 20)
    if ready:
        death["at"] = time.monotonic()
    os.close(pidfd)
watcher = threading.Thread(target=watch_worker, daemon=True)
if first_pid is not None:
    watcher.start()

def first_worker_exiting():
    # Whether the first worker is dead or dying: gone, a zombie, or past the start of its exit
    # (PF_EXITING in the flags, field 9 of /proc/<pid>/stat). The kernel closes a dying
    # process's sockets (the hang-up a client notices) after all its threads set PF_EXITING
    # and before it is a zombie. Read when the error comes, this needs no clock shared with
    # the watcher thread, which may get the GIL long after the death.
    try:
        with open(f"/proc/{first_pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in (b"Z", b"X") or int(fields[6]) & PF_EXITING != 0

stop = threading.Event()
start = threading.Barrier(THREADS)
def loop(index):
    start.wait()
    k = index
    while not stop.is_set():
        kind = KINDS[k % len(KINDS)]
        k += 1
        began = time.monotonic()
        exiting = None
        try:
            outcome = "ok" if kind() else "wrong result"
        except shmaccel.WorkerDiedError:
            outcome = "died"
            exiting = first_pid is None or first_worker_exiting()
        except BaseException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        calls[index].append((kind.__name__, began, time.monotonic(), outcome, exiting))

def restarted_call_ok():
    # A call begun after the death came back right: the restarted pool serves.
    return any(c[3] == "ok" and c[1] > death["at"]
               for per_thread in calls for c in list(per_thread))

threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(THREADS)]
for t in threads:
    t.start()
if first_pid is not None:
    watcher.join(15)
if "at" in death:
    # Until a call has come back right from the restarted pool (its new worker starts when
    # the machine lets it), and AFTER_DEATH seconds at least.
    until, limit = time.monotonic() + AFTER_DEATH, time.monotonic() + 30
    while (time.monotonic() < until or not restarted_call_ok()) and time.monotonic() < limit:
        time.sleep(0.02)
stop.set()
for t in threads:
    t.join(15)
hung = sum(t.is_alive() for t in threads)

restarted = {}
if not hung:
    restarted["double"] = shmaccel.double([1, 2, 3]) == [2, 4, 6]
    restarted["pid"] = shmaccel.default_pool().worker_pid
    restarted["alive"] = os.path.exists(f"/proc/{restarted['pid']}")
    shmaccel.default_pool().close()
    # A closed session keeps its socket and notify socket until its object is freed (threads may
    # still poll them), and the module holds on to its default pool: let it go.
    shmaccel._default = None
    gc.collect()
first_reaped = first_pid is None or not os.path.exists(f"/proc/{first_pid}")
deadline = time.monotonic() + 2
while (open_fds() != baseline_fds or shared_mappings() != baseline_maps) and (
        time.monotonic() < deadline):
    time.sleep(0.02)
    gc.collect()
print("RESULT", json.dumps({
    "died_at": death.get("at"),
    "calls": [c for per_thread in calls for c in per_thread],
    "hung": hung,
    "restarted": restarted,
    "first_reaped": first_reaped,
    "fds": [baseline_fds, open_fds()],
    "maps": [baseline_maps, shared_mappings()],
}), flush=True)
"""


@pytest.mark.parametrize("point", WORKER_POINTS)
def test_worker_aborting_at_crash_point(point, children):
    child = children.python(WORKER_CRASH_CHILD, point, env={"SHMACCEL_FAULT": point})
    first_pid = child.expect("WORKER", timeout=30).split()[1]
    first_pid = None if first_pid == "None" else int(first_pid)
    if first_pid is not None:
        children.adopt_worker(first_pid)
    report = json.loads(child.expect("RESULT", timeout=60).split(" ", 1)[1])
    assert child.finish(timeout=15) == 0, child.transcript()

    assert report["hung"] == 0, f"{report['hung']} calls still hang: {child.transcript()}"
    died_at = report["died_at"]
    assert died_at is not None, f"the worker never reached {point}"
    calls = report["calls"]
    ok = [c for c in calls if c[3] == "ok"]
    died = [c for c in calls if c[3] == "died"]
    other = [c for c in calls if c[3] not in ("ok", "died")]
    assert not other, f"calls neither exact nor WorkerDiedError: {other[:5]}"
    # (No call need see the death: every call may have finished before it, and the next
    # ones gone to the restarted pool.) A call started after the death but before the client
    # noticed it fails at once.
    late = [(c[0], round(c[2] - max(c[1], died_at), 3)) for c in died]
    worst = max((seconds for _, seconds in late), default=0.0)
    assert worst < DEATH_NOTICE_LIMIT, f"WorkerDiedError too late: {late}"
    alive = [c for c in died if not c[4]]
    assert not alive, f"WorkerDiedError while the worker lived: {alive[:5]}"
    after = [c for c in ok if c[1] > died_at]
    assert after, "no call succeeded on the restarted default pool"
    restarted = report["restarted"]
    assert restarted["double"] and restarted["pid"] != first_pid and restarted["alive"], restarted
    assert report["first_reaped"], f"the aborted worker {first_pid} was never reaped"
    assert report["fds"][1] == report["fds"][0], f"descriptors (before, after): {report['fds']}"
    assert report["maps"][1] == report["maps"][0], f"shared mappings: {report['maps']}"
    print(
        f"\nFIGURES {point}: calls ok {len(ok)} ({len(after)} after the restart), "
        f"WorkerDiedError {len(died)}, max death->error {worst * 1000:.0f} ms"
    )


# The default pool replaces a pool whose worker died, closing the old session to reap the
# worker. A thread that took the old pool just before (or is waiting on it) must still be told
# that the worker died, not that a pool it never closed is closed.


def kill_default_worker_and_restart():
    """Kills the default pool's worker, lets shmaccel.default_pool() start the next one and
    returns the old pool (now replaced and closed)."""
    old = shmaccel.default_pool()
    assert old.double([1]) == [2]
    os.kill(old.worker_pid, signal.SIGKILL)
    assert wait_until(lambda: not worker_alive(old.worker_pid), 2.0)
    assert wait_until(lambda: old.closed, 2.0)  # the death is noticed, not yet acted on
    fresh = shmaccel.default_pool()
    assert fresh is not old
    return old


def test_calls_on_a_default_pool_replaced_after_its_death_raise_worker_died_error():
    old = kill_default_worker_and_restart()
    with pytest.raises(shmaccel.WorkerDiedError):
        old.square([1.5, 2.0])
    with pytest.raises(shmaccel.WorkerDiedError):
        old.zeros(10)
    with pytest.raises(shmaccel.WorkerDiedError):
        old.submit("double", [1, 2]).result(timeout=5)
    assert shmaccel.double([1, 2]) == [2, 4]


def test_call_waiting_when_the_default_pool_is_replaced_raises_worker_died_error():
    old = shmaccel.default_pool()
    data = shmaccel.zeros(1000, pool=old)
    outcome = {}

    def call():
        try:
            outcome["result"] = old.square(data, out=data)
        except BaseException as exc:  # noqa: BLE001 - judged below
            outcome["error"] = exc

    with stopped(old.worker_pid):
        waiting = threading.Thread(target=call, daemon=True)
        waiting.start()
        time.sleep(0.2)  # blocked in its 50 ms wait slices
        os.kill(old.worker_pid, signal.SIGKILL)
        # Replace the pool at once, most likely before the waiting thread's next slice.
        assert wait_until(lambda: old.closed, 2.0, interval=0.001)
        shmaccel.default_pool()
        waiting.join(5)
    assert not waiting.is_alive()
    assert isinstance(outcome.get("error"), shmaccel.WorkerDiedError), outcome


class FailingPending:
    """Stands for a request whose worker died between its submission and the dispatcher's
    first look at it (another thread noticed the death in between)."""

    submitted = True

    def poll(self):
        raise shmaccel.WorkerDiedError("the shmaccel worker process died")


def test_request_failing_as_the_dispatcher_takes_it_is_settled_once(make_pool):
    pool = make_pool(threads=1)
    assert pool.submit("double", [1]).result(timeout=5) == [2]
    dispatcher = pool._dispatcher()
    settled = []
    # Raising from add() as well made submit() settle the future, and service() settle it a
    # second time: InvalidStateError in the completion thread, or in whichever call closed
    # the pool (the default pool's restart).
    dispatcher.add(FailingPending(), lambda pending, error: settled.append(error))
    dispatcher.service()
    assert len(settled) == 1 and isinstance(settled[0], shmaccel.WorkerDiedError), settled
    assert pool.submit("square", [3]).result(timeout=5) == [9]


# ------------------------------------------------------------------------------------------------
# client points

# argv[1]: "named" or "private", argv[2]: the pool name. SHMACCEL_FAULT names a client point,
# which the first allocations and calls below all reach: the process aborts there.
CLIENT_CRASH_CHILD = r"""
import array, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
import shmaccel

mode = sys.argv[1]
pool = shmaccel.Pool(sys.argv[2]) if mode == "named" else shmaccel.Pool(threads=1)
print("WORKER", pool.worker_pid, flush=True)
for _ in range(3):
    pool.double([1, 2, 3])
    pool.square(array.array("d", [0.5]) * 300_000)
    pool.submit("square", [1.5] * 1000).result(timeout=10)
print("SURVIVED", flush=True)
"""


class SteadyClient:
    """Keeps calling a pool from a thread of the test process and counts what goes wrong."""

    def __init__(self, pool):
        self.pool = pool
        self.calls = 0
        self.errors = []
        self.stop = threading.Event()
        self.values = [v * 0.25 for v in range(-2000, 2000)]
        self.shared = shmaccel.array(self.values, pool=pool)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        expected = [v * v for v in self.values]
        while not self.stop.is_set():
            try:
                assert self.pool.square(self.shared).tolist() == expected
                assert self.pool.double([1, -2, 3]) == [2, -4, 6]
            except BaseException as exc:  # noqa: BLE001 - counted and reported
                self.errors.append(repr(exc))
            self.calls += 1

    def finish(self):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the well-behaved client's call hangs"


def run_aborting_client(children, mode, point, name=""):
    """Runs a client that aborts at point (its pool's start may already reach it) and
    returns the time it was seen dead."""
    child = children.python(CLIENT_CRASH_CHILD, mode, name, env={"SHMACCEL_FAULT": point})
    child.finish(timeout=30)
    died_at = time.monotonic()
    assert child.proc.returncode == -signal.SIGABRT, (
        f"client did not abort at {point} (rc {child.proc.returncode}): {child.transcript()}"
    )
    return died_at


def live_session_workers():
    return {pid for pid, proc in session_workers().items() if proc.state not in ("Z", "X")}


@pytest.mark.parametrize("point", CLIENT_POINTS)
def test_client_aborting_at_crash_point_leaves_named_pool_serving(point, named_pool, children):
    with shmaccel.Pool(named_pool.name) as observer:
        steady = SteadyClient(observer)
        try:
            died_at = run_aborting_client(children, "named", point, named_pool.name)
            reclaimed = wait_until(lambda: observer.stats()["clients"] == 1, 5.0)
            reclaim_s = time.monotonic() - died_at
            time.sleep(0.2)
        finally:
            steady.finish()
        assert reclaimed, f"seat never freed: {observer.stats()}"
        assert reclaim_s < SEAT_RECLAIM_LIMIT, f"seat freed {reclaim_s:.2f} s after the abort"
        assert steady.errors == [], steady.errors[:5]
        assert steady.calls > 0
        assert named_pool.proc.poll() is None, f"worker died: {named_pool.log()}"
        assert observer.stats()["worker_pid"] == named_pool.pid
    with shmaccel.Pool(named_pool.name) as next_client:
        assert next_client.double([4, 5]) == [8, 10]
        assert next_client.square(shmaccel.zeros(300_000, pool=next_client)).tolist()[:2] == [
            0.0, 0.0]
    print(
        f"\nFIGURES {point} (named): well-behaved calls {steady.calls}, errors "
        f"{len(steady.errors)}, seat back in {reclaim_s * 1000:.0f} ms"
    )


@pytest.mark.parametrize("point", CLIENT_POINTS)
def test_client_aborting_at_crash_point_takes_its_private_worker_along(point, children):
    # The pool's start may reach the point before the child could say which worker it has:
    # look for any worker of this test session that is new and outlives the client.
    before = live_session_workers()
    died_at = run_aborting_client(children, "private", point)
    gone = wait_until(lambda: not live_session_workers() - before, 5.0, interval=0.005)
    exit_s = time.monotonic() - died_at
    orphans = live_session_workers() - before
    for pid in orphans:
        children.adopt_worker(pid)
    assert gone, f"private workers {orphans} outlived their aborted client"
    assert exit_s < 1.0, f"private worker exited {exit_s:.2f} s after its client"
    print(f"\nFIGURES {point} (private): worker gone {exit_s * 1000:.0f} ms after the abort")
