"""One process at a time per run folder or dataset: an exclusive ``flock`` on a lock file.

The operating system releases a ``flock`` when its process ends, however it ends, so a holder
killed with SIGKILL leaves no stale lock: the next process takes the lock over. The lock file
keeps the holder's PID, which a refused process names in its one-line error.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_LOCK = ".lock"  # inside a run folder


class FolderInUse(Exception):
    """Another live process holds the lock; the message names it and what to do."""


@contextmanager
def exclusive(lock_path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the lock at ``lock_path`` for the block (its folder is created); ``what`` names
    the guarded thing in the error of a second process (e.g. "run folder outputs/train/x")."""
    path = Path(lock_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise FolderInUse(
                f"{what} is in use by process {holder} (lock {path}); wait for it to finish or "
                f"stop it (kill {holder}), then run this again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the flock; the file stays (a waiting process may hold it open)
