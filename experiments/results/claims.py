"""The Next Forcing paper's headline claims beside our measurement, with a verdict.

Every number is computed here from ``summary.json``'s per-run entries
(``experiments.results.run_values``): final closed-loop success, success at a training step
from the periodic evaluations, cost per step, the inference speedup. Comparisons pair runs
of the same (task, setting, fps, seed); intervals are percentile bootstraps over those pairs
(95%, ``worldmodel.evaluation.statistics``).

Verdicts: ``reproduced`` when the interval of the effect lies on the paper's side of the
threshold, ``not reproduced`` when it lies on the other side (or the measurement shows no
effect at all, e.g. neither model ever succeeds), ``inconclusive`` when the interval spans
the threshold (too few seeds or episodes at this scale), ``not measured`` when the scale has
no runs for it. The reason column says which. Fewer than ``MIN_PAIRS`` pairs (or runs) never
give ``reproduced``: a bootstrap over one or two pairs has no width to speak of.

The claim steps are the paper's: the early step ("61.6% vs 31.9% at 5k steps") and the late
step (the baseline's 45k-step success that "2.3x faster convergence" is measured against) at
10% and 90% of training (``ScalePreset.early`` / ``late``); each row names the steps it used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from experiments.results.entries import RunValues
from experiments.results.eval_file import MODE_POLICIES
from worldmodel.evaluation.statistics import (
    Interval,
    bootstrap_ci,
    convergence_speedup,
    mean_curve,
    paired_relative_improvement_ci,
    pairs_for_power,
    resampled_ci,
)

REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
INCONCLUSIVE, NOT_MEASURED = "inconclusive", "not measured"
SPEEDUP_THRESHOLD = 1.5  # "about 2x": a lower bound above 1.5 counts as reproduced
SUCCESS_TOLERANCE = 0.03  # "at 1-3 points of success"
MIN_PAIRS = 3  # fewer pairs never reproduce a claim
EARLY_SUCCESS_FLOOR = 0.05  # below it in both models, the early ratio is said to be near zero


@dataclass
class Claim:
    claim: str  # what the paper says
    paper: str  # its numbers
    ours: str  # our measurement with its interval and counts
    verdict: str
    reason: str


def _pairs(
    runs: Sequence[RunValues], base: str, variant: str, setting: str | None, fps: float | None
) -> list[tuple[RunValues, RunValues]]:
    """(baseline, variant) runs of the same task, setting, fps and seed."""
    keyed = {
        (r.variant, r.task, r.setting, r.fps, r.seed): r
        for r in runs
        if (setting is None or r.setting == setting) and (fps is None or r.fps == fps)
    }
    return [
        (run, keyed[(variant, *key[1:])])
        for key, run in sorted(keyed.items(), key=lambda kv: str(kv[0]))
        if key[0] == base and (variant, *key[1:]) in keyed
    ]


def final_success(run: RunValues, policy: str = "model") -> tuple[float, int, int] | None:
    """(success rate, successes, episodes) of the run's final closed-loop evaluation."""
    outcome = run.final.get(policy)
    if outcome is None:
        return None
    return outcome.success_rate, outcome.successes, outcome.n


def _fmt(interval: Interval, scale: float = 100.0, unit: str = "") -> str:
    return (
        f"{interval.point * scale:.1f}{unit} "
        f"[{interval.low * scale:.1f}, {interval.high * scale:.1f}]"
    )


def too_few(count: int, verdict: str, reason: str) -> tuple[str, str]:
    """``(verdict, reason)``, with ``reproduced`` turned ``inconclusive`` below MIN_PAIRS."""
    if verdict == REPRODUCED and count < MIN_PAIRS:
        return INCONCLUSIVE, f"{reason}, but only {count} pair(s): {MIN_PAIRS} or more needed"
    return verdict, reason


def interval_verdict(interval: Interval, threshold: float, higher_is_paper: bool = True) -> str:
    if (interval.low > threshold) if higher_is_paper else (interval.high < threshold):
        return REPRODUCED
    if (interval.high <= threshold) if higher_is_paper else (interval.low >= threshold):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def success_claim(
    runs: Sequence[RunValues], base: str, variant: str, setting: str, fps: float, paper: str
) -> Claim:
    """Final success of ``variant`` above ``base`` in ``setting`` (pairs over tasks, seeds)."""
    claim = f"{setting.capitalize()} success: Next Forcing above LingBot-VA"
    runs_of = _pairs(runs, base, variant, setting, fps)
    pairs = [(final_success(b), final_success(v)) for b, v in runs_of]
    tasks = len({b.task for (b, _), (fb, fv) in zip(runs_of, pairs, strict=True) if fb and fv})
    pairs = [(b, v) for b, v in pairs if b is not None and v is not None]
    if not pairs:
        return Claim(claim, paper, "-", NOT_MEASURED, f"no evaluated {setting} runs at this scale")
    base_sr = bootstrap_ci([b[0] for b, _ in pairs])
    var_sr = bootstrap_ci([v[0] for _, v in pairs])
    diff = bootstrap_ci([v[0] - b[0] for b, v in pairs])
    episodes = sum(b[2] + v[2] for b, v in pairs)
    ours = (
        f"{_fmt(var_sr)} vs {_fmt(base_sr)}; difference {_fmt(diff, unit=' pts')} "
        f"({len(pairs)} task-seed pairs, {episodes} episodes, fps {fps:g})"
    )
    if base_sr.point == 0 and var_sr.point == 0:
        return Claim(claim, paper, ours, NOT_REPRODUCED, "neither model succeeds at this scale")
    verdict = interval_verdict(diff, 0.0)
    reason = {
        REPRODUCED: "the interval of the difference is above 0",
        NOT_REPRODUCED: "the interval of the difference is at or below 0",
        INCONCLUSIVE: "the interval of the difference spans 0",
    }[verdict]
    if verdict == INCONCLUSIVE:
        reason += "; " + power_note([v[0] - b[0] for b, v in pairs], tasks)
    return Claim(claim, paper, ours, *too_few(len(pairs), verdict, reason))


def power_note(differences: Sequence[float], tasks: int) -> str:
    """How many seeds would tell the measured paired difference apart from 0."""
    if len(differences) < 2:
        return "one pair: no spread to estimate the seeds needed"
    needed = pairs_for_power(differences)
    if needed is None:
        return "the measured difference is 0: no number of seeds detects it"
    per_task = math.ceil(needed / max(tasks, 1))
    return (
        f"at the measured spread, ~{needed} task-seed pairs ({per_task} seeds per task) would "
        "detect this difference with 80% power"
    )


def relative_improvement_claim(
    runs: Sequence[RunValues], base: str, variant: str, fps: float, step: int
) -> Claim:
    """(SR_nf - SR_base) / SR_base at ``step``, randomized, at ``fps``; bootstrap over pairs."""
    claim = f"Relative improvement at the early step ({step} here), {fps:g} fps, randomized"
    paper = "61.6% vs 31.9% at 5k steps: +93.1%"
    pairs = [
        (b.success_at(step), v.success_at(step))
        for b, v in _pairs(runs, base, variant, "randomized", fps)
    ]
    pairs = [(b, v) for b, v in pairs if b is not None and v is not None]
    if not pairs:
        return Claim(claim, paper, "-", NOT_MEASURED, f"no randomized {fps:g} fps curves")
    base_sr, var_sr = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    ours = f"{var_sr.mean() * 100:.1f}% vs {base_sr.mean() * 100:.1f}% ({len(pairs)} pairs)"
    if base_sr.mean() == 0:
        verdict = NOT_REPRODUCED if var_sr.mean() == 0 else INCONCLUSIVE
        return Claim(claim, paper, ours, verdict, "the baseline's success is 0: undefined ratio")
    interval = paired_relative_improvement_ci(base_sr, var_sr)
    ours += f": {_fmt(interval, unit='%')}"
    verdict = interval_verdict(interval, 0.0)
    reason = "interval of the relative improvement vs 0"
    if max(base_sr.mean(), var_sr.mean()) < EARLY_SUCCESS_FLOOR:
        reason += (
            f"; at this step neither model succeeds in {EARLY_SUCCESS_FLOOR:.0%} of episodes, so "
            "the ratio compares near-zero rates"
        )
    return Claim(claim, paper, ours, *too_few(len(pairs), verdict, reason))


BUDGETS = {  # convergence compared at equal ...: the metrics key of its running total
    "steps": "",
    "samples": "perf/samples",
    "FLOPs": "perf/flops",
    "training wall-clock": "perf/wall_seconds",
}


def cost_per_step(run: RunValues, budget: str) -> float | None:
    """The run's mean ``budget`` per training step (1 for steps); None if never logged."""
    key = BUDGETS[budget]
    return run.cost_per_step.get(key) if key else 1.0


def convergence_claim(
    runs: Sequence[RunValues],
    base: str,
    variant: str,
    fps: float,
    late_step: int,
    budget: str = "steps",
) -> Claim:
    """Steps the baseline needs to reach its own success at ``late_step``, over the variant's
    steps; at a ``budget`` other than steps both are converted with each variant's measured
    cost per step (a Next Forcing step costs more FLOPs and time than a baseline step)."""
    matched = "" if budget == "steps" else f", at matched {budget}"
    claim = (
        f"Faster convergence (closed-loop success curves, {fps:g} fps, randomized{matched}; "
        f"target: the baseline's success at step {late_step})"
    )
    paper = "baseline's 45k-step success reached at 20k: 2.3x" if budget == "steps" else "-"
    pairs = _pairs(runs, base, variant, "randomized", fps)
    paired = [
        (
            b.curve(),
            v.curve(),
            cost_per_step(b, budget),
            cost_per_step(v, budget),
        )
        for b, v in pairs
    ]
    curves = [c for c in paired if None not in c]
    if not curves:
        return Claim(claim, paper, "-", NOT_MEASURED, f"no randomized {fps:g} fps curves")

    def speedup(chosen: Sequence[int]):
        base_steps, base_values = mean_curve([curves[i][0] for i in chosen])
        var_steps, var_values = mean_curve([curves[i][1] for i in chosen])
        late = min(float(late_step), float(base_steps[-1]))
        result = convergence_speedup(base_steps, base_values, var_steps, var_values, late)
        if result.speedup is None:
            return result
        base_cost = np.mean([curves[i][2] for i in chosen])
        cost = base_cost / np.mean([curves[i][3] for i in chosen])  # baseline / variant
        return dataclasses.replace(result, speedup=result.speedup * float(cost))

    point = speedup(range(len(curves)))
    ours = (
        f"baseline reaches {point.target * 100:.1f}% at step {point.base_steps_to_target:g}; "
        f"Next Forcing at {_steps(point.variant_steps_to_target)} ({len(curves)} pairs)"
    )
    if budget != "steps":
        ratio = np.mean([c[3] for c in curves]) / np.mean([c[2] for c in curves])
        ours += f"; a Next Forcing step costs {ratio:.2f}x the baseline's {budget}"
    if point.target == 0:
        reason = "the baseline never succeeds here: there is no late success to converge to"
        return Claim(claim, paper, ours, NOT_REPRODUCED, reason)
    if point.speedup is None:
        verdict = NOT_REPRODUCED if point.variant_steps_to_target is None else INCONCLUSIVE
        return Claim(claim, paper, ours, verdict, point.reason or "speedup undefined")
    # a resample where the variant never reaches the target counts as 0x
    interval = resampled_ci(len(curves), lambda c: speedup(c).speedup or 0.0, point.speedup)
    ours += f": {interval.point:.2f}x [{interval.low:.2f}, {interval.high:.2f}]"
    verdict = interval_verdict(interval, 1.0)
    return Claim(
        claim, paper, ours, *too_few(len(curves), verdict, "interval of the speedup vs 1x")
    )


def _steps(value: float | None) -> str:
    return "never (not reached)" if value is None else f"step {value:g}"


def speed_claim(runs: Sequence[RunValues], variant: str) -> Claim:
    """mcp_parallel / standard control rate of the variant's runs, and the success cost."""
    claim = "mcp_parallel inference: about 2x faster at 1-3 points of success"
    paper = "~2x, success within 1-3 points"
    rows = [
        (
            r.mcp_parallel_speedup,
            final_success(r, MODE_POLICIES["standard"]),
            final_success(r, MODE_POLICIES["mcp_parallel"]),
        )
        for r in runs
        if r.variant == variant
    ]
    rows = [(s, a, b) for s, a, b in rows if s is not None and a is not None and b is not None]
    if not rows:
        return Claim(claim, paper, "-", NOT_MEASURED, "no run evaluated in both modes")
    ratio = bootstrap_ci([s for s, _, _ in rows])
    cost = bootstrap_ci([b[0] - a[0] for _, a, b in rows])
    ours = (
        f"{ratio.point:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]; success change "
        f"{_fmt(cost, unit=' pts')} ({len(rows)} runs, same machine per run)"
    )
    speed = interval_verdict(ratio, SPEEDUP_THRESHOLD)
    within = max(abs(cost.low), abs(cost.high)) <= SUCCESS_TOLERANCE
    outside = min(abs(cost.low), abs(cost.high)) > SUCCESS_TOLERANCE and cost.low * cost.high > 0
    if speed == REPRODUCED and within:
        reason = "speedup above 1.5x, success within 3 pts"
        return Claim(claim, paper, ours, *too_few(len(rows), REPRODUCED, reason))
    if speed == NOT_REPRODUCED or outside:
        reason = (
            "speedup interval at or below 1.5x"
            if speed == NOT_REPRODUCED
            else ("success changes by more than 3 points")
        )
        return Claim(claim, paper, ours, NOT_REPRODUCED, reason)
    return Claim(claim, paper, ours, INCONCLUSIVE, "an interval spans its threshold")


def next_forcing_claims(
    runs: Sequence[RunValues],
    base: str,
    variant: str,
    fps: Sequence[float],
    early_step: int,
    late_step: int,
) -> list[Claim]:
    """The four headline claims of Next Forcing, measured on ``runs`` (``fps`` in the paper's
    units: its "50 fps" claims are read at fps 50)."""
    main_fps, high_fps = min(fps), max(fps)
    return [
        success_claim(runs, base, variant, "clean", main_fps, "94.1 vs 92.9"),
        *(success_claim(runs, base, variant, "randomized", f, "93.5 vs 91.5") for f in fps),
        relative_improvement_claim(runs, base, variant, high_fps, early_step),
        *(
            convergence_claim(runs, base, variant, f, late_step, budget)
            for f in sorted(fps, reverse=True)
            for budget in BUDGETS
        ),
        speed_claim(runs, variant),
    ]


def claims_table(claims: Sequence[Claim], scale: str) -> str:
    """Markdown: claim | paper | ours | verdict | reason."""
    lines = [
        f"| claim | paper | ours (scale {scale}) | verdict | reason |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {c.claim} | {c.paper} | {c.ours} | **{c.verdict}** | {c.reason} |" for c in claims
    ]
    return "\n".join(lines)
