"""What produced a run: git commit and dirty flag, library versions."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import gymnasium
import mujoco
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state() -> dict[str, str | bool]:
    """``{"commit": sha or "unknown", "dirty": bool}`` of the repository this code runs from."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or "unknown", "dirty": bool(status)}


def versions() -> dict[str, str]:
    """The versions that can move results: physics, learning and array libraries."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
    }
