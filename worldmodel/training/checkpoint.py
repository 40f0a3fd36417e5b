"""Atomic training checkpoints, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of state dicts, plain values and tensors only (no pickled objects):
``model``, ``optimizer``, ``scheduler``, ``rng``, ``step``, ``progress`` (samples, FLOPs,
wall-clock seconds so far), ``config`` (the resolved run config), ``build`` (what rebuilds the
model and tokenizer without the config tree), ``git`` (commit, dirty) and ``schema_version``.
It is written atomically (``worldmodel.atomic``), so a kill at any moment leaves either the
previous or the new checkpoint, never a partial one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel import atomic
from worldmodel.training.renamed_keys import upgrade_checkpoint

CHECKPOINT_SCHEMA_VERSION = 2  # 2: relative, quantile-normalised actions (ActionCodec)
LAST_CHECKPOINT = "last.pt"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the schema version) to ``path`` atomically."""
    return atomic.torch_save({**payload, "schema_version": CHECKPOINT_SCHEMA_VERSION}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict, on CPU, under today's key names (``renamed_keys``);
    ``CheckpointError`` for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint; train one with python -m experiments.train"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({load_failure(exc)}); use another checkpoint "
            "or retrain"
        ) from None
    version = payload.get("schema_version") if isinstance(payload, dict) else None
    if version != CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint schema {version}, this code reads {CHECKPOINT_SCHEMA_VERSION}; "
            "retrain with this version"
        )
    return upgrade_checkpoint(payload)


def load_failure(exc: Exception) -> str:
    """The cause of a failed weights-only load in one line: for a refused pickle, the global
    it refused (torch's advice to load unsafely is left out), else the first line."""
    text = str(exc).strip()
    if text.startswith("Weights only load failed"):
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        cause = paragraphs[1] if len(paragraphs) > 1 else "a pickled object"
        return f"refused to unpickle: {cause.splitlines()[0]}"
    return text.splitlines()[0] if text else type(exc).__name__


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, numpy, python) as weights_only-loadable values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
