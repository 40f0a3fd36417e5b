"""Worker processes that end with their parent.

A pool's spawned workers outlive a parent killed with SIGKILL: they are re-parented to PID 1
and, ignoring stop signals between jobs, would run forever. Each worker started through
``start_pool_worker`` watches its parent and exits once it is gone; whatever it was writing
is a temporary file that the next run removes, so the same command resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any

PARENT_POLL_SECONDS = 0.5
ORPHAN_EXIT_CODE = 3  # as an app stopped by a signal: run the command again to continue


def exit_with_parent() -> None:
    """Start a daemon thread that ends this process as soon as its parent process is gone
    (the parent multiprocessing names: it may have died before this worker got here)."""
    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None else os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(ORPHAN_EXIT_CODE)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def start_pool_worker(initializer: Callable[..., Any], *args: Any) -> None:
    """A pool's ``initializer``: ``initializer(*args)`` in a worker that ends with its
    parent (pass ``initializer=start_pool_worker, initargs=(initializer, *args)``)."""
    exit_with_parent()
    initializer(*args)
