"""shmaccel-pool: start, stop, inspect and list named worker pools from the shell.

    shmaccel-pool start NAME [--threads N] [--max-clients M] [--log FILE] [--foreground]
    shmaccel-pool stop NAME [--timeout S]
    shmaccel-pool status [NAME] [--json] [--watch [SECONDS]] [--count N]
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import _shmaccel
from ._errors import Error, PoolNotFoundError
from ._worker import worker_path

READY_TIMEOUT_S = 10.0


class UsageError(Exception):
    """Bad usage: exit status 2."""


class Refused(Exception):
    """A runtime directory or socket path that is not ours to use: exit status 1."""


def socket_path(name: str) -> Path:
    """The socket path of pool `name`. Raises UsageError for an invalid name, Refused (or
    PermissionError) for a runtime directory that is not ours.

    >>> socket_path("mypool")            # XDG_RUNTIME_DIR=/run/user/1000
    PosixPath('/run/user/1000/shmaccel/mypool.sock')
    """
    try:
        return Path(_shmaccel.pool_socket_path(name))
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    except PermissionError:
        check_runtime_dir(runtime_dir())  # says why the directory was refused
        raise


def runtime_dir() -> Path:
    """The per-user directory of pool sockets and logs (it may not exist yet); raises nothing.

    >>> runtime_dir()                    # XDG_RUNTIME_DIR unset, uid 1000
    PosixPath('/tmp/shmaccel-1000')
    """
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
    """Whether process `pid` exists and is not a zombie; raises nothing.

    >>> pid_running(os.getpid())
    True
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def cmd_start(args: argparse.Namespace) -> int:
    """`start NAME`: starts the pool and prints its pid; returns the exit status (1: the name
    is taken or the pool did not start). Raises UsageError, Refused, shmaccel.Error (no worker
    program), which main() turns into exit statuses. Example: main(["start", "mypool"])."""
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
    """`stop NAME`: SIGTERM, then SIGKILL past --timeout; returns once the worker has exited
    (0), or 1 when no such pool runs (a stale socket of ours is removed). Raises UsageError
    or Refused like cmd_start. Example: main(["stop", "mypool", "--timeout", "30"])."""
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


def pool_status(name: str, pool: Any = None) -> dict[str, Any]:
    """The figures of pool `name` (Pool.stats()), without the session asking for them; through
    `pool` when given (an open Pool of that name, kept by --watch between refreshes), else
    through a session opened and closed for this one look."""
    from ._pool import Pool

    if pool is None:
        with Pool(name) as own:
            stats = own.stats()
    else:
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
    """H:MM:SS of a duration in seconds; raises nothing.

    >>> format_uptime(3725.9)
    '1:02:05'
    """
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"


def status_names(args: argparse.Namespace) -> list[str]:
    """The pools `status` shows: [args.name] once the name is checked (UsageError, Refused),
    else every live pool. Example: status_names(parser().parse_args(["status"]))."""
    if args.name is not None:
        check_socket_path(socket_path(args.name))  # validates the name, refuses a squat
        return [args.name]
    return live_pools()


def print_status(rows: list[dict[str, Any]], one: bool,
                 rates: dict[str, tuple[float, float]] | None) -> None:
    """The status table; with `rates` (requests/s and elements/s by pool name, from --watch)
    two more columns."""
    header: tuple[str, ...] = ("NAME", "PID", "THREADS", "CLIENTS", "REQUESTS", "ELEMENTS",
                               "ERRORS", "BUSY%", "UPTIME")
    if rates is not None:
        header += ("REQ/S", "ELEM/S")
    table = [header]
    for r in rows:
        line: tuple[str, ...] = (
            r["name"], str(r["worker_pid"]), str(r["threads"]), str(r["clients"]),
            str(r["requests"]), str(r["elements"]), str(r["errors"]), f"{r['busy_pct']:.1f}",
            format_uptime(r["uptime_s"]))
        if rates is not None:
            per_s = rates.get(r["name"])
            line += (f"{per_s[0]:.0f}", f"{per_s[1]:.3g}") if per_s else ("-", "-")
        table.append(line)
    print_table(table)
    if one and rows and rows[0]["sessions"]:
        print()
        sessions = [("CLIENT PID", "REQUESTS", "ELEMENTS", "ERRORS", "IN FLIGHT")] + [
            (str(s["pid"]), str(s["requests"]), str(s["elements"]), str(s["errors"]),
             str(s["in_flight"]))
            for s in rows[0]["sessions"]
        ]
        print_table(sessions)


def cmd_status(args: argparse.Namespace) -> int:
    """`status [NAME] [--json] [--watch]`: prints the figures; returns the exit status (1: no
    pool NAME). Raises UsageError (--count without --watch), Refused, shmaccel.Error (e.g. a
    pool with no free seat). Example: main(["status", "mypool", "--json"])."""
    if args.watch is not None:
        return watch_status(args)
    if args.count is not None:
        raise UsageError("--count goes with --watch")
    rows = []
    for name in status_names(args):
        try:
            rows.append(pool_status(name))
        except PoolNotFoundError:
            if args.name is not None:
                print(f"shmaccel-pool: no pool named {name!r} is running", file=sys.stderr)
                return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print_status(rows, args.name is not None, None)
    return 0


def watch_status(args: argparse.Namespace) -> int:
    """status --watch: the table again every `args.watch` seconds, with the request and
    element rates since the last refresh, until Ctrl-C (or --count refreshes). One session per
    pool is kept open between refreshes; pools that start or stop meanwhile come and go (a
    named pool that stops is shown as gone, and watched again when it is back). On a terminal
    each refresh redraws the screen; otherwise (a pipe, a log) tables follow each other,
    separated by a time stamp line. With --json, one JSON array per line."""
    from ._pool import Pool

    pools: dict[str, Any] = {}
    last: dict[str, tuple[float, int, int]] = {}
    redraw = sys.stdout.isatty() and not args.json
    shown = 0
    try:
        while args.count is None or shown < args.count:
            rows, rates = [], {}
            for name in status_names(args):
                try:
                    if name not in pools:
                        pools[name] = Pool(name)
                    row = pool_status(name, pools[name])
                except Error:  # not running, or died since the last look: try afresh next time
                    stale = pools.pop(name, None)
                    if stale is not None:
                        stale.close()
                    last.pop(name, None)
                    continue
                now = time.monotonic()
                if name in last:
                    t0, req0, elem0 = last[name]
                    dt = max(now - t0, 1e-9)
                    rates[name] = ((row["requests"] - req0) / dt, (row["elements"] - elem0) / dt)
                last[name] = (now, row["requests"], row["elements"])
                rows.append(row)
            for name in set(pools) - {row["name"] for row in rows}:
                pools.pop(name).close()
            if args.json:
                print(json.dumps(rows), flush=True)
            else:
                print("\033[H\033[J" if redraw else "", end="")
                print(f"shmaccel-pool status, every {args.watch:g} s "
                      f"({time.strftime('%H:%M:%S')}; Ctrl-C to stop)")
                if rows:
                    print_status(rows, args.name is not None, rates)
                elif args.name is not None:
                    print(f"no pool named {args.name!r} is running (waiting for it)")
                else:
                    print("no live pools")
                print(flush=True)
            shown += 1
            if args.count is None or shown < args.count:
                time.sleep(args.watch)
    except KeyboardInterrupt:
        pass
    finally:
        for pool in pools.values():
            pool.close()
    return 0


def print_table(table: Sequence[Sequence[str]]) -> None:
    """Prints rows of strings as left-aligned columns; raises nothing.

    >>> print_table([("NAME", "PID"), ("mypool", "18317")])
    NAME    PID
    mypool  18317
    """
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    """`list`: prints the live pools' names, one per line; returns 0. Raises Refused for a
    runtime directory that is not ours. Example: main(["list"])."""
    for name in live_pools():
        print(name)
    return 0


def positive_int(text: str) -> int:
    """argparse type: an int >= 1, else ValueError / ArgumentTypeError (exit status 2).

    >>> positive_int("4")
    4
    """
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def up_to(limit: int) -> Callable[[str], int]:
    """argparse type: an int from 1 to `limit` (a worker limit: --threads, --max-clients),
    else ArgumentTypeError (exit status 2, before any worker starts).

    >>> up_to(1024)("4")
    4
    """

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}")
        return value

    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0, else ArgumentTypeError (exit status 2).

    >>> positive_float("0.5")
    0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def parser() -> argparse.ArgumentParser:
    """The argument parser of shmaccel-pool and its four subcommands; raises nothing.

    >>> parser().parse_args(["start", "mypool", "--threads", "4"]).threads
    4
    """
    p = argparse.ArgumentParser(prog="shmaccel-pool", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a named pool in the background")
    start.add_argument("name")
    start.add_argument("--threads", type=up_to(_shmaccel.MAX_THREADS),
                       help="pool threads (default: CPUs)")
    start.add_argument("--max-clients", type=up_to(_shmaccel.MAX_CLIENTS),
                       help="client sessions (default 64)")
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
    status.add_argument("--watch", type=positive_float, nargs="?", const=1.0, metavar="SECONDS",
                        help="refresh every SECONDS (default 1) with rates, until Ctrl-C")
    status.add_argument("--count", type=positive_int, metavar="N",
                        help="with --watch: stop after N refreshes")
    status.set_defaults(func=cmd_status)
    lst = sub.add_parser("list", help="names of the live pools")
    lst.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    """The shmaccel-pool command: runs the subcommand in argv (default: sys.argv[1:]) and
    returns the exit status: 0 success, 1 failure, 2 bad usage (argparse itself exits with 2
    on unknown options). Raises nothing else of its own.

    >>> main(["list"])
    mypool
    0
    """
    args = parser().parse_args(argv)
    try:
        command: Callable[[argparse.Namespace], int] = args.func
        return command(args)
    except UsageError as e:
        print(f"shmaccel-pool: {e}", file=sys.stderr)
        return 2
    except (Refused, Error) as e:
        print(f"shmaccel-pool: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
