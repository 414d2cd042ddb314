"""Another user (issue 5 item 9): a process of another uid can neither reach a pool nor its
shared memory, every object is private even under `umask 000`, and a name squatted in advance
by someone else is refused, never used or replaced.

The pools run as root (this test process and its children); the other user is `nobody`, and
its attempts run as real processes of that uid (a small Python script under an interpreter
nobody may execute). Each test gets a private XDG_RUNTIME_DIR (a 0755 directory under /tmp,
so that nobody can reach the pool's own directory and the refusal happens exactly there), so
nothing here touches the runtime directory other tests use.
"""

import contextlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import shmaccel

from conftest import ROOT, child_env, unique_name, wait_until, worker_alive, worker_path

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: the attempts of another user run as uid 'nobody' (CI runs as root)",
)

CLI = ROOT / "scripts" / "shmaccel-pool"
# sa_msg (include/shmaccel.h), 24 bytes "=IIIiQ": magic, type, arg32, status, arg64.
SA_MAGIC = 0x414D4853
SA_MSG_HELLO = 1

# Helpers every script run as the other user starts with.
INTRUDER_PRELUDE = """
import errno, json, os, socket, struct, sys

def attempt(fn, *args):
    '''"ok", or the errno name fn(*args) failed with.'''
    try:
        fn(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"

def connect(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)

def read_file(path):
    with open(path, "rb") as f:
        f.read(1)

def open_rw(path):
    os.close(os.open(path, os.O_RDWR))
"""


# ------------------------------------------------------------------------------------------------
# the other user


@dataclass(frozen=True)
class OtherUser:
    uid: int
    gid: int
    python: str

    def run(self, code, *args, timeout=30):
        """Runs code (after INTRUDER_PRELUDE) as this user; its last output line is JSON."""
        result = subprocess.run(
            [self.python, "-I", "-c", INTRUDER_PRELUDE + textwrap.dedent(code), *map(str, args)],
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"script as uid {self.uid} failed:\n{result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    def popen(self, code, *args):
        """Starts code as this user with pipes for stdin and stdout."""
        return subprocess.Popen(
            [self.python, "-I", "-u", "-c", INTRUDER_PRELUDE + textwrap.dedent(code),
             *map(str, args)],
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(scope="module")
def nobody():
    """The user nobody, with a Python interpreter it may run (this one may live under /root)."""
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    probe = "import json, os, sys; print(json.dumps([os.getuid(), os.getgroups(), " \
            "sys.version_info >= (3, 8)]))"
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
    for python in dict.fromkeys(candidates):
        if not os.path.exists(python):
            continue
        try:
            result = subprocess.run(
                [python, "-I", "-c", probe], user=entry.pw_uid, group=entry.pw_gid,
                extra_groups=[], cwd="/", capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if result.returncode == 0 and json.loads(result.stdout) == [entry.pw_uid, [], True]:
            return OtherUser(entry.pw_uid, entry.pw_gid, python)
    pytest.skip("no Python interpreter (3.8+) that user nobody may execute")


# ------------------------------------------------------------------------------------------------
# pools in a private runtime directory


@dataclass
class Runtime:
    """A private XDG_RUNTIME_DIR for this test's pools and whatever they leave."""

    base: Path
    env: dict
    started: list = field(default_factory=list)  # (name, worker pid)

    @property
    def rundir(self):
        return self.base / "shmaccel"

    def sock(self, name):
        return self.rundir / f"{name}.sock"

    def cli(self, *args, umask=-1, timeout=30):
        return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, umask=umask, check=False)

    def start(self, name, *extra, umask=-1):
        result = self.cli("start", name, *extra, umask=umask)
        assert result.returncode == 0, result.stderr
        pid = int(result.stdout.strip())
        self.started.append((name, pid))
        return pid

    def stop_all(self):
        for name, pid in self.started:
            if worker_alive(pid):
                self.cli("stop", name, "--timeout", "5")
            if worker_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: not worker_alive(pid), 5)


@pytest.fixture
def runtime(monkeypatch):
    """A Runtime whose base directory (0755, so nobody may enter it) is removed at the end,
    after every pool started in it has been stopped. This process uses it too, so that
    shmaccel.Pool(name) finds the pools started there."""
    base = Path(tempfile.mkdtemp(prefix="shmaccel-sec-", dir="/tmp"))
    os.chmod(base, 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    rt = Runtime(base, child_env({"XDG_RUNTIME_DIR": str(base)}))
    try:
        yield rt
    finally:
        rt.stop_all()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def modes(*changes):
    """chmod each (path, mode) for the duration of the block; the old modes come back even
    if the block fails."""
    saved = []
    try:
        for path, mode in changes:
            saved.append((path, stat.S_IMODE(os.lstat(path).st_mode)))
            os.chmod(path, mode)
        yield
    finally:
        for path, mode in reversed(saved):
            os.chmod(path, mode)


def fd_links(pid):
    """{fd number: link text} of the descriptors of pid."""
    links = {}
    for entry in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            links[int(entry)] = os.readlink(f"/proc/{pid}/fd/{entry}")
    return links


def is_shared_memory(path):
    """POSIX shm or memfd, but not a glibc named semaphore (/dev/shm/sem.*): shmaccel has
    none (its semaphores live inside its segments), while multiprocessing locks made earlier
    in the test process (dask's LocalCluster makes some) stay mapped in it."""
    return path.startswith(("/dev/shm/", "/memfd:")) and not path.startswith("/dev/shm/sem.")


def shared_memory_fds(pid):
    """{fd: link} of the descriptors of pid that are shared memory (POSIX shm or memfd)."""
    return {fd: link for fd, link in fd_links(pid).items() if is_shared_memory(link)}


def shared_memory_maps(pid):
    """Address ranges (as in /proc/<pid>/map_files) and paths of pid's shared memory maps."""
    found = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and is_shared_memory(parts[5]):
            found.append((parts[0], parts[5]))
    return found


def shared_memory_objects(pid):
    """{description: /proc path to stat it through} of every piece of shared memory pid holds,
    as a descriptor (fd/N) or a mapping (map_files/RANGE: the worker keeps arenas only
    mapped)."""
    found = {f"fd {fd} -> {link}": f"/proc/{pid}/fd/{fd}"
             for fd, link in shared_memory_fds(pid).items()}
    for rng, path in shared_memory_maps(pid):
        found[f"map {rng} -> {path}"] = f"/proc/{pid}/map_files/{rng}"
    return found


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------------------------------------------
# connecting and sending requests


def test_nobody_cannot_connect_through_the_private_directory_nor_the_0600_socket(nobody, runtime):
    name = unique_name("sectest")
    runtime.start(name, "--threads", "1")
    with shmaccel.Pool(name) as pool:
        assert pool.square([3]) == [9]
        script = """
            base, rundir, sock = sys.argv[1:4]
            print(json.dumps({
                "uid": os.getuid(),
                "list_base": attempt(os.listdir, base),
                "list_rundir": attempt(os.listdir, rundir),
                "stat_sock": attempt(os.stat, sock),
                "connect": attempt(connect, sock),
            }))
        """
        args = (runtime.base, runtime.rundir, runtime.sock(name))
        denied = nobody.run(script, *args)
        assert denied["uid"] == nobody.uid
        # nobody gets as far as the pool's own directory, and no further.
        assert denied["list_base"] == "ok"
        assert mode_of(runtime.rundir) == 0o700 and mode_of(runtime.sock(name)) == 0o600
        assert denied["list_rundir"] == "EACCES"
        assert denied["stat_sock"] == "EACCES"
        assert denied["connect"] == "EACCES"

        # With the directory merely searchable, the socket's own 0600 still refuses.
        with modes((runtime.rundir, 0o711)):
            by_socket = nobody.run(script, *args)
        assert by_socket["stat_sock"] == "ok"
        assert by_socket["connect"] == "EACCES"
        assert pool.square([4]) == [16]


INTRUDER_SESSION = """
    sock_path, attempts = sys.argv[1], int(sys.argv[2])
    results = []
    for _ in range(attempts):
        r = {}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(sock_path)
        # A request sent at once, as a client registers an arena (ARENA_ADD = 2, arena id 0,
        # sequence 1): a descriptor of ours attached.
        arena = os.memfd_create("intruder-arena")
        os.ftruncate(arena, 1 << 16)
        add = struct.pack("=IIIiQ", 0x414D4853, 2, 0, 0, 1)
        r["send"] = attempt(s.sendmsg, [add],
                            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", arena))])
        os.close(arena)
        messages, fds = [], 0
        while True:
            try:
                data, ancillary, _, _ = s.recvmsg(24, socket.CMSG_SPACE(4 * 4))
            except OSError as e:
                r["end"] = errno.errorcode.get(e.errno, str(e.errno))
                break
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for i in range(len(payload) // 4):
                        fds += 1
                        os.close(struct.unpack_from("i", payload, 4 * i)[0])
            if not data:
                r["end"] = "eof"
                break
            if len(data) == 24:
                messages.append(list(struct.unpack("=IIIiQ", data)))
            else:
                messages.append(data.hex())
        r["messages"], r["fds"] = messages, fds
        s.close()
        results.append(r)
    print(json.dumps(results))
"""


def test_nobody_is_rejected_by_peer_credentials_when_the_modes_let_it_connect(nobody, runtime):
    """The second line of defence: with the directory and socket opened up (as a careless
    admin might), the worker still refuses another uid at accept (SO_PEERCRED). The
    connection gets a HELLO carrying -EPERM and no descriptor, its ARENA_ADD is never answered,
    no seat is taken, and the real client keeps being served without an error."""
    name = unique_name("sectest")
    runtime.start(name, "--threads", "2", "--max-clients", "2")
    sock = runtime.sock(name)
    with shmaccel.Pool(name) as pool:
        assert pool.square([2]) == [4]
        before = pool.stats()
        assert before["clients"] == 1

        errors, done = [], threading.Event()
        calls = [0]

        def serve_real_client():
            try:
                while not done.is_set():
                    values = list(range(calls[0], calls[0] + 100))
                    assert pool.double(values) == [2 * v for v in values]
                    calls[0] += 1
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(exc))

        busy = threading.Thread(target=serve_real_client)
        busy.start()
        try:
            with modes((runtime.rundir, 0o777), (sock, 0o666)):
                results = nobody.run(INTRUDER_SESSION, sock, 5)
        finally:
            done.set()
            busy.join(60)
        assert not busy.is_alive(), "the real client hung"
        assert errors == [] and calls[0] > 0

        assert len(results) == 5
        for r in results:
            # Exactly one message: the refusal; the ARENA_ADD got no REPLY.
            assert r["messages"] == [[SA_MAGIC, SA_MSG_HELLO, 0, -1, 0]], r  # -EPERM
            assert r["fds"] == 0, r  # the control segment was never shown
            assert r["end"] in ("eof", "ECONNRESET"), r

        after = pool.stats()
        assert after["clients"] == 1  # no seat taken
        assert after["errors"] == 0 and after["client_errors"] == 0
        assert after["requests"] > before["requests"]
        assert [s["pid"] for s in after["sessions"]] == [os.getpid()]
        # Both seats are still there for our own user: a second client fits, a third does not.
        with shmaccel.Pool(name) as second:
            assert second.square([5]) == [25]
            assert pool.stats()["clients"] == 2
            with pytest.raises(shmaccel.Error):
                shmaccel.Pool(name)
        assert pool.square([6]) == [36]


# ------------------------------------------------------------------------------------------------
# shared memory


def shmaccel_shm_names():
    return {e for e in os.listdir("/dev/shm") if e.startswith("shmaccel-")}


def test_nobody_cannot_open_the_segments_by_name_or_through_proc(nobody, runtime):
    name = unique_name("sectest")
    already_there = shmaccel_shm_names()  # not ours: left by someone else's crash, if any
    worker = runtime.start(name, "--threads", "1")
    with shmaccel.Pool(name) as pool:
        data = shmaccel.array(range(1000), dtype="float64", pool=pool)
        pool.square(data, out=data)
        client = os.getpid()
        assert shared_memory_fds(worker), fd_links(worker)  # the control segment at least
        held = {pid: shared_memory_fds(pid) for pid in (worker, client)}
        maps = {pid: shared_memory_maps(pid) for pid in (worker, client)}
        names = set()  # the /dev/shm names the segments were created under
        for pid in (worker, client):
            # The control segment and at least one arena (POSIX shm or memfd) in each process,
            # held as descriptors or mappings.
            objects = {os.stat(p).st_ino for p in shared_memory_objects(pid).values()}
            assert len(objects) >= 2, (pid, shared_memory_objects(pid))
            for link in [*held[pid].values(), *(path for _, path in maps[pid])]:
                # Named for shmaccel (memfd, POSIX shm) or never named (O_TMPFILE in /dev/shm).
                assert "shmaccel" in link or link.startswith("/dev/shm/#"), (pid, link)
                # Unlinked at once: the kernel shows the name as deleted.
                assert link.endswith(" (deleted)"), (pid, link)
                if link.startswith("/dev/shm/"):
                    names.add(link[: -len(" (deleted)")])
        for path in names:
            assert not os.path.exists(path)
        # No shmaccel name lingers in /dev/shm while the pool runs with a client and arenas
        # (another process may be between its shm_open and shm_unlink this very microsecond:
        # such a name must be gone a moment later).
        assert wait_until(lambda: not shmaccel_shm_names() - already_there, 2.0), \
            shmaccel_shm_names() - already_there

        targets = {
            "names": sorted(names),
            "proc": {
                str(pid): {
                    "fd_dir": f"/proc/{pid}/fd",
                    # Every descriptor, shared memory or not (the client keeps its
                    # segments only mapped).
                    "fds": [f"/proc/{pid}/fd/{fd}" for fd in fd_links(pid)],
                    "mem": f"/proc/{pid}/mem",
                    "maps": f"/proc/{pid}/maps",
                    "map_files_dir": f"/proc/{pid}/map_files",
                    "map_files": [f"/proc/{pid}/map_files/{rng}" for rng, _ in maps[pid]],
                }
                for pid in (worker, client)
            },
        }
        report = nobody.run(
            """
            targets = json.loads(sys.argv[1])
            out = {"names": {p: attempt(open_rw, p) for p in targets["names"]},
                   "dev_shm": [e for e in os.listdir("/dev/shm") if e.startswith("shmaccel-")],
                   "proc": {}}
            for pid, t in targets["proc"].items():
                out["proc"][pid] = {
                    "fd_dir": attempt(os.listdir, t["fd_dir"]),
                    "fds": {p: attempt(open_rw, p) for p in t["fds"]},
                    "fds_ro": {p: attempt(read_file, p) for p in t["fds"]},
                    "mem": attempt(read_file, t["mem"]),
                    "maps": attempt(read_file, t["maps"]),
                    "map_files_dir": attempt(os.listdir, t["map_files_dir"]),
                    "map_files": {p: attempt(read_file, p) for p in t["map_files"]},
                }
            print(json.dumps(out))
            """,
            json.dumps(targets),
        )
        assert pool.square([7]) == [49]  # still fine

    assert all(v == "ENOENT" for v in report["names"].values()), report["names"]
    assert not set(report["dev_shm"]) & {Path(p).name for p in names}
    denied = {"EACCES", "EPERM"}
    for pid, r in report["proc"].items():
        assert r["fd_dir"] in denied, (pid, r)
        assert r["fds"] and set(r["fds"].values()) <= denied, (pid, r["fds"])
        assert set(r["fds_ro"].values()) <= denied, (pid, r["fds_ro"])
        assert r["mem"] in denied, (pid, r)
        assert r["maps"] in denied, (pid, r)
        assert r["map_files_dir"] in denied, (pid, r)
        assert r["map_files"] and set(r["map_files"].values()) <= denied, (pid, r["map_files"])


# ------------------------------------------------------------------------------------------------
# umask 000


HOLD_A_POOL = """
    import os, sys
    os.umask(0)
    import shmaccel
    name = sys.argv[1] if len(sys.argv) > 1 else None
    pool = shmaccel.Pool(name) if name else shmaccel.Pool(threads=1)
    data = shmaccel.array(range(1000), dtype="float64", pool=pool)
    pool.square(data, out=data)
    print(f"ready {os.getpid()} {pool.worker_pid} {oct(os.umask(0))}", flush=True)
    sys.stdin.readline()
    pool.close()
    print("closed", flush=True)
"""


def assert_private_shared_memory(*pids):
    for pid in pids:
        objects = shared_memory_objects(pid)
        found = {what: os.stat(path) for what, path in objects.items()}
        # The control segment and an arena at least.
        assert len({st.st_ino for st in found.values()}) >= 2, (pid, objects)
        modes = {what: oct(stat.S_IMODE(st.st_mode)) for what, st in found.items()}
        assert set(modes.values()) == {"0o600"}, (pid, modes)


def test_cli_start_with_umask_000_creates_only_private_objects(runtime, children):
    name, logged = unique_name("sectest"), unique_name("sectest")
    explicit_log = runtime.base / "explicit.log"
    assert not runtime.rundir.exists()  # the CLI and the worker create it here
    worker = runtime.start(name, "--threads", "1", umask=0)
    other = runtime.start(logged, "--threads", "1", "--log", str(explicit_log), umask=0)
    assert mode_of(runtime.rundir) == 0o700
    assert runtime.rundir.stat().st_uid == os.getuid()
    for pool_name in (name, logged):
        assert stat.S_ISSOCK(os.lstat(runtime.sock(pool_name)).st_mode)
        assert mode_of(runtime.sock(pool_name)) == 0o600
    default_log = runtime.rundir / f"{name}.log"
    assert {str(p): oct(mode_of(p)) for p in (default_log, explicit_log)} == {
        str(default_log): "0o600", str(explicit_log): "0o600"}
    assert sorted(os.listdir(runtime.rundir)) == sorted(
        [f"{name}.sock", f"{name}.log", f"{logged}.sock"])

    child = children.python(HOLD_A_POOL, name, env=runtime.env, stdin=True)
    _, client_pid, worker_pid, umask = child.expect("ready").split()
    assert int(worker_pid) == worker and umask == "0o0"
    assert_private_shared_memory(worker, int(client_pid))
    child.send("\n")
    child.expect("closed")
    assert child.finish() == 0
    assert worker_alive(other)


def test_private_pool_with_umask_000_holds_only_0600_segments(children):
    child = children.python(HOLD_A_POOL, stdin=True)
    _, client_pid, worker_pid, umask = child.expect("ready").split()
    assert umask == "0o0"
    children.adopt_worker(int(worker_pid))
    assert_private_shared_memory(int(worker_pid), int(client_pid))
    child.send("\n")
    child.expect("closed")
    assert child.finish() == 0


# ------------------------------------------------------------------------------------------------
# squatted names


SQUATTER = """
    import select
    sock_path = sys.argv[1]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(16)
    print("listening", flush=True)
    connections, received, fds = 0, 0, 0
    while True:
        ready = select.select([listener, sys.stdin], [], [])[0]
        if sys.stdin in ready:
            break
        conn, _ = listener.accept()
        connections += 1
        conn.settimeout(2)
        while True:
            try:
                data, ancillary, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4 * 16))
            except OSError:
                break
            fds += sum(len(p) // 4 for level, kind, p in ancillary if kind == socket.SCM_RIGHTS)
            received += len(data)
            if not data:
                break
        conn.close()
    print(json.dumps({"connections": connections, "received": received, "fds": fds}))
"""


@dataclass
class Squat:
    target: Path  # what was squatted
    problem: str  # what the refusal must say about it
    squatter: subprocess.Popen | None = None


def squat(kind, runtime, name, nobody):
    """Sets up the squatted name of this kind; returns a Squat."""
    rundir, sock = runtime.rundir, runtime.sock(name)
    if kind == "dir_of_nobody":
        rundir.mkdir(mode=0o700)
        os.chown(rundir, nobody.uid, nobody.gid)
        return Squat(rundir, f"owned by uid {nobody.uid}")
    if kind == "dir_open_to_all":
        rundir.mkdir()
        os.chmod(rundir, 0o777)
        return Squat(rundir, "open to other users")
    if kind == "dir_symlink":
        real = runtime.base / "elsewhere"
        real.mkdir(mode=0o700)  # a directory that would pass every check if followed
        rundir.symlink_to(real)
        return Squat(rundir, "symbolic link")
    rundir.mkdir(mode=0o700)
    if kind == "file_of_nobody_at_socket":
        sock.write_bytes(b"not a socket")
        os.chown(sock, nobody.uid, nobody.gid)
        os.chmod(sock, 0o600)
        return Squat(sock, "not a socket")
    if kind == "symlink_of_nobody_at_socket":
        sock.symlink_to("/nonexistent/shmaccel.sock")
        os.lchown(sock, nobody.uid, nobody.gid)
        return Squat(sock, "symbolic link")
    if kind == "live_socket_of_nobody":
        # As if the directory had been open when nobody came by: its socket, its listener.
        with modes((rundir, 0o777)):
            squatter = nobody.popen(SQUATTER, sock)
            line = squatter.stdout.readline()
        assert line.strip() == "listening", squatter.stderr.read()
        return Squat(sock, f"owned by uid {nobody.uid}", squatter)
    raise ValueError(kind)


def fingerprint(path):
    st = os.lstat(path)
    return st.st_ino, st.st_uid, st.st_gid, st.st_mode, st.st_size


@pytest.mark.parametrize("kind", [
    "dir_of_nobody",
    "dir_open_to_all",
    "dir_symlink",
    "file_of_nobody_at_socket",
    "symlink_of_nobody_at_socket",
    "live_socket_of_nobody",
])
def test_squatted_name_is_refused_with_a_clear_error_and_left_alone(kind, nobody, runtime):
    name = unique_name("sectest")
    spot = squat(kind, runtime, name, nobody)
    try:
        before = fingerprint(spot.target)

        def assert_left_alone(after):
            # Not replaced, removed, chowned nor chmodded; its owner's process not signalled.
            assert os.path.lexists(spot.target), f"{after} removed {spot.target}"
            assert fingerprint(spot.target) == before, f"{after} changed {spot.target}"
            if spot.squatter is not None:
                assert spot.squatter.poll() is None, f"{after} killed another user's process"

        # stop, status and list do not act on the squat.
        stopped = runtime.cli("stop", name, "--timeout", "1")
        assert_left_alone("stop")
        assert stopped.returncode == 1, stopped
        assert "Traceback" not in stopped.stderr
        for args in (("status", name), ("status",), ("list",)):
            result = runtime.cli(*args)
            assert name not in result.stdout and "Traceback" not in result.stderr, (args, result)
        assert_left_alone("status/list")

        started = runtime.cli("start", name, "--threads", "1")
        assert_left_alone("start")
        assert started.returncode == 1, started
        assert "Traceback" not in started.stderr
        assert str(spot.target) in started.stderr and spot.problem in started.stderr, \
            started.stderr

        # The worker run directly (as `start --foreground` does) refuses on its own too.
        try:
            direct = subprocess.run([str(worker_path()), "--name", name, "--threads", "1"],
                                    capture_output=True, text=True, timeout=10, env=runtime.env,
                                    check=False)
        except subprocess.TimeoutExpired as still_running:  # run() has killed it
            pytest.fail(f"the worker took the squatted name and served: {still_running.stderr}")
        assert_left_alone("the worker")
        assert direct.returncode == 1, direct
        assert str(spot.target) in direct.stderr and spot.problem in direct.stderr, \
            direct.stderr

        # A client does not use it: refused (not a timeout), no pool behind it.
        t0 = time.monotonic()
        with pytest.raises((shmaccel.PoolNotFoundError, PermissionError)) as refused:
            shmaccel.Pool(name)
        assert time.monotonic() - t0 < 5.0, refused.value
        if isinstance(refused.value, PermissionError):
            # Said plainly, not a bare "[Errno 1] Operation not permitted".
            assert "another user" in str(refused.value) and repr(name) in str(refused.value), \
                refused.value
        assert_left_alone("Pool(name)")
    finally:
        if spot.squatter is not None:
            with contextlib.suppress(OSError):
                spot.squatter.stdin.close()
            try:
                seen = json.loads(spot.squatter.stdout.read().strip().splitlines()[-1])
            except (ValueError, IndexError):
                seen = None
            if spot.squatter.poll() is None:
                spot.squatter.kill()
            spot.squatter.wait(10)
            spot.squatter.stdout.close()
            spot.squatter.stderr.close()
    if spot.squatter is not None:
        # Connecting to see who is there is fine; handing anything to the squatter is not.
        assert seen is not None and seen["received"] == 0 and seen["fds"] == 0, seen
