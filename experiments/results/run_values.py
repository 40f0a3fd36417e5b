"""The numbers of one run that paired comparisons need (``Summary.run_values``, entries
:class:`~experiments.results.entries.RunValues`): the claims pair runs of the same task,
setting, fps and seed, so they read these entries of ``summary.json``, not the run folders."""

from __future__ import annotations

import numpy as np

from experiments.results.entries import RunValues
from experiments.results.run_folders import Run, RunSet
from experiments.results.summary import BUDGET_KEYS, SUCCESS


def run_values(run_set: RunSet, run: Run) -> RunValues:
    """The :class:`RunValues` of a read run."""
    curve = run.curve(SUCCESS)
    return RunValues(
        path=run_set.relative(run.path),
        variant=run.variant,
        task=run.task,
        setting=run.setting,
        fps=run.fps,
        seed=run.seed,
        final={} if run.eval is None else dict(run.eval.closed_loop),
        success_curve=[] if curve is None else np.stack(curve, axis=1).tolist(),
        cost_per_step={key: _cost_per_step(run, key) for key in BUDGET_KEYS},
        mcp_parallel_speedup=None if run.eval is None else run.eval.mcp_parallel_speedup,
    )


def _cost_per_step(run: Run, key: str) -> float | None:
    """The run's mean running total ``key`` per training step; None if never logged."""
    curve = run.curve(key)
    if curve is None or curve[0][-1] <= 0:
        return None
    return float(curve[1][-1] / curve[0][-1])
