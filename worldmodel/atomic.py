"""Atomic file writes: write ``.<stem>.tmp<pid><suffix>`` beside the target, then rename it.

A reader (or a resumed run) sees either the old file or the new one, never a partial one. A
failed write (a full disk, a read-only folder) raises ``OSError`` naming the target file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

TMP_MARK = ".tmp"  # temporary files are .<stem>.tmp<pid><suffix>


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; renamed to ``path`` on success, removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")  # keeps the format
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_synced(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
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


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder`` (not its
    subfolders); only safe while this process alone writes there (``folder_lock``)."""
    stale = [p for p in Path(folder).glob(f".*{TMP_MARK}[0-9]*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
