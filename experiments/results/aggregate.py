"""A sweep's run folders as tidy CSVs and ``summary.json`` (``python -m experiments.aggregate``).

``write_aggregate`` writes ``<sweep>/aggregate/``: ``runs.csv`` (one row per run folder,
missing ones included), ``curves.csv`` (long format: validation losses and closed-loop
success against steps), ``success.csv`` (final closed-loop success per run and policy, with n
and a Wilson interval), ``drift.csv``, ``speed.csv`` and ``summary.json`` (:class:`Summary`).

The rules (DESIGN section 5), computed with ``worldmodel.evaluation.statistics``:
- A group is (variant, task, setting, fps); its seeds are repetitions. Per group a quantity
  is the mean over seeds with a percentile-bootstrap interval over seeds.
- Across tasks (per variant, setting, fps; only with two or more tasks) success rates and
  speeds are the IQM of all runs with a stratified bootstrap interval (rliable). Losses and
  drift errors are not pooled across tasks: their scale differs per task.
- Final closed-loop success is ``eval.json`` (the final checkpoint), with the summed
  successes and episodes; final validation losses are the last evaluation of
  ``metrics.jsonl``. ``val/loss_video_h1`` is the loss that compares variants:
  ``val/loss_total`` also holds the MCP depths' losses.
- Curves: per group the mean over seeds at the steps every seed has (``mean_curve``) with a
  bootstrap band per step; the pooled success curve is the IQM across tasks per step. Each
  success curve carries the mean training budgets at its steps (samples, FLOPs, training
  wall-clock), so it can be drawn against them: a Next Forcing step costs more.
- Convergence of each variant against ``--baseline`` on the same (task, setting, fps), and
  pooled, on those mean curves (linear interpolation): the relative improvement
  ``(v - b) / b`` at every common step and at the latest one; the speed-up = steps the
  baseline needs to reach its own value at the late step (``--late-step``, default the last
  common step) / steps the variant needs to reach it (``convergence_speedup``). Success is
  the paper's measure; validation loss (lower is better) a second, cheaper one.
- Depth curve: where the runs of a (task, setting, fps) span three or more MCP depths D
  (D=0 the baseline, the chained Next Forcing heads otherwise), final success per D, mean
  over seeds with its interval (``Summary.depth``).
- The speed ratio is ``eval.json``'s ``speed.mcp_parallel_speedup``: measured within one
  evaluation run on one machine.
Every entry lists the run folders it came from (relative to the sweep folder).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.results.eval_file import SPEED_KEYS, SPEED_MODES
from experiments.results.run_folders import (
    AGGREGATE_DIR,
    SCOPE_EVAL,
    GroupKey,
    Run,
    RunSet,
    load_runs,
)
from worldmodel import atomic
from worldmodel.evaluation.statistics import (
    Interval,
    bootstrap_ci,
    convergence_speedup,
    mean_curve,
    relative_improvement,
    stratified_bootstrap_iqm,
    wilson_interval,
)

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
    horizon. ``missing``: the run folders left out, with scope and reason.
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


# ------------------------------------------------------------------ entry points
def aggregate_sweep(
    sweep_dir: str | Path,
    baseline: str = DEFAULT_BASELINE,
    late_step: float | None = None,
    bootstrap_reps: int = DEFAULT_REPS,
    require_eval: bool = True,
) -> Summary:
    """Read a sweep, compute its :class:`Summary` and write ``<sweep>/aggregate/``.

    Raises ``RunFolderError`` when the folder holds no run folder; unusable runs are listed
    in ``Summary.missing`` instead."""
    run_set = load_runs(sweep_dir, require_eval)
    summary = summarise(run_set, baseline, late_step, Bootstrap(reps=bootstrap_reps))
    write_aggregate(run_set, summary)
    return summary


def summarise(
    run_set: RunSet,
    baseline: str = DEFAULT_BASELINE,
    late_step: float | None = None,
    bootstrap: Bootstrap = Bootstrap(),
) -> Summary:
    """The statistics of a read sweep (module docstring for the rules)."""
    groups = group_runs(run_set.runs, baseline)
    curves = curve_entries(groups, run_set, bootstrap)
    notes = []
    variants = sorted({run.variant for run in run_set.runs})
    if len(variants) > 1 and baseline not in variants:
        notes.append(
            f"no run of the baseline variant {baseline!r}, so no convergence comparison; "
            f"pass --baseline with one of: {', '.join(variants)}"
        )
    return Summary(
        sweep=str(run_set.sweep_dir),
        settings={
            "baseline": baseline,
            "late_step": late_step,
            "bootstrap_reps": bootstrap.reps,
            "confidence": bootstrap.confidence,
            "bootstrap_seed": bootstrap.seed,
            "success_metric": SUCCESS,
            "loss_metric": LOSS,
        },
        provenance=provenance(run_set),
        runs=[run_record(run_set, run) for run in run_set.runs],
        estimates=estimate_entries(groups, run_set, bootstrap),
        curves=curves,
        convergence=convergence_entries(curves, baseline, late_step),
        drift=drift_entries(groups, run_set, bootstrap),
        missing=[
            {"path": run_set.relative(m.path), "scope": m.scope, "reason": m.reason}
            for m in run_set.missing
        ],
        notes=notes,
        depth=depth_entries(groups, run_set, bootstrap),
    )


def group_runs(runs: Iterable[Run], baseline: str) -> dict[GroupKey, list[Run]]:
    """Runs by group, in report order: setting, fps, task, then the baseline first."""
    groups: dict[GroupKey, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.seed):
        groups[run.group].append(run)

    def order(key: GroupKey) -> tuple:
        return (key.setting, key.fps, key.task, key.variant != baseline, key.variant)

    return {key: groups[key] for key in sorted(groups, key=order)}


def _pooled(groups: dict[GroupKey, list[Run]]) -> dict[GroupKey, dict[str, list[Run]]]:
    """Groups of two or more tasks: (variant, "all", setting, fps) -> task -> runs."""
    pooled: dict[GroupKey, dict[str, list[Run]]] = defaultdict(dict)
    for key, runs in groups.items():
        pooled[key._replace(task=ALL_TASKS)][key.task] = runs
    return {key: tasks for key, tasks in pooled.items() if len(tasks) >= 2}


# ------------------------------------------------------------------ per-run numbers
def run_quantities(run: Run) -> dict[str, float]:
    """The final numbers of one run: ``success/<policy>``, ``final/<loss>`` and ``speed/...``."""
    values = {}
    for metric in FINAL_LOSSES:
        curve = run.curve(metric)
        if curve is not None:
            values[f"final/{metric}"] = float(curve[1][-1])
    if run.eval is None:
        return values
    for policy, result in run.eval.closed_loop.items():
        values[f"success/{policy}"] = result.successes / result.n
    for mode in SPEED_MODES:
        speed = run.eval.speed.get(mode)
        for key in SPEED_KEYS:
            if speed is not None and speed.value(key) is not None:
                values[f"speed/{mode}/{key}"] = speed.value(key)
    if run.eval.mcp_parallel_speedup is not None:
        values[SPEEDUP] = run.eval.mcp_parallel_speedup
    return values


def estimate_entries(
    groups: dict[GroupKey, list[Run]], run_set: RunSet, bootstrap: Bootstrap
) -> list[dict[str, Any]]:
    """Per group every quantity over seeds; then the IQM across tasks of the pooled ones."""
    values = {run.path: run_quantities(run) for runs in groups.values() for run in runs}
    entries = []
    for key, runs in groups.items():
        for quantity in sorted({q for run in runs for q in values[run.path]}):
            members = [run for run in runs if quantity in values[run.path]]
            interval = bootstrap.over_seeds([values[run.path][quantity] for run in members])
            entry = _estimate(quantity, key._asdict(), PER_SEED, interval, members, run_set)
            entries.append(entry)
    for key, tasks in _pooled(groups).items():
        members = [run for runs in tasks.values() for run in runs]
        quantities = {
            q for run in members for q in values[run.path] if q.startswith(POOLED_PREFIXES)
        }
        for quantity in sorted(quantities):
            scores = {
                task: [values[run.path][quantity] for run in runs if quantity in values[run.path]]
                for task, runs in tasks.items()
            }
            scores = {task: s for task, s in scores.items() if s}
            if len(scores) < 2:
                continue
            used = [run for run in members if quantity in values[run.path]]
            interval = bootstrap.across_tasks(scores)
            entry = _estimate(quantity, key._asdict(), ACROSS_TASKS, interval, used, run_set)
            entries.append(entry | {"tasks": sorted(scores)})
    return entries


def _estimate(
    quantity: str,
    fields: dict[str, Any],
    statistic: str,
    interval: Interval,
    runs: list[Run],
    run_set: RunSet,
) -> dict[str, Any]:
    entry = {"quantity": quantity, **fields, "statistic": statistic, **interval.to_dict()}
    entry |= {"n_runs": len(runs), "seeds": sorted({run.seed for run in runs})}
    if quantity.startswith("success/"):
        policy = quantity.removeprefix("success/")
        counts = [run.eval.closed_loop[policy] for run in runs]
        entry["successes"] = sum(c.successes for c in counts)
        entry["episodes"] = sum(c.n for c in counts)
    entry["runs"] = [run_set.relative(run.path) for run in runs]
    return entry


# ------------------------------------------------------------------ curves
def _bands_over_seeds(matrix: np.ndarray, bootstrap: Bootstrap) -> dict[str, list[float]]:
    """Point, low and high per column of ``matrix`` (runs, positions), over seeds."""
    intervals = [bootstrap.over_seeds(column) for column in matrix.T]
    return {k: [getattr(i, k) for i in intervals] for k in ("point", "low", "high")}


def _bands_across_tasks(
    by_task: dict[str, np.ndarray], bootstrap: Bootstrap
) -> dict[str, list[float]]:
    """Point, low and high per position of ``task -> (runs, positions)``, IQM across tasks."""
    positions = min(m.shape[1] for m in by_task.values())
    intervals = [
        bootstrap.across_tasks({task: m[:, p].tolist() for task, m in by_task.items()})
        for p in range(positions)
    ]
    return {k: [getattr(i, k) for i in intervals] for k in ("point", "low", "high")}


def _aligned(curves: list[tuple[np.ndarray, np.ndarray]], steps: np.ndarray) -> np.ndarray:
    """Values of every curve at ``steps`` (steps they all have) -> (curves, steps)."""
    return np.stack([values[np.isin(s, steps)] for s, values in curves])


def episode_counts(runs: list[Run], steps: np.ndarray) -> dict[str, list[int]]:
    """The runs' summed periodic ``successes`` and ``episodes`` at ``steps`` (empty if a run
    did not log them)."""
    counts = {}
    for key in ("eval/successes", "eval/episodes"):
        curves = [run.curve(key) for run in runs]
        if any(curve is None or not np.isin(steps, curve[0]).all() for curve in curves):
            return {}
        total = _aligned(curves, steps).sum(axis=0)
        counts[key.removeprefix("eval/")] = [int(round(x)) for x in total]
    return counts


def budget_curves(runs: list[Run], steps: np.ndarray) -> dict[str, list[float]]:
    """Mean over runs of each training budget (``perf/samples``, ``perf/flops``,
    ``perf/wall_seconds``) at ``steps``, for plotting a curve against it; a budget some run
    did not log at those steps is left out."""
    budgets = {}
    for key in BUDGET_KEYS:
        curves = [run.curve(key) for run in runs]
        if any(curve is None or not np.isin(steps, curve[0]).all() for curve in curves):
            continue
        budgets[key] = _aligned(curves, steps).mean(axis=0).tolist()
    return budgets


def curve_entries(
    groups: dict[GroupKey, list[Run]], run_set: RunSet, bootstrap: Bootstrap
) -> list[dict[str, Any]]:
    """Per group and curve metric the mean over seeds at common steps with bootstrap bands;
    per (variant, setting, fps) of two or more tasks the IQM success curve."""
    entries = []

    def add(fields: dict, metric: str, statistic: str, steps, bands, runs: list[Run]) -> None:
        entries.append(
            {"metric": metric, **fields, "statistic": statistic, "steps": steps.tolist()}
            | bands
            | (episode_counts(runs, steps) if metric == SUCCESS else {})
            | {"budgets": budget_curves(runs, steps) if metric == SUCCESS else {}}
            | {"n_runs": len(runs), "runs": [run_set.relative(run.path) for run in runs]}
        )

    for key, runs in groups.items():
        for metric in CURVE_METRICS:
            members = [run for run in runs if run.curve(metric) is not None]
            if not members:
                continue
            curves = [run.curve(metric) for run in members]
            steps, _ = mean_curve(curves)
            bands = _bands_over_seeds(_aligned(curves, steps), bootstrap)
            add(key._asdict(), metric, PER_SEED, steps, bands, members)
    for key, tasks in _pooled(groups).items():
        members = {
            t: [r for r in runs if r.curve(SUCCESS) is not None] for t, runs in tasks.items()
        }
        members = {t: runs for t, runs in members.items() if runs}
        if len(members) < 2:
            continue
        everyone = [run for runs in members.values() for run in runs]
        steps, _ = mean_curve([run.curve(SUCCESS) for run in everyone])
        by_task = {
            t: _aligned([run.curve(SUCCESS) for run in runs], steps) for t, runs in members.items()
        }
        bands = _bands_across_tasks(by_task, bootstrap)
        add(key._asdict(), SUCCESS, ACROSS_TASKS, steps, bands, everyone)
    return entries


# ------------------------------------------------------------------ convergence
def convergence_entries(
    curves: list[dict[str, Any]], baseline: str, late_step: float | None
) -> list[dict[str, Any]]:
    """Every variant's curve against the baseline's curve of the same task, setting, fps
    and metric (success and validation loss)."""
    index = {(c["variant"], c["task"], c["setting"], c["fps"], c["metric"]): c for c in curves}
    if not any(c["variant"] == baseline for c in curves):
        return []
    entries = []
    for curve in curves:
        if curve["variant"] == baseline or curve["metric"] not in CONVERGENCE_METRICS:
            continue
        base = index.get((baseline, curve["task"], curve["setting"], curve["fps"], curve["metric"]))
        entries.append(compare_curves(base, curve, baseline, late_step))
    return entries


def compare_curves(
    base: dict[str, Any] | None,
    variant: dict[str, Any],
    baseline: str,
    late_step: float | None,
) -> dict[str, Any]:
    """Relative improvement per common step and convergence speed-up of one variant curve
    against the baseline curve (None values with a reason where undefined)."""
    metric = variant["metric"]
    higher_is_better = CURVE_METRICS[metric]
    entry = {
        "metric": metric,
        "variant": variant["variant"],
        "baseline": baseline,
        "task": variant["task"],
        "setting": variant["setting"],
        "fps": variant["fps"],
        "statistic": variant["statistic"],
        "higher_is_better": higher_is_better,
        "late_step": None,
        "target": None,
        "base_steps_to_target": None,
        "variant_steps_to_target": None,
        "speedup": None,
        "reason": "",
        "relative_improvement": None,
        "relative_improvement_by_step": [],
        "runs": variant["runs"],
        "baseline_runs": [] if base is None else base["runs"],
    }
    if base is None:
        return entry | {"reason": f"no {baseline} runs of this task, setting and fps"}
    common = np.intersect1d(base["steps"], variant["steps"])
    if common.size == 0:
        return entry | {"reason": "the baseline and the variant share no evaluation step"}
    late = float(common[-1]) if late_step is None else float(late_step)
    entry["late_step"] = late
    try:
        speedup = convergence_speedup(
            base["steps"],
            base["point"],
            variant["steps"],
            variant["point"],
            late,
            higher_is_better,
        )
        entry |= speedup.to_dict()
    except ValueError as exc:
        entry["reason"] = str(exc)
    by_step = [_relative(step, variant, base) for step in common.tolist()]
    entry["relative_improvement_by_step"] = by_step
    entry["relative_improvement"] = by_step[-1]
    return entry


def _relative(step: float, variant: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Relative improvement of the variant curve over the base curve at a step they share,
    with both values and, for success, both episode counts."""
    entry: dict[str, Any] = {"step": step}
    for name, curve in (("variant", variant), ("base", base)):
        i = curve["steps"].index(step)
        entry[name] = curve["point"][i]
        if "episodes" in curve:
            entry[f"{name}_episodes"] = curve["episodes"][i]
    if entry["base"] <= 0:
        value, reason = None, f"the baseline is {entry['base']:g} at step {step:g}: undefined"
    else:
        value, reason = relative_improvement(entry["variant"], entry["base"]), ""
    return entry | {"value": value, "reason": reason}


# ------------------------------------------------------------------ depth curve
def depth_entries(
    groups: dict[GroupKey, list[Run]], run_set: RunSet, bootstrap: Bootstrap
) -> list[dict[str, Any]]:
    """Final success against the MCP depth D (0 = no heads) per (task, setting, fps) whose
    runs have three or more depths, D=0 and the chained ``mcp`` heads only: mean over seeds
    with its bootstrap interval, per D."""
    slices: dict[tuple, dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for key, runs in groups.items():
        for run in runs:
            if run.eval is not None and (run.mcp_depths == 0 or run.heads == "next_forcing"):
                slices[(key.task, key.setting, key.fps)][run.mcp_depths].append(run)
    entries = []
    for (task, setting, fps), by_depth in sorted(slices.items()):
        if len(by_depth) < 3:
            continue
        for depth, runs in sorted(by_depth.items()):
            values = [run_quantities(run)["success/model"] for run in runs]
            entry = _estimate(
                "success/model",
                {"task": task, "setting": setting, "fps": fps},
                PER_SEED,
                bootstrap.over_seeds(values),
                runs,
                run_set,
            )
            entries.append(entry | {"depth": depth, "variants": sorted({r.variant for r in runs})})
    return entries


# ------------------------------------------------------------------ drift
def drift_curves(run: Run) -> dict[tuple[str, str, str], list[float]]:
    """(mode, regime, metric) -> mean over episodes per horizon, from the run's eval.json."""
    return {} if run.eval is None else run.eval.drift


def drift_entries(
    groups: dict[GroupKey, list[Run]], run_set: RunSet, bootstrap: Bootstrap
) -> list[dict[str, Any]]:
    """Per group, mode, regime and metric the mean over seeds per horizon with bootstrap
    bands (over the horizons every seed has)."""
    entries = []
    for key, runs in groups.items():
        curves = {run.path: drift_curves(run) for run in runs}
        for series in sorted({s for c in curves.values() for s in c}):
            members = [run for run in runs if series in curves[run.path]]
            horizon = min(len(curves[run.path][series]) for run in members)
            matrix = np.array([curves[run.path][series][:horizon] for run in members])
            mode, regime, metric = series
            entries.append(
                {"metric": metric, **key._asdict(), "mode": mode, "regime": regime}
                | {"statistic": PER_SEED, "horizon": list(range(1, horizon + 1))}
                | _bands_over_seeds(matrix, bootstrap)
                | {"n_runs": len(members), "runs": [run_set.relative(r.path) for r in members]}
            )
    return entries


# ------------------------------------------------------------------ provenance
def run_record(run_set: RunSet, run: Run) -> dict[str, Any]:
    """The identity of a run as ``summary.json`` and ``runs.csv`` list it."""
    return {
        "path": run_set.relative(run.path),
        "variant": run.variant,
        "heads": run.heads,
        "task": run.task,
        "setting": run.setting,
        "fps": run.fps,
        "seed": run.seed,
        "steps": run.steps,
        "last_step": run.last_step,
        "finished": run.finished,
        "has_eval": run.eval is not None,
        "git_commit": run.git_commit,
        "git_dirty": run.git_dirty,
        "mcp_depths": run.mcp_depths,
    }


def versions_label(versions: dict[str, str]) -> str:
    """``"mujoco 3.3.0, python 3.12.3, torch 2.13.0"``; "unknown" for runs that predate it."""
    return ", ".join(f"{name} {v}" for name, v in sorted(versions.items())) or "unknown"


def provenance(run_set: RunSet) -> dict[str, Any]:
    """The git commits and library versions the aggregated runs were trained with, with
    their dirty runs: one entry per (commit, versions)."""
    commits: dict[tuple[str, str], dict[str, Any]] = {}
    for run in run_set.runs:
        key = (run.git_commit, versions_label(run.versions))
        entry = commits.setdefault(key, {"runs": 0, "dirty_runs": []})
        entry["runs"] += 1
        if run.git_dirty:
            entry["dirty_runs"].append(run_set.relative(run.path))
    return {
        "commits": [
            {"commit": commit, "versions": label, **v}
            for (commit, label), v in sorted(commits.items())
        ],
        "any_dirty": any(run.git_dirty for run in run_set.runs),
        "runs_used": len(run_set.runs),
        "runs_missing": sum(m.scope != SCOPE_EVAL for m in run_set.missing),
        "runs_without_eval": sum(m.scope == SCOPE_EVAL for m in run_set.missing),
    }


# ------------------------------------------------------------------ tables (CSV)
def _identity(run_set: RunSet, run: Run) -> dict[str, Any]:
    return {"path": run_set.relative(run.path), **run.group._asdict(), "seed": run.seed}


def runs_rows(run_set: RunSet) -> list[dict[str, Any]]:
    missing = {m.path: m for m in run_set.missing}
    rows = []
    for run in run_set.runs:
        gap = missing.get(run.path)
        status = "ok" if gap is None else "no eval"
        rows.append(
            run_record(run_set, run) | {"status": status, "reason": gap.reason if gap else ""}
        )
    for gap in run_set.missing:
        if gap.scope != SCOPE_EVAL:
            record = {"path": run_set.relative(gap.path)}
            if gap.run is not None:
                record = run_record(run_set, gap.run)
            rows.append(record | {"status": "missing", "reason": gap.reason})
    return rows


def curves_rows(run_set: RunSet) -> list[dict[str, Any]]:
    rows = []
    for run in run_set.runs:
        keys = sorted({k for row in run.metrics for k in row if k.startswith("val/")})
        for metric in [*keys, *CURVES_CSV_KEYS]:
            curve = run.curve(metric)
            if curve is None:
                continue
            identity = _identity(run_set, run)
            for step, value in zip(*curve, strict=True):
                rows.append(identity | {"step": int(step), "metric": metric, "value": value})
    return rows


def success_rows(run_set: RunSet) -> list[dict[str, Any]]:
    rows = []
    for run in run_set.runs:
        if run.eval is None:
            continue
        for policy, result in run.eval.closed_loop.items():
            successes, n = result.successes, result.n
            low, high = wilson_interval(successes, n, CONFIDENCE)
            rows.append(
                _identity(run_set, run)
                | {"step": run.eval.step, "policy": policy, "n": n, "successes": successes}
                | {"success_rate": successes / n, "wilson_low": low, "wilson_high": high}
                | {"confidence": CONFIDENCE}
            )
    return rows


def drift_rows(run_set: RunSet) -> list[dict[str, Any]]:
    rows = []
    for run in run_set.runs:
        for (mode, regime, metric), values in drift_curves(run).items():
            identity = _identity(run_set, run) | {"mode": mode, "regime": regime}
            for horizon, value in enumerate(values, start=1):
                rows.append(identity | {"metric": metric, "horizon": horizon, "value": value})
    return rows


def speed_rows(run_set: RunSet) -> list[dict[str, Any]]:
    rows = []
    for run in run_set.runs:
        if run.eval is None:
            continue
        for mode in SPEED_MODES:
            speed = run.eval.speed.get(mode)
            if speed is None:
                continue
            rows.append(
                _identity(run_set, run)
                | {"mode": mode}
                | {key: speed.value(key) for key in SPEED_KEYS}
                | {"passes_per_chunk": json.dumps(speed.passes_per_chunk)}
                | {"mcp_parallel_speedup": run.eval.mcp_parallel_speedup}
            )
    return rows


TABLES: dict[str, Callable[[RunSet], list[dict[str, Any]]]] = {
    "runs.csv": runs_rows,
    "curves.csv": curves_rows,
    "success.csv": success_rows,
    "drift.csv": drift_rows,
    "speed.csv": speed_rows,
}


# ------------------------------------------------------------------ writing
def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV with the union of the rows' keys as columns, in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_aggregate(run_set: RunSet, summary: Summary) -> Path:
    """The CSVs and ``summary.json`` into ``<sweep>/aggregate/``; returns that folder."""
    folder = run_set.sweep_dir / AGGREGATE_DIR
    for name, rows in TABLES.items():
        atomic.write_text(folder / name, csv_text(rows(run_set)))
    text = json.dumps(summary.to_dict(), indent=2) + "\n"
    atomic.write_text(folder / SUMMARY_FILE, text)
    return folder
