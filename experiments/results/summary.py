"""What every entry of ``summary.json`` shares: the quantities' names, how runs group
(seeds are repetitions, tasks pool) and how intervals are drawn; :class:`Summary` itself."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from experiments.results.entries import (
    Convergence,
    Curve,
    DepthPoint,
    DriftCurve,
    Estimate,
    MissingRun,
    Provenance,
    RunValues,
    SummaryEntry,
    SummarySettings,
    as_plain,
)
from experiments.results.run_folders import GroupKey, Run, RunFolderError
from experiments.runs import GROUP_FREE_KEYS
from worldmodel.evaluation.statistics import Interval, bootstrap_ci, stratified_bootstrap_iqm
from worldmodel.training.resume import config_differences

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
# the depth curve's measures per run (estimates.depth_quantities): final closed-loop success;
# the area under the periodic success curve as a mean success rate; both at the D=0 baseline's
# training FLOPs (a deeper run's step costs more, so it has trained fewer steps by then)
SUCCESS_AUC, SUCCESS_AT, MATCHED_FLOPS = "success_auc", "success_at", "@baseline_flops"
DEPTH_QUANTITIES = (
    "success/model",
    SUCCESS_AUC,
    f"{SUCCESS_AT}{MATCHED_FLOPS}",
    f"{SUCCESS_AUC}{MATCHED_FLOPS}",
)
BUDGET_KEYS = ("perf/samples", "perf/flops", "perf/wall_seconds")  # running totals per step
PER_SEED = "mean over seeds"
ACROSS_TASKS = "IQM across tasks"
ALL_TASKS = "all"


@dataclass
class Summary:
    """Everything the report prints; ``summary.json`` is ``to_dict()``, read back by ``load``.

    ``estimates``: one per (quantity, variant, task, setting, fps), ``task == "all"`` for the
    IQM across tasks. ``curves``: per group and metric (and pooled success) the point and
    band at each step. ``convergence``: each variant against the baseline. ``drift``: per
    group, inference mode, regime and metric the point and band at each horizon.
    ``missing``: the run folders left out, with scope and reason. ``depth``: the depth
    curve. ``runs``: the run records of ``runs.csv``. ``run_values``: per run what the
    paired claims compare. The entries are ``experiments.results.entries``.
    """

    sweep: str
    settings: SummarySettings
    provenance: Provenance
    runs: list[dict[str, Any]]
    estimates: list[Estimate]
    curves: list[Curve]
    convergence: list[Convergence]
    drift: list[DriftCurve]
    missing: list[MissingRun]
    notes: list[str]
    depth: list[DepthPoint] = field(default_factory=list)
    run_values: list[RunValues] = field(default_factory=list)
    schema_version: int = SUMMARY_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {f.name: as_plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Summary:
        """The summary of a ``summary.json`` (lists a file lacks are empty)."""
        read = {name: reader.from_dict(values[name]) for name, reader in READERS.items()}
        for name, reader in LIST_READERS.items():
            read[name] = [reader.from_dict(entry) for entry in values.get(name, [])]
        return cls(**values | read)

    @classmethod
    def load(cls, path: str | Path) -> Summary:
        return cls.from_dict(json.loads(Path(path).read_text()))


READERS: dict[str, type[SummaryEntry]] = {"settings": SummarySettings, "provenance": Provenance}
LIST_READERS: dict[str, type[SummaryEntry]] = {  # Summary's fields that list entries
    "estimates": Estimate,
    "curves": Curve,
    "convergence": Convergence,
    "drift": DriftCurve,
    "missing": MissingRun,
    "depth": DepthPoint,
    "run_values": RunValues,
}


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
    """Runs by group, in report order: setting, fps, task, then the baseline first. Raises
    ``RunFolderError`` (``check_seeds_of_one_experiment``) where a group would pool runs
    that are not seeds of one experiment."""
    groups: dict[GroupKey, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.seed):
        groups[run.group].append(run)
    for key, members in groups.items():
        check_seeds_of_one_experiment(key, members)

    def order(key: GroupKey) -> tuple:
        return (key.setting, key.fps, key.task, key.variant != baseline, key.variant)

    return {key: groups[key] for key in sorted(groups, key=order)}


def check_seeds_of_one_experiment(key: GroupKey, runs: Sequence[Run]) -> None:
    """Refuse, with one line naming both folders, two runs of a group that share a seed or
    differ in anything but the seed and what may change on resume (``GROUP_FREE_KEYS``)."""
    first = runs[0]
    where = f"{key.variant} ({key.task} {key.setting}, fps {key.fps:g})"
    for run in runs[1:]:
        if run.seed == first.seed:
            raise RunFolderError(
                f"{first.path} and {run.path} are both seed {run.seed} of {where}; leave one "
                "out, or tell them apart with variant=<name>"
            )
        changed = config_differences(first.config, run.config, GROUP_FREE_KEYS)
        if changed:
            first_config, config = OmegaConf.create(first.config), OmegaConf.create(run.config)
            shown = ", ".join(
                f"{k} ({OmegaConf.select(first_config, k)} vs {OmegaConf.select(config, k)})"
                for k in changed[:3]
            )
            raise RunFolderError(
                f"{first.path} and {run.path} would be seeds of {where} but differ in {shown}; "
                "tell them apart with variant=<name>, or aggregate them separately"
            )


def pooled_groups(groups: dict[GroupKey, list[Run]]) -> dict[GroupKey, dict[str, list[Run]]]:
    """Groups of two or more tasks: (variant, "all", setting, fps) -> task -> runs."""
    pooled: dict[GroupKey, dict[str, list[Run]]] = defaultdict(dict)
    for key, runs in groups.items():
        pooled[key._replace(task=ALL_TASKS)][key.task] = runs
    return {key: tasks for key, tasks in pooled.items() if len(tasks) >= 2}
