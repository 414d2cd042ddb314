"""`python -m shmaccel`: what is installed and what runs. Prints the version, where the package
and the worker program are, and the live named pools of this user with their figures.
Exit status 0, or 1 when no worker program can be found (the message says how to get one)."""

from __future__ import annotations

import sys

from . import __file__ as package_file
from . import __version__, cpu_count
from ._cli import Refused, format_uptime, live_pools, pool_status
from ._errors import Error
from ._worker import worker_path


def main() -> int:
    """Prints what is installed and what runs (see the module docstring) and returns the exit
    status: 0, or 1 when no worker program is found or the runtime directory is refused.
    Raises nothing of its own. Example: `python -m shmaccel`, or sys.exit(main())."""
    print(f"shmaccel {__version__} (Python {sys.version.split()[0]})")
    print(f"package: {package_file.rsplit('/', 1)[0]}")
    status = 0
    try:
        print(f"worker:  {worker_path()}")
    except Error as e:
        print(f"worker:  not found: {e}")
        status = 1
    print(f"CPUs:    {cpu_count()} (a private pool's default thread count)")
    try:
        names = live_pools()
    except (Error, Refused) as e:
        # A runtime directory that is not ours: say so, as shmaccel-pool does.
        print(f"pools:   cannot look: {e}")
        return 1
    if not names:
        print("pools:   no named pool is running (start one: shmaccel-pool start NAME)")
    else:
        print(f"pools:   {len(names)} running")
    for name in names:
        try:
            s = pool_status(name)
        except Error as e:  # stopped between the listing and the look
            print(f"  {name}: {e}")
            continue
        print(f"  {name}: worker pid {s['worker_pid']}, {s['threads']} threads, "
              f"{s['clients']} clients, {s['requests']} requests, "
              f"up {format_uptime(s['uptime_s'])}")
    return status


if __name__ == "__main__":
    sys.exit(main())
