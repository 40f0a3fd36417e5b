"""Atomic file writes: write ``.<stem>.tmp<pid><suffix>`` beside the target, then rename it.

A reader (or a resumed run) sees either the old file or the new one, never a partial one, and
after a power loss the new file's data and its name are on disk (file and folder synced). A
failed write (a full disk, a read-only folder) raises ``OSError`` naming the target file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.tmp\d+(?P<suffix>\.[^.]*)?$")  # .<stem>.tmp<pid><suffix>


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary file that this process writes ``path`` to (same suffix: same format)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def is_temp(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a writer's temporary file (of this or another, killed, process)."""
    return _TEMP_NAME.match(Path(path).name) is not None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; on success it is synced and renamed to ``path`` (and
    the folder synced), on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            write(f)
    except (OSError, RuntimeError) as exc:  # torch.save wraps a failed write in RuntimeError
        cause = _os_error_in(exc)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror, str(path)) from exc
    return Path(path)


def _os_error_in(exc: BaseException | None) -> OSError | None:
    """The first ``OSError`` in ``exc``'s chain of causes."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__
    return exc


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _write_synced(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, values: Any) -> Path:
    """Strict JSON (no NaN/inf), indented, one trailing newline."""
    return write_text(path, json.dumps(values, indent=1, allow_nan=False) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return _write_synced(path, lambda f: torch.save(obj, f))


def copy(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` becomes a copy of ``source``: a file of its own, written atomically."""
    with open(source, "rb") as f:
        return _write_synced(path, lambda out: out.write(f.read()))


def remove_stale_temps(folder: str | os.PathLike, stem: str | None = None) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder`` (not its
    subfolders; only those of ``stem`` when given); only safe while this process alone writes
    there (``folder_lock``)."""
    named = ((p, _TEMP_NAME.match(p.name)) for p in Path(folder).iterdir())
    stale = [p for p, m in named if m and p.is_file() and stem in (None, m["stem"])]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
