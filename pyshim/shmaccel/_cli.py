"""shmaccel-pool: start, stop, inspect and list named worker pools from the shell.

    shmaccel-pool start NAME [--threads N] [--max-clients M] [--log FILE] [--foreground]
    shmaccel-pool stop NAME [--timeout S]
    shmaccel-pool status [NAME] [--json]
    shmaccel-pool list

Exit status: 0 success, 1 failure (e.g. the name is taken, no such pool), 2 bad usage
(including an invalid pool name, refused before any file is touched).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

from . import _shmaccel
from ._errors import Error, PoolNotFoundError
from ._worker import worker_path

READY_TIMEOUT_S = 10.0


class UsageError(Exception):
    """Bad usage: exit status 2."""


class Refused(Exception):
    """A runtime directory or socket path that is not ours to use: exit status 1."""


def socket_path(name: str) -> Path:
    try:
        return Path(_shmaccel.pool_socket_path(name))
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    except PermissionError:
        check_runtime_dir(runtime_dir())  # says why the directory was refused
        raise


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "shmaccel" if base and base.startswith("/") else Path(
        f"/tmp/shmaccel-{os.getuid()}")


def path_problem(path: Path, want_dir: bool) -> str | None:
    """Why path may not be our runtime directory (want_dir) or be replaced by our socket, as
    the end of a sentence "it ...", or None when it may (or does not exist). The same checks
    as the worker's: whoever controls either could swap our socket for theirs."""
    kind = "directory" if want_dir else "socket"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be examined ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"is a symbolic link, not a {kind}"
    if not (stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISSOCK(st.st_mode)):
        return f"is not a {kind}"
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by uid {os.getuid()} (you)"
    if want_dir and st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}: open to other users (it must be 0700)"
    return None


def check_runtime_dir(directory: Path) -> None:
    """Raises Refused if directory exists but is not a private directory of ours."""
    problem = path_problem(directory, want_dir=True)
    if problem is not None:
        raise Refused(f"refusing to use the runtime directory {directory}: it {problem}")


def claim_runtime_dir(directory: Path) -> None:
    """Creates directory 0700 (whatever the umask) unless it exists; Refused if it is not ours."""
    try:
        os.mkdir(directory, 0o700)  # the umask can only remove bits
    except FileExistsError:
        pass
    except OSError as e:
        raise Refused(f"cannot create the runtime directory {directory}: {e.strerror}") from None
    check_runtime_dir(directory)


def check_socket_path(path: Path) -> None:
    """Raises Refused if something other than a socket of ours sits at path."""
    problem = path_problem(path, want_dir=False)
    if problem is not None:
        raise Refused(f"refusing to replace {path}: it {problem}")


def pool_pid(path: Path) -> int | None:
    """The pid of the live pool of ours listening on path (from SO_PEERCRED), or None. A
    listener of another user is no pool of ours, and never gets signalled by stop."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(path))
        except OSError:
            return None
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        return pid if uid == os.geteuid() else None


def pid_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def cmd_start(args: argparse.Namespace) -> int:
    path = socket_path(args.name)
    # Before any file is written there: the default log lives in this directory too.
    claim_runtime_dir(path.parent)
    check_socket_path(path)
    pid = pool_pid(path)
    if pid is not None:
        print(f"shmaccel-pool: a pool named {args.name!r} is already running (pid {pid})",
              file=sys.stderr)
        return 1
    cmd = [worker_path(), "--name", args.name]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.max_clients is not None:
        cmd += ["--max-clients", str(args.max_clients)]
    if args.foreground:
        os.execv(cmd[0], cmd)  # the worker itself handles SIGINT and SIGTERM
    log_path = Path(args.log) if args.log else path.parent / f"{args.name}.log"
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    # 0600 whatever the umask (which can only remove bits): the log shows the pool's activity.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with open(log_fd, "ab", buffering=0) as log:
        proc = subprocess.Popen(
            [*cmd, "--ready-fd", str(write_end)],
            pass_fds=(write_end,),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # setsid: no terminal, survives the shell
        )
    os.close(write_end)
    try:
        ready = select.select([read_end], [], [], READY_TIMEOUT_S)[0]
        line = os.read(read_end, 64).decode().strip() if ready else ""
    finally:
        os.close(read_end)
    if not line:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        print(f"shmaccel-pool: pool {args.name!r} did not start: {' / '.join(tail)} "
              f"(log: {log_path})", file=sys.stderr)
        return 1
    print(line)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    path = socket_path(args.name)
    pid = pool_pid(path)
    if pid is None:
        print(f"shmaccel-pool: no pool named {args.name!r} is running", file=sys.stderr)
        problem = path_problem(path, want_dir=False)
        if problem is not None:
            print(f"shmaccel-pool: leaving {path} alone: it {problem}", file=sys.stderr)
        elif path.exists():
            path.unlink()  # left by a pool of ours that was killed
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_running(pid):
        # Past the timeout: calls still in flight fail with WorkerDiedError, none hangs.
        os.kill(pid, signal.SIGKILL)
        while pid_running(pid):
            time.sleep(0.02)
        if path.exists():
            path.unlink()
        print(f"shmaccel-pool: pool {args.name!r} (pid {pid}) killed after {args.timeout} s",
              file=sys.stderr)
    return 0


def live_pools() -> list[str]:
    """Names of the live pools in the runtime directory; stale sockets, and sockets of other
    users, are skipped."""
    directory = runtime_dir()
    check_runtime_dir(directory)
    if not directory.is_dir():
        return []
    names = []
    for entry in sorted(directory.glob("*.sock")):
        if pool_pid(entry) is not None:
            names.append(entry.name[: -len(".sock")])
    return names


def pool_status(name: str) -> dict:
    from ._pool import Pool

    with Pool(name) as pool:
        stats = pool.stats()
    stats["name"] = name
    # Not counting this status query itself.
    stats["clients"] = max(0, stats["clients"] - 1)
    stats["sessions"] = [s for s in stats["sessions"] if s["seat"] != stats["seat"]]
    for key in ("seat", "client_requests", "client_elements", "client_errors",
                "client_in_flight"):
        stats.pop(key, None)
    return stats


def format_uptime(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"


def cmd_status(args: argparse.Namespace) -> int:
    if args.name is not None:
        check_socket_path(socket_path(args.name))  # validates the name, refuses a squat
        names = [args.name]
    else:
        names = live_pools()
    rows = []
    for name in names:
        try:
            rows.append(pool_status(name))
        except PoolNotFoundError:
            if args.name is not None:
                print(f"shmaccel-pool: no pool named {name!r} is running", file=sys.stderr)
                return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("NAME", "PID", "THREADS", "CLIENTS", "REQUESTS", "ELEMENTS", "ERRORS", "BUSY%",
              "UPTIME")
    table = [header] + [
        (r["name"], str(r["worker_pid"]), str(r["threads"]), str(r["clients"]),
         str(r["requests"]), str(r["elements"]), str(r["errors"]), f"{r['busy_pct']:.1f}",
         format_uptime(r["uptime_s"]))
        for r in rows
    ]
    print_table(table)
    if args.name is not None and rows and rows[0]["sessions"]:
        print()
        sessions = [("CLIENT PID", "REQUESTS", "ELEMENTS", "ERRORS", "IN FLIGHT")] + [
            (str(s["pid"]), str(s["requests"]), str(s["elements"]), str(s["errors"]),
             str(s["in_flight"]))
            for s in rows[0]["sessions"]
        ]
        print_table(sessions)
    return 0


def print_table(table: list) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    for name in live_pools():
        print(name)
    return 0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shmaccel-pool", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a named pool in the background")
    start.add_argument("name")
    start.add_argument("--threads", type=positive_int, help="pool threads (default: CPUs)")
    start.add_argument("--max-clients", type=positive_int, help="client sessions (default 64)")
    start.add_argument("--log", help="log file (default: <runtime dir>/<name>.log)")
    start.add_argument("--foreground", action="store_true", help="run in this terminal")
    start.set_defaults(func=cmd_start)
    stop = sub.add_parser("stop", help="stop a pool: finish the calls in flight, then exit")
    stop.add_argument("name")
    stop.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    stop.set_defaults(func=cmd_stop)
    status = sub.add_parser("status", help="figures of one pool or of every live pool")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    lst = sub.add_parser("list", help="names of the live pools")
    lst.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"shmaccel-pool: {e}", file=sys.stderr)
        return 2
    except (Refused, Error) as e:
        print(f"shmaccel-pool: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
