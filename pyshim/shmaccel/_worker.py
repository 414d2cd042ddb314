"""Where the shmaccel-worker program is: $SHMACCEL_WORKER, next to the package, or build/."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import Error

_HERE = Path(__file__).resolve().parent


def worker_path() -> str:
    """Return the path of the worker program, or raise shmaccel.Error saying how to get one."""
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
