"""Curves with bands: training curves against steps with their budgets, the convergence of
each variant against the baseline, and drift against the horizon: ``Summary.curves``,
``.convergence`` and ``.drift``."""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.results.entries import Convergence, Curve, DriftCurve, RelativeImprovement
from experiments.results.run_folders import GroupKey, Run, RunSet
from experiments.results.summary import (
    ACROSS_TASKS,
    BUDGET_KEYS,
    CONVERGENCE_METRICS,
    CURVE_METRICS,
    PER_SEED,
    SUCCESS,
    Bootstrap,
    pooled_groups,
)
from worldmodel.evaluation.statistics import convergence_speedup, mean_curve, relative_improvement


def bands_over_seeds(matrix: np.ndarray, bootstrap: Bootstrap) -> dict[str, list[float]]:
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
) -> list[Curve]:
    """Per group and curve metric the mean over seeds at common steps with bootstrap bands;
    per (variant, setting, fps) of two or more tasks the IQM success curve."""
    entries = []

    def add(key: GroupKey, metric: str, statistic: str, steps, bands, runs: list[Run]) -> None:
        success = metric == SUCCESS
        entries.append(
            Curve(
                metric=metric,
                **key._asdict(),
                statistic=statistic,
                steps=steps.tolist(),
                **bands,
                **(episode_counts(runs, steps) if success else {}),
                budgets=budget_curves(runs, steps) if success else {},
                n_runs=len(runs),
                runs=[run_set.relative(run.path) for run in runs],
            )
        )

    for key, runs in groups.items():
        for metric in CURVE_METRICS:
            members = [run for run in runs if run.curve(metric) is not None]
            if not members:
                continue
            curves = [run.curve(metric) for run in members]
            steps, _ = mean_curve(curves)
            bands = bands_over_seeds(_aligned(curves, steps), bootstrap)
            add(key, metric, PER_SEED, steps, bands, members)
    for key, tasks in pooled_groups(groups).items():
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
        add(key, SUCCESS, ACROSS_TASKS, steps, bands, everyone)
    return entries


def convergence_entries(
    curves: list[Curve], baseline: str, late_step: float | None
) -> list[Convergence]:
    """Every variant's curve against the baseline's curve of the same task, setting, fps
    and metric (success and validation loss)."""
    index = {(c.variant, c.task, c.setting, c.fps, c.metric): c for c in curves}
    if not any(c.variant == baseline for c in curves):
        return []
    entries = []
    for curve in curves:
        if curve.variant == baseline or curve.metric not in CONVERGENCE_METRICS:
            continue
        base = index.get((baseline, curve.task, curve.setting, curve.fps, curve.metric))
        entries.append(compare_curves(base, curve, baseline, late_step))
    return entries


def compare_curves(
    base: Curve | None, variant: Curve, baseline: str, late_step: float | None
) -> Convergence:
    """Relative improvement per common step and convergence speed-up of one variant curve
    against the baseline curve (None values with a reason where undefined)."""
    higher_is_better = CURVE_METRICS[variant.metric]
    entry: dict[str, Any] = {
        "metric": variant.metric,
        "variant": variant.variant,
        "baseline": baseline,
        "task": variant.task,
        "setting": variant.setting,
        "fps": variant.fps,
        "statistic": variant.statistic,
        "higher_is_better": higher_is_better,
        "runs": variant.runs,
        "baseline_runs": [] if base is None else base.runs,
    }
    if base is None:
        return Convergence(**entry, reason=f"no {baseline} runs of this task, setting and fps")
    common = np.intersect1d(base.steps, variant.steps)
    if common.size == 0:
        reason = "the baseline and the variant share no evaluation step"
        return Convergence(**entry, reason=reason)
    late = float(common[-1]) if late_step is None else float(late_step)
    entry["late_step"] = late
    try:
        speedup = convergence_speedup(
            base.steps, base.point, variant.steps, variant.point, late, higher_is_better
        )
        entry |= speedup.to_dict()
    except ValueError as exc:
        entry["reason"] = str(exc)
    by_step = [_relative(step, variant, base) for step in common.tolist()]
    return Convergence(
        **entry, relative_improvement=by_step[-1], relative_improvement_by_step=by_step
    )


def _relative(step: float, variant: Curve, base: Curve) -> RelativeImprovement:
    """Relative improvement of the variant curve over the base curve at a step they share,
    with both values and, for success, both episode counts."""
    values: dict[str, Any] = {}
    for name, curve in (("variant", variant), ("base", base)):
        i = curve.steps.index(step)
        values[name] = curve.point[i]
        if curve.episodes is not None:
            values[f"{name}_episodes"] = curve.episodes[i]
    if values["base"] <= 0:
        value, reason = None, f"the baseline is {values['base']:g} at step {step:g}: undefined"
    else:
        value, reason = relative_improvement(values["variant"], values["base"]), ""
    return RelativeImprovement(step=step, **values, value=value, reason=reason)


def drift_curves(run: Run) -> dict[tuple[str, str, str], list[float]]:
    """(mode, regime, metric) -> mean over episodes per horizon, from the run's eval.json."""
    return {} if run.eval is None else run.eval.drift


def drift_entries(
    groups: dict[GroupKey, list[Run]], run_set: RunSet, bootstrap: Bootstrap
) -> list[DriftCurve]:
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
                DriftCurve(
                    metric=metric,
                    **key._asdict(),
                    mode=mode,
                    regime=regime,
                    statistic=PER_SEED,
                    horizon=list(range(1, horizon + 1)),
                    **bands_over_seeds(matrix, bootstrap),
                    n_runs=len(members),
                    runs=[run_set.relative(r.path) for r in members],
                )
            )
    return entries
