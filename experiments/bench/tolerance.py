"""Expert tolerance to action errors: ``python -m experiments.bench tolerance``.

The scripted expert acts (physics only, no cameras) with every arm-joint target of its action
perturbed after ``expert.act()`` and before ``env.step`` (gripper commands untouched):

- ``bias``: a constant offset of ``magnitude`` rad, fixed for the episode, its sign drawn per
  joint and per episode;
- ``noise``: zero-mean Gaussian noise of standard deviation ``magnitude`` rad, drawn afresh at
  every control step.

Episodes run on the evaluation seeds ``EVAL_SEED_BASE, EVAL_SEED_BASE + 1, ...`` without
filtering for the expert's own success, so the magnitude-0 rows are the expert's clean rate.
Each episode's perturbations come from ``np.random.default_rng(seed)``: the run is
deterministic, and every magnitude scales the same draws. Reported per (task, kind,
magnitude): successes with a Wilson interval and the mean of each episode's highest progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from worldmodel.data.collection import EVAL_SEED_BASE
from worldmodel.evaluation.statistics import wilson_interval

KINDS = ("bias", "noise")
MAGNITUDES = (0.0, 0.01, 0.02, 0.05, 0.1)  # rad
ARM_TARGETS = np.r_[0:6, 7:13]  # action indices of the arm joints; 6 and 13 are the grippers
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ToleranceResult:
    """The expert's episodes on one task under one perturbation."""

    task: str
    setting: str
    kind: str
    magnitude: float  # rad
    seeds: list[int]
    success: list[bool]
    progress: list[float]  # each episode's highest info["progress"]

    @property
    def successes(self) -> int:
        return sum(self.success)

    @property
    def wilson(self) -> tuple[float, float]:
        return wilson_interval(self.successes, len(self.seeds), CONFIDENCE)

    @property
    def mean_progress(self) -> float:
        return float(np.mean(self.progress))

    def to_dict(self) -> dict[str, Any]:
        low, high = self.wilson
        return {
            "task": self.task,
            "setting": self.setting,
            "kind": self.kind,
            "magnitude": self.magnitude,
            "episodes": len(self.seeds),
            "successes": self.successes,
            "success_rate": self.successes / len(self.seeds),
            "wilson_low": low,
            "wilson_high": high,
            "confidence": CONFIDENCE,
            "mean_progress": self.mean_progress,
            "seeds": self.seeds,
            "success": self.success,
            "progress": self.progress,
        }


def perturbed_episode(
    env: TabletopEnv, expert: ScriptedExpert, seed: int, kind: str, magnitude: float
) -> tuple[bool, float]:
    """(success, highest progress) of the expert on ``seed`` with perturbed arm targets."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not valid; valid kinds: {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    bias = magnitude * rng.choice([-1.0, 1.0], size=ARM_TARGETS.size)
    _, info = env.reset(seed=seed)
    expert.reset()
    progress, done = info["progress"], False
    while not done:
        action = expert.act().astype(np.float64)
        action[ARM_TARGETS] += bias if kind == "bias" else rng.normal(0.0, magnitude, bias.size)
        _, _, terminated, truncated, info = env.step(action)
        progress = max(progress, info["progress"])
        done = terminated or truncated
    return bool(info["success"]), float(progress)


def run_tolerance_bench(
    tasks: Sequence[str],
    setting: str = "clean",
    magnitudes: Sequence[float] = MAGNITUDES,
    episodes: int = 12,
) -> list[ToleranceResult]:
    """One result per (task, kind, magnitude), in that order."""
    seeds = [EVAL_SEED_BASE + i for i in range(episodes)]
    results = []
    for task in tasks:
        env = TabletopEnv(task, setting, cameras=())
        expert = ScriptedExpert(env)
        for kind in KINDS:
            for magnitude in magnitudes:
                outcomes = [perturbed_episode(env, expert, s, kind, magnitude) for s in seeds]
                success, progress = (list(column) for column in zip(*outcomes, strict=True))
                results.append(
                    ToleranceResult(task, setting, kind, float(magnitude), seeds, success, progress)
                )
        env.close()
    return results


def _cells(result: ToleranceResult) -> str:
    """Success with its interval, then mean progress: two table cells."""
    low, high = result.wilson
    success = f"{result.successes}/{len(result.seeds)} [{low:.2f}, {high:.2f}]"
    return f"{success} | {result.mean_progress:.2f}"


def tolerance_table(results: Sequence[ToleranceResult]) -> str:
    """A markdown table: one row per (task, magnitude), success and progress per kind."""
    by_key = {(r.task, r.magnitude, r.kind): r for r in results}
    rows = list(dict.fromkeys((r.task, r.magnitude) for r in results))
    first = results[0]
    header = [
        f"setting {first.setting}, {len(first.seeds)} episodes per row (seeds "
        f"{first.seeds[0]}-{first.seeds[-1]}); success: successes/episodes "
        f"[{CONFIDENCE:.0%} Wilson interval]; progress: mean of each episode's highest",
        "",
        "| task | magnitude (rad) | "
        + " | ".join(f"{kind} success | {kind} progress" for kind in KINDS)
        + " |",
        "|---|---:|" + "---:|---:|" * len(KINDS),
    ]
    lines = [
        f"| {task} | {magnitude:g} | "
        + " | ".join(_cells(by_key[task, magnitude, kind]) for kind in KINDS)
        + " |"
        for task, magnitude in rows
    ]
    return "\n".join(header + lines)
