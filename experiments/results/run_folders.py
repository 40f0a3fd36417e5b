"""The run folders of a sweep, read and checked: what ``python -m experiments.train`` wrote.

A run folder is any folder below the sweep folder that holds ``config.yaml`` (a sweep puts
its runs at ``outputs/sweeps/<name>/<run folder>/``, named by ``experiments/runs.py``).
Hidden folders (Hydra's ``.hydra``), ``wandb`` folders and the aggregation's own outputs are
not searched, nor is anything inside a run folder.

A run is usable when its files parse, its validation and evaluation values are finite and
its last training row reached ``train.steps``. Every other folder becomes a ``MissingRun``
whose one-line reason names the file and the fix, so that reports list it instead of
dropping it. A finished run without a valid ``eval.json`` keeps its training curves but is
also listed missing, with scope ``"eval"``: its closed-loop, drift and speed results are not
in the aggregate.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml
from omegaconf import OmegaConf

from experiments.results.eval_file import (
    EVAL_FILE,
    EVAL_SCHEMA_VERSION,
    EvalFileError,
    EvalResult,
    is_finite,
    parse_eval,
)
from worldmodel import atomic
from worldmodel.command_line import override
from worldmodel.heads.config import HeadsConfig
from worldmodel.timing import FRAMES_PER_LATENT, FrameRate
from worldmodel.training.checkpoint import LAST_CHECKPOINT
from worldmodel.training.renamed_keys import upgrade_config
from worldmodel.training.run_logger import METRICS_FILE

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
AGGREGATE_DIR = "aggregate"  # written into the sweep folder by experiments.aggregate
REPORT_DIR = "report"  # and the figures of experiments.report
OUTPUT_DIRS = (AGGREGATE_DIR, REPORT_DIR)
NOT_SEARCHED = ("wandb", *OUTPUT_DIRS)
TRAIN_KEY = "train/loss/total"  # present in every training row
CHECKED_PREFIXES = ("val/", "eval/")  # values the aggregate reads; must be finite

SCOPE_RUN = "run"  # the run is left out of everything
SCOPE_EVAL = "eval"  # training curves kept; closed-loop, drift and speed results missing


def write_run_files(run_dir: Path, resolved: dict, run_info: dict[str, Any]) -> None:
    """A training run's ``config.yaml`` (its resolved config) and ``run.json`` (provenance,
    variant label, overrides), each written atomically."""
    atomic.write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(resolved)))
    atomic.write_json(run_dir / RUN_FILE, run_info)


class RunFolderError(Exception):
    """A run folder that cannot be used; the message is one line naming the file and fix."""


class GroupKey(NamedTuple):
    """What a comparison groups runs by; the seeds of one group are repetitions."""

    variant: str
    task: str
    setting: str
    fps: float


@dataclass
class Run:
    """One training run and, when it was evaluated, its ``eval.json``."""

    path: Path
    variant: str  # what tells the compared models apart (run.json "variant", else "heads")
    heads: str
    task: str
    setting: str
    fps: float  # video frames per second, the paper's label (worldmodel/timing.py)
    seed: int
    steps: int  # train.steps planned
    last_step: int  # step of the last training row (-1 if none)
    metrics: list[dict[str, Any]]
    eval: EvalResult | None
    git_commit: str
    git_dirty: bool
    overrides: list[str]
    heads_config: HeadsConfig = field(default_factory=HeadsConfig)  # its recorded heads
    versions: dict[str, str] = field(default_factory=dict)  # run.json: python, torch, mujoco, ...
    frames_per_latent: int = FRAMES_PER_LATENT  # video frames per latent frame
    K: int = 2  # latent frames per chunk at inference
    config: dict[str, Any] = field(default_factory=dict)  # config.yaml, upgraded on read

    @property
    def frame_rate(self) -> FrameRate:
        return FrameRate(self.fps, self.frames_per_latent)

    @property
    def mcp_depth(self) -> int:
        """MCP depth D of its heads (0: none, the single-step baseline)."""
        return self.heads_config.depth

    @property
    def finished(self) -> bool:
        return self.last_step >= self.steps

    @property
    def group(self) -> GroupKey:
        return GroupKey(self.variant, self.task, self.setting, self.fps)

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(steps, values)`` of a metrics key, sorted by step (the last value logged at a
        step wins); None if the key was never logged."""
        points = {int(row["step"]): float(row[key]) for row in self.metrics if key in row}
        if not points:
            return None
        steps = sorted(points)
        return np.asarray(steps, dtype=float), np.asarray([points[s] for s in steps])


@dataclass
class MissingRun:
    """A run folder left out of (part of) the aggregate, and why."""

    path: Path
    reason: str
    scope: str  # SCOPE_RUN or SCOPE_EVAL
    run: Run | None = None  # what could be read of it (None if its config was unreadable)


@dataclass
class RunSet:
    """The usable runs of a sweep and the folders left out, each with its reason."""

    sweep_dir: Path
    runs: list[Run]
    missing: list[MissingRun]

    def relative(self, path: Path) -> str:
        """``path`` relative to the sweep folder, as reports print it."""
        return path.relative_to(self.sweep_dir).as_posix()

    @property
    def evaluated(self) -> list[Run]:
        """The runs with a readable ``eval.json``."""
        return [run for run in self.runs if run.eval is not None]


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Every folder below ``sweep_dir`` (itself included) that holds ``config.yaml``, sorted."""

    def walk(folder: Path) -> Iterator[Path]:
        if (folder / CONFIG_FILE).is_file():
            yield folder
            return
        for child in sorted(folder.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and child.name not in NOT_SEARCHED:
                yield from walk(child)

    return list(walk(Path(sweep_dir)))


def load_runs(sweep_dir: str | Path, require_eval: bool = True) -> RunSet:
    """Read every run folder of a sweep; ``require_eval`` lists runs without a valid
    ``eval.json`` as missing (scope ``"eval"``). Raises ``RunFolderError`` when the sweep
    folder does not exist or holds no run folder."""
    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise RunFolderError(
            f"{sweep_dir} is not a folder; pass the folder a sweep wrote, "
            "e.g. outputs/sweeps/<experiment name>"
        )
    folders = find_run_dirs(sweep_dir)
    if not folders:
        raise RunFolderError(
            f"{sweep_dir} holds no run folder (no {CONFIG_FILE} below it); pass the folder a "
            "sweep wrote, e.g. outputs/sweeps/<experiment name>"
        )
    runs, missing = [], []
    for folder in folders:
        try:
            run = read_run(folder)
        except RunFolderError as exc:
            missing.append(MissingRun(folder, str(exc), SCOPE_RUN))
            continue
        if not run.finished:
            missing.append(MissingRun(folder, unfinished_reason(run), SCOPE_RUN, run))
            continue
        runs.append(run)
        try:
            run.eval = read_eval(folder, run.steps)
        except RunFolderError as exc:
            if require_eval:
                missing.append(MissingRun(folder, str(exc), SCOPE_EVAL, run))
    return RunSet(sweep_dir, runs, missing)


def read_run(folder: Path) -> Run:
    """A run folder's config, provenance and metrics (``eval`` left None; see
    :func:`read_eval`). Raises ``RunFolderError`` for a missing or unreadable file."""
    config = read_run_config(folder)
    info = _read_json(
        folder / RUN_FILE,
        f"re-run its training ({CONFIG_FILE} and it are written together at the start)",
    )
    rows = read_metrics(folder / METRICS_FILE)
    git = info.get("git") or {}
    train_steps = [int(row["step"]) for row in rows if TRAIN_KEY in row]
    return Run(
        path=folder,
        variant=str(info.get("variant") or info.get("heads") or "custom"),
        heads=str(info.get("heads") or "custom"),
        task=str(_config_value(config, "task.name", folder)),
        setting=str(_config_value(config, "task.setting", folder)),
        fps=float(_config_value(config, "fps", folder)),
        seed=int(_config_value(config, "seed", folder)),
        steps=int(_config_value(config, "train.steps", folder)),
        last_step=max(train_steps, default=-1),
        metrics=rows,
        eval=None,
        git_commit=str(git.get("commit", "unknown")),
        git_dirty=bool(git.get("dirty", False)),
        overrides=[str(o) for o in info.get("overrides") or []],
        heads_config=HeadsConfig.from_record(config.get("heads") or {}),
        versions={str(k): str(v) for k, v in (info.get("versions") or {}).items()},
        frames_per_latent=int(_config_value(config, "frames_per_latent", folder)),
        K=int((config.get("model") or {}).get("K", 2)),
        config=config,
    )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``. A final line cut short (a killed run) is skipped;
    any other unreadable line, a row without ``step`` or a non-finite ``val/`` or ``eval/``
    value raises ``RunFolderError``."""
    if not path.is_file():
        raise RunFolderError(f"{path} is missing: the run never started training; re-run it")
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # cut short by a kill
            raise RunFolderError(
                f"{path}:{number} is not valid JSON; delete that line or re-run the training"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise RunFolderError(
                f"{path}:{number} has no integer 'step'; delete that line or re-run the training"
            )
        for key, value in row.items():
            if key.startswith(CHECKED_PREFIXES) and not is_finite(value):
                raise RunFolderError(
                    f"{path}:{number} has {key}={value!r} at step {row['step']}, not a finite "
                    "number (the run diverged?); re-run it (e.g. with a lower train.lr) or "
                    "remove the folder"
                )
        rows.append(row)
    if not any(TRAIN_KEY in row for row in rows):
        raise RunFolderError(f"{path} has no training row ({TRAIN_KEY}); re-run the training")
    return rows


def read_eval(folder: Path, steps: int) -> EvalResult:
    """The run's ``eval.json``, checked to be of the known schema and of its final step."""
    path = folder / EVAL_FILE
    fix = f"run python -m experiments.evaluate checkpoint={folder / LAST_CHECKPOINT}"
    data = _read_json(path, fix)
    if data.get("schema_version") != EVAL_SCHEMA_VERSION:
        raise RunFolderError(
            f"{path} has schema_version={data.get('schema_version')!r}, this report reads "
            f"{EVAL_SCHEMA_VERSION}; {fix}"
        )
    if data.get("step") != steps:
        raise RunFolderError(
            f"{path} evaluates step {data.get('step')}, not the final step {steps}; {fix}"
        )
    try:
        return parse_eval(data)
    except EvalFileError as exc:
        raise RunFolderError(f"{path} {exc}; {fix}") from None


def unfinished_reason(run: Run) -> str:
    """Why an unfinished run is left out, and the command that continues it."""
    path = run.path / METRICS_FILE
    command = shlex.join(["python", "-m", "experiments.train", *run.overrides])
    resume = f"{command} {override('hydra.run.dir', run.path)}"
    hint = "" if run.overrides else " and the run's overrides"
    return (
        f"{path} ends at step {run.last_step} of train.steps={run.steps} (unfinished); "
        f"continue it from {LAST_CHECKPOINT} with: {resume}{hint}"
    )


def read_run_config(folder: Path) -> dict[str, Any]:
    """A run folder's resolved config (``config.yaml``) under today's key names."""
    return upgrade_config(_read_yaml(folder / CONFIG_FILE))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RunFolderError(
            f"{path} is not readable YAML ({type(exc).__name__}); re-run the training"
        ) from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} does not hold a config mapping; re-run the training")
    return data


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    if not path.is_file():
        raise RunFolderError(f"{path} is missing; {fix}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path} is not readable JSON ({type(exc).__name__}); {fix}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} does not hold a JSON object; {fix}")
    return data


def _config_value(config: dict[str, Any], dotted: str, folder: Path) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise RunFolderError(
                f"{folder / CONFIG_FILE} has no key {dotted}; it was not written by "
                "python -m experiments.train, re-run the training"
            )
        value = value[part]
    return value
