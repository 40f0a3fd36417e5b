"""Where a training run starts: fresh, from its folder's ``last.pt``, from an earlier
checkpoint of its folder (``resume_from``: a rewind) or from another run's checkpoint
(``resume_from`` outside the folder: a fork into this folder, with changed training keys).

The checks keep what is written: a folder holding a run with another config, a folder whose
``step_<n>.pt`` outlive a deleted ``last.pt``, a folder whose ``metrics.jsonl`` outlives every
checkpoint, and a fork into a folder that holds another run
are refused with one line naming the command that works.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worldmodel import atomic
from worldmodel.command_line import override
from worldmodel.training.checkpoint import LAST_CHECKPOINT, CheckpointError, load_checkpoint
from worldmodel.training.run_logger import METRICS_FILE, read_metrics

STEP_CHECKPOINT = re.compile(r"step_(\d+)\.pt")


class RunConfigChanged(CheckpointError):
    """The run folder holds a run trained with another config (``changed``: dotted keys)."""

    def __init__(self, run_dir: Path, changed: list[str]) -> None:
        self.run_dir, self.changed = run_dir, changed
        super().__init__(
            f"{run_dir} holds a run with a different config ({', '.join(changed[:5])}); "
            "choose another folder with hydra.run.dir=<dir>"
        )


@dataclass(frozen=True)
class StartPoint:
    """The checkpoint a run starts from and how: ``continue`` (the folder's ``last.pt``),
    ``rewind`` (an earlier checkpoint of the folder) or ``fork`` (another run's checkpoint).
    ``forked_from`` (``checkpoint``, ``step``) is set for a fork and the run it became."""

    payload: dict[str, Any]
    path: Path
    kind: str
    forked_from: dict[str, Any] | None = None

    @property
    def step(self) -> int:
        return int(self.payload["step"])


@dataclass(frozen=True)
class ResumeRules:
    """What the app lets a run change: ``resumable`` keys when it continues in its folder,
    ``forkable`` ones on top when it forks another run's checkpoint (a key covers its
    sub-keys); ``comparable`` maps a config to the form two configs are compared in (paths
    that move with a folder made relative, say). The train app's are ``experiments/runs.py``'s."""

    resumable: tuple[str, ...]
    forkable: tuple[str, ...]
    comparable: Callable[[dict[str, Any]], dict[str, Any]] = lambda config: config

    def differences(self, old: dict, new: dict, allowed: Sequence[str]) -> list[str]:
        """``config_differences`` of the two configs in their comparable form."""
        return config_differences(self.comparable(old), self.comparable(new), allowed)


def config_differences(old: Any, new: Any, allowed: Sequence[str], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs (``allowed`` skipped)."""
    if prefix.rstrip(".") in allowed:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [
            diff
            for k in keys
            for diff in config_differences(old.get(k), new.get(k), allowed, f"{prefix}{k}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The folder's ``step_<n>.pt``, newest first."""
    found = [
        (int(m.group(1)), path)
        for path in run_dir.glob("step_*.pt")
        if (m := STEP_CHECKPOINT.fullmatch(path.name))
    ]
    return [path for _, path in sorted(found, reverse=True)]


def resume_from_hint(path: Path) -> str:
    return override("resume_from", path)


def finite_weights(payload: dict[str, Any]) -> bool:
    weights = [t for t in payload["model"].values() if t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in weights)


def good_checkpoint(
    run_dir: Path, failed_step: int, forked_from: Path | None = None
) -> tuple[Path, int] | None:
    """The newest checkpoint of ``run_dir`` to go back to after a non-finite step
    ``failed_step``: finite weights, and followed by at least one finite step (the weights of
    step ``failed_step - 1`` are the ones that failed); for a fork with none of its own yet,
    the checkpoint it was forked from. None if there is no such file."""
    own = kept_checkpoints(run_dir) or [run_dir / LAST_CHECKPOINT]  # files that stay
    for path in [*own, forked_from] if forked_from else own:
        try:
            payload = load_checkpoint(path)
        except CheckpointError:
            continue
        if int(payload["step"]) < failed_step - 1 and finite_weights(payload):
            return path, int(payload["step"])
    return None


def start_point(
    run_dir: Path, resolved: dict[str, Any], resume: bool, resume_from: str, rules: ResumeRules
) -> StartPoint | None:
    """The checkpoint this run continues from, or None for a fresh start; ``CheckpointError``
    (one line) where continuing or starting afresh would lose or mix up what is written, or
    where the config changed beyond what ``rules`` allow."""
    last = run_dir / LAST_CHECKPOINT
    if resume_from:
        source = Path(resume_from).resolve()
        if source.parent == run_dir.resolve():
            kind = "continue" if source.name == LAST_CHECKPOINT else "rewind"
            return _checked(run_dir, _load(source), source, resolved, kind, rules)
        if last.is_file():
            own = _load(last)
            if own.get("forked_from", {}).get("checkpoint") != str(source):
                raise CheckpointError(
                    f"{run_dir} already holds a run (last.pt) that was not forked from {source}; "
                    "fork into another folder with hydra.run.dir=<dir>"
                )
            return _checked(run_dir, own, last, resolved, "continue", rules)  # a stopped fork
        return _fork(run_dir, source, resolved, rules)
    if last.is_file():
        if not resume:
            raise CheckpointError(
                f"{run_dir} already holds a run (last.pt); pass resume=true to continue it or "
                "choose another folder with hydra.run.dir=<dir>"
            )
        payload = _load(last, fallback=run_dir)
        return _checked(run_dir, payload, last, resolved, "continue", rules)
    kept = kept_checkpoints(run_dir)
    if kept:
        raise CheckpointError(
            f"{run_dir} holds checkpoints ({kept[0].name}, ...) but no {LAST_CHECKPOINT}; continue "
            f"from the newest with {resume_from_hint(kept[0])}, or choose another folder with "
            "hydra.run.dir=<dir>"
        )
    logged, first_checkpoint = _last_logged_step(run_dir), resolved["train"]["checkpoint_every"]
    if first_checkpoint and logged >= first_checkpoint:  # its checkpoints were deleted
        raise CheckpointError(
            f"{run_dir} holds the history of a run ({METRICS_FILE} to step {logged}) but no "
            f"checkpoint to continue it from; to train it again from step 0 delete "
            f"{run_dir / METRICS_FILE}, or choose another folder with hydra.run.dir=<dir>"
        )
    return None  # a run killed before its first checkpoint starts again


def _last_logged_step(run_dir: Path) -> int:
    """The last step ``run_dir``'s metrics.jsonl logged, 0 if it has none."""
    path = run_dir / METRICS_FILE
    return max((int(row["step"]) for row in read_metrics(path)), default=0) if path.is_file() else 0


def _load(path: Path, fallback: Path | None = None) -> dict[str, Any]:
    """``load_checkpoint``; for an unreadable ``last.pt`` the error names the newest readable
    kept checkpoint of ``fallback`` (its folder) to continue from."""
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        if fallback is None or not path.is_file():
            raise
        for kept in kept_checkpoints(fallback):
            try:
                load_checkpoint(kept)
            except CheckpointError:
                continue
            raise CheckpointError(f"{exc}; or continue from {resume_from_hint(kept)}") from None
        raise


def _checked(
    run_dir: Path, payload: dict, path: Path, resolved: dict, kind: str, rules: ResumeRules
) -> StartPoint:
    changed = rules.differences(payload["config"], resolved, rules.resumable)
    if changed:
        raise RunConfigChanged(run_dir, changed)
    return StartPoint(payload, path, kind, payload.get("forked_from"))


def _fork(run_dir: Path, source: Path, resolved: dict, rules: ResumeRules) -> StartPoint:
    payload = _load(source)
    changed = rules.differences(payload["config"], resolved, rules.resumable + rules.forkable)
    if changed:
        raise CheckpointError(
            f"resume_from={source} comes from a run with another model or data "
            f"({', '.join(changed[:5])}); a fork may change train.*, seed, eval and logger keys "
            "only: start a new run instead"
        )
    if not finite_weights(payload):
        raise CheckpointError(f"{source}: its weights are not finite; fork an earlier step_<n>.pt")
    origin = {"checkpoint": str(source), "step": int(payload["step"])}
    return StartPoint(payload, source, "fork", origin)


def start_history(start: StartPoint, run_dir: Path) -> str:
    """Make ``run_dir/metrics.jsonl`` the history up to the start (a fork copies its source's
    rows; a rewind's later rows are dropped by ``RunLogger``); returns what was done."""
    if start.kind == "continue":
        return f"resuming {run_dir} from step {start.step}"
    if start.kind == "rewind":
        rows = read_metrics(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).is_file() else []
        dropped = sum(row["step"] > start.step for row in rows)
        return (
            f"resuming {run_dir} from {start.path.name} (step {start.step}): the {dropped} "
            f"metrics rows logged after step {start.step} are dropped"
        )
    source = start.path.parent / METRICS_FILE  # a checkpoint alone forks with no history
    rows = read_metrics(source) if source.is_file() else []
    kept = [row for row in rows if row["step"] <= start.step]
    atomic.write_text(run_dir / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in kept))
    return (
        f"forking {start.path} (step {start.step}) into {run_dir}: its {len(kept)} metrics rows "
        f"up to step {start.step} copied"
    )


def fork_record(start: StartPoint | None) -> dict[str, Any]:
    """What every checkpoint of a forked run says about its origin (none for other runs)."""
    if start is None or start.forked_from is None:
        return {}
    return {"forked_from": start.forked_from}
