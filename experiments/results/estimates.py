"""Final numbers per run (success per policy, final losses, speeds), their mean over seeds
per group and IQM across tasks, and the depth curve (final success and the area under the
success curve, at matched steps and at the baseline's FLOPs): ``Summary.estimates`` and
``.depth``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from experiments.results.entries import DepthPoint, Estimate
from experiments.results.eval_file import SPEED_KEYS, SPEED_MODES
from experiments.results.run_folders import GroupKey, Run, RunFolderError, RunSet
from experiments.results.summary import (
    ACROSS_TASKS,
    DEPTH_QUANTITIES,
    FINAL_LOSSES,
    MATCHED_FLOPS,
    PER_SEED,
    POOLED_PREFIXES,
    SPEEDUP,
    SUCCESS,
    SUCCESS_AT,
    SUCCESS_AUC,
    Bootstrap,
    pooled_groups,
)
from worldmodel.evaluation.statistics import Interval, mean_over_span, value_at


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
) -> list[Estimate]:
    """Per group every quantity over seeds; then the IQM across tasks of the pooled ones."""
    values = {run.path: run_quantities(run) for runs in groups.values() for run in runs}
    entries = []
    for key, runs in groups.items():
        for quantity in sorted({q for run in runs for q in values[run.path]}):
            members = [run for run in runs if quantity in values[run.path]]
            interval = bootstrap.over_seeds([values[run.path][quantity] for run in members])
            fields = _estimate(quantity, PER_SEED, interval, members, run_set)
            entries.append(Estimate(**key._asdict(), **fields))
    for key, tasks in pooled_groups(groups).items():
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
            fields = _estimate(quantity, ACROSS_TASKS, interval, used, run_set)
            entries.append(Estimate(**key._asdict(), **fields, tasks=sorted(scores)))
    return entries


def _estimate(
    quantity: str, statistic: str, interval: Interval, runs: list[Run], run_set: RunSet
) -> dict[str, Any]:
    """The fields an :class:`Estimate` and a :class:`DepthPoint` share, for ``runs``."""
    entry = {"quantity": quantity, "statistic": statistic, **interval.to_dict()}
    entry |= {"n_runs": len(runs), "seeds": sorted({run.seed for run in runs})}
    if quantity.startswith("success/"):
        policy = quantity.removeprefix("success/")
        counts = [run.eval.closed_loop[policy] for run in runs]
        entry["successes"] = sum(c.successes for c in counts)
        entry["episodes"] = sum(c.n for c in counts)
    entry["runs"] = [run_set.relative(run.path) for run in runs]
    return entry


def _check_one_heads_family(by_depth: dict[int, list[Run]], where: str) -> None:
    """RunFolderError when a depth curve would mix chained heads that differ in more than
    their depth (and its loss weights): say next_forcing and chain_last_layer runs."""
    family: dict[str, Run] = {}
    for depth, runs in by_depth.items():
        for run in runs if depth else []:
            heads = replace(run.heads_config, mcp_depth=0, loss_weights=None)
            family.setdefault(repr(heads), run)
    if len(family) > 1:
        first, second = list(family.values())[:2]
        raise RunFolderError(
            f"the depth curve of {where} would mix heads that differ in more than their depth "
            f"({first.path} and {second.path}); aggregate each kind of heads separately"
        )


def depth_entries(
    groups: dict[GroupKey, list[Run]], run_set: RunSet, bootstrap: Bootstrap
) -> list[DepthPoint]:
    """The depth curve per (task, setting, fps) whose runs have three or more MCP depths D
    (D=0 and the chained ``mcp`` heads only): per D and each of ``DEPTH_QUANTITIES``, the mean
    over seeds with its bootstrap interval (``depth_quantities`` for the measures)."""
    slices: dict[tuple, dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for key, runs in groups.items():
        for run in runs:
            if run.eval is not None and (run.mcp_depth == 0 or run.heads_config.chained_mcp):
                slices[(key.task, key.setting, key.fps)][run.mcp_depth].append(run)
    entries = []
    for (task, setting, fps), by_depth in sorted(slices.items()):
        if len(by_depth) < 3:
            continue
        _check_one_heads_family(by_depth, f"{task} {setting} fps {fps:g}")
        budget = _baseline_flops(by_depth.get(0, []))
        for depth, runs in sorted(by_depth.items()):
            values = [depth_quantities(run, budget) for run in runs]
            for quantity in DEPTH_QUANTITIES:
                members = [
                    (r, v[quantity]) for r, v in zip(runs, values, strict=True) if quantity in v
                ]
                if not members:
                    continue
                interval = bootstrap.over_seeds([value for _, value in members])
                used = [run for run, _ in members]
                fields = _estimate(quantity, PER_SEED, interval, used, run_set)
                entries.append(
                    DepthPoint(
                        task=task,
                        setting=setting,
                        fps=fps,
                        **fields,
                        depth=depth,
                        variants=sorted({r.variant for r in used}),
                    )
                )
    return entries


def depth_quantities(run: Run, baseline_flops: float | None) -> dict[str, float]:
    """One run's points of the depth curve (``DEPTH_QUANTITIES``): its final success, the area
    under its periodic success curve (as a mean success rate over training), and both at the
    baseline's training FLOPs, where a deeper run, whose step costs more, has trained fewer
    steps (``baseline_flops``: the D=0 runs' mean total; None when unknown)."""
    values = {}
    final = run_quantities(run).get("success/model")
    if final is not None:
        values["success/model"] = final
    curve = run.curve(SUCCESS)
    if curve is None:
        return values
    steps, success = curve
    values[SUCCESS_AUC] = mean_over_span(steps, success, steps[-1])
    flops = run.curve("perf/flops")
    if baseline_flops is None or flops is None or flops[0][-1] <= 0:
        return values
    matched = min(baseline_flops / (flops[1][-1] / flops[0][-1]), steps[-1])  # steps at budget
    if matched >= steps[0]:
        values[f"{SUCCESS_AT}{MATCHED_FLOPS}"] = value_at(steps, success, matched)
        values[f"{SUCCESS_AUC}{MATCHED_FLOPS}"] = mean_over_span(steps, success, matched)
    return values


def _baseline_flops(runs: list[Run]) -> float | None:
    """Mean total training FLOPs of the D=0 runs; None without any that logged them."""
    totals = [curve[1][-1] for run in runs if (curve := run.curve("perf/flops")) is not None]
    return float(np.mean(totals)) if totals else None
