"""The tidy CSVs of ``<sweep>/aggregate/`` (one row per run, step, policy, horizon or mode),
the run records and the provenance of ``summary.json``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from experiments.results.curves import drift_curves
from experiments.results.entries import CommitGroup, Provenance
from experiments.results.eval_file import SPEED_KEYS, SPEED_MODES
from experiments.results.run_folders import SCOPE_EVAL, Run, RunSet
from experiments.results.summary import CONFIDENCE, CURVES_CSV_KEYS
from worldmodel.evaluation.statistics import wilson_interval


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
        "mcp_depth": run.mcp_depth,
    }


def versions_label(versions: dict[str, str]) -> str:
    """``"mujoco 3.3.0, python 3.12.3, torch 2.13.0"``; "unknown" for runs that predate it."""
    return ", ".join(f"{name} {v}" for name, v in sorted(versions.items())) or "unknown"


def provenance(run_set: RunSet) -> Provenance:
    """The git commits and library versions the aggregated runs were trained with, with
    their dirty runs: one entry per (commit, versions)."""
    commits: dict[tuple[str, str], dict[str, Any]] = {}
    for run in run_set.runs:
        key = (run.git_commit, versions_label(run.versions))
        entry = commits.setdefault(key, {"runs": 0, "dirty_runs": []})
        entry["runs"] += 1
        if run.git_dirty:
            entry["dirty_runs"].append(run_set.relative(run.path))
    return Provenance(
        commits=[
            CommitGroup(commit=commit, versions=label, **v)
            for (commit, label), v in sorted(commits.items())
        ],
        any_dirty=any(run.git_dirty for run in run_set.runs),
        runs_used=len(run_set.runs),
        runs_missing=sum(m.scope != SCOPE_EVAL for m in run_set.missing),
        runs_without_eval=sum(m.scope == SCOPE_EVAL for m in run_set.missing),
    )


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
    for run in run_set.evaluated:
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
    for run in run_set.evaluated:
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


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV with the union of the rows' keys as columns, in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
