"""Where the shmaccel-worker program is: $SHMACCEL_WORKER, next to the package, or build/."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import Error

_HERE = Path(__file__).resolve().parent


def worker_path() -> str:
    """Return the path of the shmaccel-worker program that private pools start.

    Looked for in order: $SHMACCEL_WORKER when set and not empty; shmaccel-worker inside
    the installed package (`pip install .` puts it there); build/shmaccel-worker in a source
    checkout (after `make`). Named pools started by shmaccel-pool use the same program.

    Raises shmaccel.Error when $SHMACCEL_WORKER is not an executable file, or when no
    program is found (the message says how to get one).

    >>> shmaccel.worker_path()
    '/home/me/shmaccel/build/shmaccel-worker'
    """
    env = os.environ.get("SHMACCEL_WORKER")
    if env:
        if not os.access(env, os.X_OK):
            raise Error(f"SHMACCEL_WORKER={env!r} is not an executable file")
        return env
    for candidate in (_HERE / "shmaccel-worker", _HERE.parent.parent / "build" / "shmaccel-worker"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise Error(
        "shmaccel-worker not found: run `make` in the source tree, `pip install .`, "
        "or set SHMACCEL_WORKER to the program's path"
    )
