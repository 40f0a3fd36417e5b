"""The numbers of one run that paired comparisons need (``Summary.run_values``): the claims
pair runs of the same task, setting, fps and seed, so they read these entries of
``summary.json``, not the run folders."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from experiments.results.eval_file import PolicyResult
from experiments.results.run_folders import Run, RunSet
from experiments.results.summary import BUDGET_KEYS, SUCCESS
from worldmodel.evaluation.statistics import value_at


@dataclass(frozen=True)
class RunValues:
    """One run: its identity, final closed-loop results, periodic success curve, cost per
    training step and inference speedup."""

    path: str
    variant: str
    task: str
    setting: str
    fps: float
    seed: int
    final: dict[str, PolicyResult] = field(default_factory=dict)  # policy -> final eval
    success_curve: list[list[float]] = field(default_factory=list)  # [[step, success], ...]
    cost_per_step: dict[str, float | None] = field(default_factory=dict)  # BUDGET_KEYS
    mcp_parallel_speedup: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunValues:
        final = {policy: PolicyResult(**r) for policy, r in values.get("final", {}).items()}
        return cls(**{**values, "final": final})

    def curve(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(steps, success rates)`` of the periodic closed-loop evaluations; None without."""
        if not self.success_curve:
            return None
        points = np.asarray(self.success_curve, dtype=float)  # (evaluations, 2)
        return points[:, 0], points[:, 1]

    def success_at(self, step: float) -> float | None:
        """Success interpolated at ``step``; None outside the evaluated steps."""
        curve = self.curve()
        if curve is None or not curve[0][0] <= step <= curve[0][-1]:
            return None
        return value_at(curve[0], curve[1], step)


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


def read_run_values(entries: list[dict[str, Any]]) -> list[RunValues]:
    """``Summary.run_values`` (as ``summary.json`` holds them) as :class:`RunValues`."""
    return [RunValues.from_dict(entry) for entry in entries]
