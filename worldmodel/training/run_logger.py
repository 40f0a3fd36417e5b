"""One logging facade: ``metrics.jsonl`` in the run folder (always) and wandb (by mode).

Every ``log(metrics, step)`` appends one JSON line ``{"step": step, key: value, ...}`` and
flushes it, so reports never need a wandb server. wandb runs ``offline`` by default
(``online`` and ``disabled`` by config; any ``wandb.init`` argument passes through ``init``),
its run id is derived from the run folder (a resumed run continues the same wandb run; offline,
the resumed run replays ``metrics.jsonl`` up to its checkpoint and replaces the earlier offline
runs, so the folder holds one offline run with the whole history), and the step axes are
declared with ``define_metric``: every ``train/``, ``val/``, ``eval/`` and ``perf/`` key can be
plotted against ``train/step``, ``perf/samples``, ``perf/flops`` or ``perf/wall_seconds``.

A wandb error never stops training: it is reported once on stderr and wandb is switched off
for the rest of the run; ``metrics.jsonl`` carries on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from worldmodel import atomic

METRICS_FILE = "metrics.jsonl"
STEP_KEYS = ("train/step", "perf/samples", "perf/flops", "perf/wall_seconds")
NAMESPACES = ("train", "val", "eval", "rollout", "perf")


def wandb_run_id(run_dir: str | os.PathLike) -> str:
    """A wandb run id that is a function of the run folder's absolute path."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the lines logged after ``last_step`` (a killed run's lines past its checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut by the kill
    atomic.write_text(path, "".join(f"{line}\n" for line in keep))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All lines of a ``metrics.jsonl`` (skipping a final line cut short by a kill)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _json_value(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf; keep them readable
    return value


class RunLogger:
    """Logs scalars, images and videos of one run; rank 0 only (``active=False`` elsewhere)."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        mode: str = "offline",
        project: str = "worldmodel-bench",
        entity: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        tags: list[str] | None = None,
        config: Mapping[str, Any] | None = None,
        init: Mapping[str, Any] | None = None,
        resume_step: int | None = None,
        active: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.active = active
        self.metrics_path = self.run_dir / METRICS_FILE
        self._wandb = None
        self._run = None
        if not active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.metrics_path.unlink(missing_ok=True)
        else:
            truncate_metrics(self.metrics_path, resume_step)
        if mode != "disabled":
            kwargs = dict(
                project=project,
                entity=entity,
                group=group,
                job_type=job_type,
                tags=tags,
                config=dict(config or {}),
                dir=str(self.run_dir),
                id=wandb_run_id(self.run_dir),
                resume="allow",
                mode=mode,
            )
            kwargs.update(init or {})
            self._guard("init", lambda: self._start_wandb(kwargs))
            if resume_step is not None and mode == "offline" and self._run is not None:
                self._guard("replay", self._replace_earlier_offline_runs)

    def _start_wandb(self, kwargs: dict[str, Any]) -> None:
        import wandb

        self._wandb = wandb
        self._run = wandb.init(**kwargs)
        for key in STEP_KEYS:
            self._run.define_metric(key)
        for namespace in NAMESPACES:
            self._run.define_metric(f"{namespace}/*", step_metric="train/step")

    def _replace_earlier_offline_runs(self) -> None:
        """Log the kept history (``metrics.jsonl`` up to the checkpoint) into this offline run,
        then remove the folder's earlier offline runs: their rows past the checkpoint were
        dropped from ``metrics.jsonl`` too."""
        current = Path(self._run.dir).parent  # wandb/offline-run-<time>-<id>
        earlier = [p for p in current.parent.glob(f"offline-run-*-{self._run.id}") if p != current]
        for row in read_metrics(self.metrics_path):
            step = int(row.pop("step"))
            self._run.log({"train/step": step, **{k: self._logged(v) for k, v in row.items()}})
        for path in earlier:
            shutil.rmtree(path, ignore_errors=True)

    def _logged(self, value: Any) -> Any:
        """A ``metrics.jsonl`` value as it was logged: media files back as media, the strings
        of non-finite floats back as floats."""
        path = self.run_dir / value if isinstance(value, str) else None
        if path is not None and path.suffix in (".mp4", ".png") and path.is_file():
            return self._media(path)
        return float(value) if value in ("nan", "inf", "-inf") else value

    def _media(self, path: Path) -> Any:
        if path.suffix == ".mp4":
            return self._wandb.Video(str(path), format="mp4")  # plays at the file's fps
        return self._wandb.Image(str(path))

    def _guard(self, what: str, call: Callable[[], Any]) -> None:
        """Run a wandb call; on any error report it once and stop using wandb."""
        try:
            call()
        except Exception as exc:  # wandb raises many types; training must go on
            print(
                f"warning: wandb {what} failed ({type(exc).__name__}: {exc}); "
                f"continuing with {self.metrics_path} only",
                file=sys.stderr,
            )
            self._run = None

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if not self.active:
            return
        self._append({k: _json_value(v) for k, v in metrics.items()}, step)
        if self._run is not None:
            self._guard("log", lambda: self._run.log({"train/step": int(step), **metrics}))

    def log_media(self, key: str, path: str | os.PathLike, step: int) -> None:
        """An image (``.png``) or video (``.mp4``) file under ``key``; its path (relative to
        the run folder) goes to ``metrics.jsonl``."""
        if not self.active:
            return
        path = Path(path)
        self._append({key: self._relative(path)}, step)
        if self._run is not None:
            self._guard(
                "log", lambda: self._run.log({"train/step": int(step), key: self._media(path)})
            )

    def _relative(self, path: Path) -> str:
        """``path`` relative to the run folder when inside it, so runs compare equal."""
        try:
            return str(path.resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(path)

    def _append(self, values: Mapping[str, Any], step: int) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": int(step), **values}) + "\n")
            f.flush()

    def summary(self, values: Mapping[str, Any]) -> None:
        if self._run is not None:
            self._guard("summary", lambda: self._run.summary.update(dict(values)))

    def close(self) -> None:
        if self._run is not None:
            self._guard("finish", self._run.finish)
            self._run = None
