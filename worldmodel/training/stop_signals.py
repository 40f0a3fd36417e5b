"""Signals that stop training cleanly: SIGTERM, SIGINT and a scheduler's preemption signal.

Inside :func:`stop_requests` the handlers only record a signal, so the step in progress
finishes and gets its checkpoint. A preemption signal whose handler a scheduler installed
(submitit's SIGUSR2: checkpoint and requeue) is handed back to that handler after the
checkpoint, with :meth:`Interrupted.hand_over`, so the job is requeued and resumes from it.
Outside that block, inside :func:`stop_at_once` (an app's setup: datasets, caches, the model),
a stop signal raises :class:`Interrupted` where the program is: every file is written whole
(temporary file, then rename), so what is written stays complete and the command continues.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_INTERRUPTED = 3  # an app stopped by a signal, its files whole: run it again to continue
PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's name for its preemption signal
DEFAULT_PREEMPT_SIGNAL = "USR2"


def preemption_signal() -> signal.Signals | None:
    """The scheduler's preemption signal if a Python handler owns it (submitit installs one
    in every job it runs), else None: an unowned SIGUSR2 keeps its default meaning."""
    name = os.environ.get(PREEMPT_SIGNAL_ENV, DEFAULT_PREEMPT_SIGNAL)
    number = getattr(signal, f"SIG{name}", None)
    return number if number is not None and callable(signal.getsignal(number)) else None


@dataclass
class StopRequests:
    """The signals received inside :func:`stop_requests` and the handlers they replaced."""

    received: list[signal.Signals] = field(default_factory=list)
    previous: dict[signal.Signals, Any] = field(default_factory=dict)

    def owner(self, number: signal.Signals) -> Any:
        """The handler that gets ``number`` back after the checkpoint, or None: a scheduler's
        preemption handler does; SIGTERM and SIGINT end the run here."""
        return None if number in STOP_SIGNALS else self.previous.get(number)


class Interrupted(Exception):
    """A stop signal ended training after a step; its checkpoint was written."""

    def __init__(self, message: str, number: signal.Signals, handed_over: bool) -> None:
        super().__init__(message)
        self.number = number
        self.handed_over = handed_over

    def hand_over(self) -> None:
        """Deliver the signal again to the handler it was taken from (called once the
        previous handlers are back): submitit requeues the job and exits."""
        if self.handed_over:
            signal.raise_signal(self.number)


@contextlib.contextmanager
def _handling(numbers: list[signal.Signals], handler: Any) -> Iterator[dict[signal.Signals, Any]]:
    """``handler`` for ``numbers`` inside the block, the previous handlers (yielded) after it.
    Outside the main thread, where Python cannot catch signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {number: signal.getsignal(number) for number in numbers}
    for number in numbers:
        signal.signal(number, handler)
    try:
        yield previous
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """Record stop signals inside the block instead of acting on them; the previous handlers
    are back after it. Outside the main thread nothing is caught."""
    requests = StopRequests()
    numbers = [*STOP_SIGNALS, *filter(None, [preemption_signal()])]
    record = lambda n, _frame: requests.received.append(signal.Signals(n))  # noqa: E731
    with _handling(numbers, record) as requests.previous:
        yield requests


@contextlib.contextmanager
def stop_at_once() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Interrupted`` at once inside the block (``stop_requests``
    nested in it takes them over); nothing is caught outside the main thread."""

    def raise_interrupted(number: int, _frame: Any) -> None:
        name = signal.Signals(number).name
        raise Interrupted(
            f"stopped by {name}: every file written so far is complete; run the same command "
            "again to continue",
            signal.Signals(number),
            handed_over=False,
        )

    with _handling(list(STOP_SIGNALS), raise_interrupted):
        yield


def stop_while_starting() -> None:
    """Until an app's own handlers take over (``stop_at_once``), SIGTERM or SIGINT ends the
    process with one line and ``EXIT_INTERRUPTED``: without this, a signal during the first
    seconds of imports exits 143 in silence (SIGTERM) or with a traceback (SIGINT)."""

    def stop(number: int, _frame: Any) -> None:
        name = signal.Signals(number).name
        message = f"stopped: stopped by {name} while starting; run the same command again"
        print(message, file=sys.stderr, flush=True)
        # at once: an exception raised here, inside an import, can surface as another error
        os._exit(EXIT_INTERRUPTED)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
