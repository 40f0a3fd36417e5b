"""A sweep's run folders as tidy CSVs and ``summary.json`` (``python -m experiments.aggregate``).

``write_aggregate`` writes ``<sweep>/aggregate/``: ``runs.csv`` (one row per run folder,
missing ones included), ``curves.csv`` (long format: validation losses and closed-loop
success against steps), ``success.csv`` (final closed-loop success per run and policy, with n
and a Wilson interval), ``drift.csv``, ``speed.csv`` and ``summary.json`` (:class:`Summary`).

The rules (README, "Reproducing Next Forcing"), computed with ``worldmodel.evaluation.statistics``:
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
- Per run (``Summary.run_values``): final results, success curve, cost per step, speed
  ratio: what the claims pair by (task, setting, fps, seed).
Every entry lists the run folders it came from (relative to the sweep folder).

The parts: ``summary`` (quantity names, grouping, intervals, :class:`Summary`), ``estimates``
(final numbers and the depth curve), ``curves`` (training curves, convergence, drift),
``tables`` (the CSVs, run records, provenance), ``run_values`` (per-run numbers for pairing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from experiments.results.curves import convergence_entries, curve_entries, drift_entries
from experiments.results.entries import MissingRun, SummarySettings
from experiments.results.estimates import depth_entries, estimate_entries
from experiments.results.run_folders import AGGREGATE_DIR, Run, RunFolderError, RunSet, load_runs
from experiments.results.run_values import run_values
from experiments.results.summary import (
    DEFAULT_BASELINE,
    DEFAULT_REPS,
    LOSS,
    SUCCESS,
    SUMMARY_FILE,
    Bootstrap,
    Summary,
    group_runs,
)
from experiments.results.tables import TABLES, csv_text, provenance, run_record
from worldmodel import atomic


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
        settings=SummarySettings(
            baseline=baseline,
            late_step=late_step,
            bootstrap_reps=bootstrap.reps,
            confidence=bootstrap.confidence,
            bootstrap_seed=bootstrap.seed,
            success_metric=SUCCESS,
            loss_metric=LOSS,
            frame_rates=frame_rate_names(run_set.runs),
        ),
        provenance=provenance(run_set),
        runs=[run_record(run_set, run) for run in run_set.runs],
        estimates=estimate_entries(groups, run_set, bootstrap),
        curves=curves,
        convergence=convergence_entries(curves, baseline, late_step),
        drift=drift_entries(groups, run_set, bootstrap),
        missing=[
            MissingRun(path=run_set.relative(m.path), scope=m.scope, reason=m.reason)
            for m in run_set.missing
        ],
        notes=notes,
        depth=depth_entries(groups, run_set, bootstrap),
        run_values=[run_values(run_set, run) for run in run_set.runs],
    )


def frame_rate_names(runs: Sequence[Run]) -> dict[str, str]:
    """fps label -> its meaning (``FrameRate.describe``); RunFolderError when runs of one label
    differ in what it means (another frames_per_latent or chunk size): they are not one axis."""
    names: dict[str, str] = {}
    for run in sorted(runs, key=lambda r: r.fps):
        name = run.frame_rate.describe(run.K)
        if names.setdefault(f"{run.fps:g}", name) != name:
            raise RunFolderError(
                f"runs at fps {run.fps:g} differ in their frame rate ({names[f'{run.fps:g}']} vs "
                f"{name}, e.g. {run.path}); aggregate them in separate sweeps"
            )
    return names


def write_aggregate(run_set: RunSet, summary: Summary) -> Path:
    """The CSVs and ``summary.json`` into ``<sweep>/aggregate/``; returns that folder."""
    folder = run_set.sweep_dir / AGGREGATE_DIR
    for name, rows in TABLES.items():
        atomic.write_text(folder / name, csv_text(rows(run_set)))
    text = json.dumps(summary.to_dict(), indent=2) + "\n"
    atomic.write_text(folder / SUMMARY_FILE, text)
    return folder
