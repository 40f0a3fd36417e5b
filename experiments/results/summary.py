"""What every entry of ``summary.json`` shares: the quantities' names, how runs group
(seeds are repetitions, tasks pool) and how intervals are drawn; :class:`Summary` itself."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.results.run_folders import GroupKey, Run
from worldmodel.evaluation.statistics import Interval, bootstrap_ci, stratified_bootstrap_iqm

SUMMARY_SCHEMA_VERSION = 1
SUMMARY_FILE = "summary.json"
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
DEFAULT_BASELINE = "single_step"
DEFAULT_REPS = 10000

SUCCESS = "eval/success_rate"
LOSS = "val/loss_video_h1"
# Curves against training steps, with their direction (higher is better).
CURVE_METRICS = {SUCCESS: True, LOSS: False, "val/loss_action": False}
CONVERGENCE_METRICS = (SUCCESS, LOSS)
FINAL_LOSSES = (LOSS, "val/loss_action")
CURVES_CSV_KEYS = ("eval/success_rate", "eval/successes", "eval/episodes")  # and every val/
SPEEDUP = "speed/mcp_parallel_speedup"
POOLED_PREFIXES = ("success/", "speed/")  # quantities on a scale common to all tasks
BUDGET_KEYS = ("perf/samples", "perf/flops", "perf/wall_seconds")  # running totals per step
PER_SEED = "mean over seeds"
ACROSS_TASKS = "IQM across tasks"
ALL_TASKS = "all"


@dataclass
class Summary:
    """Everything the report prints; ``summary.json`` is ``to_dict()``.

    ``estimates``: one entry per (quantity, variant, task, setting, fps), ``task == "all"``
    for the IQM across tasks. ``curves``: per group and metric (and pooled success) the
    point and band at each step. ``convergence``: each variant against the baseline.
    ``drift``: per group, inference mode, regime and metric the point and band at each
    horizon. ``missing``: the run folders left out, with scope and reason. ``run_values``:
    per run what the paired claims compare (``experiments.results.run_values``).
    """

    sweep: str
    settings: dict[str, Any]
    provenance: dict[str, Any]
    runs: list[dict[str, Any]]
    estimates: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    convergence: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    missing: list[dict[str, Any]]
    notes: list[str]
    depth: list[dict[str, Any]] = field(default_factory=list)
    run_values: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SUMMARY_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> Summary:
        return cls(**json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: replicates, confidence level and the generator's seed."""

    reps: int = DEFAULT_REPS
    confidence: float = CONFIDENCE
    seed: int = BOOTSTRAP_SEED

    def over_seeds(self, values: Sequence[float]) -> Interval:
        return bootstrap_ci(values, np.mean, self.reps, self.confidence, self.seed)

    def across_tasks(self, scores: dict[str, list[float]]) -> Interval:
        return stratified_bootstrap_iqm(scores, self.reps, self.confidence, self.seed)


def group_runs(runs: Iterable[Run], baseline: str) -> dict[GroupKey, list[Run]]:
    """Runs by group, in report order: setting, fps, task, then the baseline first."""
    groups: dict[GroupKey, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.seed):
        groups[run.group].append(run)

    def order(key: GroupKey) -> tuple:
        return (key.setting, key.fps, key.task, key.variant != baseline, key.variant)

    return {key: groups[key] for key in sorted(groups, key=order)}


def pooled_groups(groups: dict[GroupKey, list[Run]]) -> dict[GroupKey, dict[str, list[Run]]]:
    """Groups of two or more tasks: (variant, "all", setting, fps) -> task -> runs."""
    pooled: dict[GroupKey, dict[str, list[Run]]] = defaultdict(dict)
    for key, runs in groups.items():
        pooled[key._replace(task=ALL_TASKS)][key.task] = runs
    return {key: tasks for key, tasks in pooled.items() if len(tasks) >= 2}
