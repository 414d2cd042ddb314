"""The shmaccel exception classes (defined in the C extension's module state)."""

from ._shmaccel import Error, PoolClosedError, PoolNotFoundError, WorkerDiedError

__all__ = ["Error", "PoolClosedError", "PoolNotFoundError", "WorkerDiedError"]
