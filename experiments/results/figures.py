"""Figures of a sweep report, drawn from ``summary.json`` entries only (matplotlib, Agg).

One set per (setting, fps) slice of the sweep: closed-loop success against training steps
(a panel per task and, with two or more tasks, one of the IQM across tasks), the same
against training samples, FLOPs and wall-clock (matched budgets), validation losses against
steps, drift against the horizon (a row per task, a column per regime) and
inference speed. Lines are the summary's points and bands its intervals, so a figure shows
exactly the numbers of the tables. PNGs are written atomically (``media.write_image``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments.results.eval_file import SPEED_MODES
from experiments.results.summary import (
    ACROSS_TASKS,
    ALL_TASKS,
    CURVE_METRICS,
    MATCHED_FLOPS,
    SPEEDUP,
    SUCCESS,
    SUCCESS_AT,
    SUCCESS_AUC,
    Summary,
)
from worldmodel.evaluation.drift import METRICS as DRIFT_METRICS
from worldmodel.media import write_image

DPI = 100
PANEL = (340, 260)  # pixels of one panel (width, height)
MIN_WIDTH = 640  # pixels: room for the title when there is one panel
MAX_COLUMNS = 3
DRIFT_MODE = "standard"  # the inference mode whose drift is drawn (all modes are in drift.csv)


@dataclass(frozen=True)
class FigureFile:
    """A written figure: the report section it belongs to, its caption and its path."""

    section: str
    caption: str
    path: Path


Entry = Any  # an entry of experiments.results.entries


def slices(summary: Summary) -> list[tuple[str, float]]:
    """The (setting, fps) pairs of the sweep, sorted."""
    entries = [*summary.curves, *summary.drift, *summary.estimates]
    return sorted({(e.setting, e.fps) for e in entries})


def slice_name(setting: str, fps: float) -> str:
    return f"{setting}_fps{fps:g}"


def select(entries: Sequence[Entry], **match: Any) -> list[Entry]:
    """The summary entries whose fields equal ``match`` (e.g. ``setting="clean", fps=50``)."""
    return [e for e in entries if all(getattr(e, k) == v for k, v in match.items())]


def tasks_of(entries: Sequence[Entry]) -> list[str]:
    """Tasks in entry order, the across-task ``"all"`` last."""
    tasks = list(dict.fromkeys(e.task for e in entries if e.task != ALL_TASKS))
    return tasks + [ALL_TASKS] if any(e.task == ALL_TASKS for e in entries) else tasks


def _figure(panels: int, columns: int | None = None) -> tuple[Figure, list]:
    columns = columns or min(panels, MAX_COLUMNS)
    rows = math.ceil(panels / columns)
    width = max(columns * PANEL[0], MIN_WIDTH)
    figure = Figure(figsize=(width / DPI, rows * PANEL[1] / DPI), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for unused in axes[panels:]:
        unused.set_visible(False)
    return figure, axes[:panels]


def _save(figure: Figure, path: Path) -> Path:
    canvas = FigureCanvasAgg(figure)  # the constrained layout fits titles and legends
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3]  # (height, width, 3) uint8
    return write_image(path, image)


def _band(axes, entry: Entry, x: Sequence[float]) -> None:
    """The entry's point against ``x`` as a line and its interval as a shaded band,
    labelled by variant."""
    (line,) = axes.plot(x, entry.point, marker="o", markersize=3, label=entry.variant)
    axes.fill_between(x, entry.low, entry.high, color=line.get_color(), alpha=0.2, lw=0)


def _label_panel(ax, title: str, xlabel: str, ylabel: str) -> None:
    """Title, axis labels, grid and (when lines were drawn) the legend of one panel."""
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")


def _title(task: str, entries: Sequence[Entry]) -> str:
    if task != ALL_TASKS:
        return task
    return "all tasks (IQM)" if entries and entries[0].statistic == ACROSS_TASKS else task


def plot_steps(entries: Sequence[Entry], metric: str, path: Path) -> Path:
    """``metric`` against training steps: a panel per task, a line and band per variant."""
    tasks = tasks_of(entries)
    figure, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        panel = [e for e in entries if e.task == task]
        for entry in panel:
            _band(ax, entry, entry.steps)
        ax.set_title(_title(task, panel))
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    pooled = ", IQM across tasks in 'all tasks'" if ALL_TASKS in tasks else ""
    figure.suptitle(f"{metric}: mean over seeds and 95% interval{pooled}")
    return _save(figure, path)


BUDGET_AXES = {  # x of the matched-budget panels: entry key or budget key -> label, scale
    "steps": ("training steps", 1.0),
    "perf/samples": ("training samples", 1.0),
    "perf/flops": ("training FLOPs (PFLOP)", 1e-15),
    "perf/wall_seconds": ("training wall-clock (min)", 1 / 60),
}


def plot_budgets(entries: Sequence[Entry], path: Path) -> Path:
    """Success against each training budget: a row per task, a column per budget (steps,
    samples, FLOPs, wall-clock), so a variant whose step costs more is compared fairly."""
    tasks = tasks_of(entries)
    figure, axes = _figure(len(tasks) * len(BUDGET_AXES), columns=len(BUDGET_AXES))
    for i, (task, budget) in enumerate((t, b) for t in tasks for b in BUDGET_AXES):
        ax, (label, scale) = axes[i], BUDGET_AXES[budget]
        for entry in entries:
            if entry.task != task:
                continue
            x = entry.steps if budget == "steps" else entry.budgets.get(budget)
            if x is not None:
                _band(ax, entry, [v * scale for v in x])
        _label_panel(ax, _title(task, [e for e in entries if e.task == task]), label, SUCCESS)
    figure.suptitle(f"{SUCCESS} at matched budgets: mean over seeds and 95% interval")
    return _save(figure, path)


DEPTH_LINES = {  # summary.DEPTH_QUANTITIES -> legend
    "success/model": "final success",
    SUCCESS_AUC: "area under the success curve",
    f"{SUCCESS_AT}{MATCHED_FLOPS}": "success at the baseline's FLOPs",
    f"{SUCCESS_AUC}{MATCHED_FLOPS}": "area at the baseline's FLOPs",
}


def plot_depth(entries: Sequence[Entry], path: Path) -> Path:
    """The depth curve's measures against the MCP depth D, a panel per (task, fps), error bars
    from the intervals: where does the gain flatten, at matched steps and at matched FLOPs?"""
    panels = list(dict.fromkeys((e.task, e.setting, e.fps) for e in entries))
    figure, axes = _figure(len(panels))
    for ax, (task, setting, fps) in zip(axes, panels, strict=True):
        for quantity, label in DEPTH_LINES.items():
            rows = [
                e
                for e in entries
                if (e.task, e.setting, e.fps, e.quantity) == (task, setting, fps, quantity)
            ]
            if not rows:
                continue
            depths = np.array([e.depth for e in rows])
            point = np.array([e.point for e in rows])
            errors = [point - [e.low for e in rows], [e.high for e in rows] - point]
            ax.errorbar(depths, point, yerr=errors, marker="o", capsize=4, label=label)
            ax.set_xticks(depths)
        ax.set_title(f"{task} ({setting}, fps {fps:g})", fontsize="medium")
        ax.set_xlabel("MCP depth D (0 = no heads)")
        ax.set_ylabel("success rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle("the depth curve: mean over seeds and 95% interval")
    return _save(figure, path)


def plot_drift(entries: Sequence[Entry], metric: str, path: Path) -> Path:
    """``metric`` against the horizon: a row per task, a column per regime."""
    tasks = tasks_of(entries)
    regimes = list(dict.fromkeys(e.regime for e in entries))
    figure, axes = _figure(len(tasks) * len(regimes), columns=len(regimes))
    for i, (task, regime) in enumerate((t, r) for t in tasks for r in regimes):
        ax = axes[i]
        for entry in entries:
            if entry.task == task and entry.regime == regime:
                _band(ax, entry, entry.horizon)
        ylabel = DRIFT_METRICS[metric].label if metric in DRIFT_METRICS else metric
        _label_panel(ax, f"{task}: {regime}", "horizon (chunks)", ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"drift ({DRIFT_MODE} inference): mean over seeds, 95% interval")
    return _save(figure, path)


def plot_speed(entries: Sequence[Entry], path: Path) -> Path:
    """Chunks per second per variant and inference mode, a panel per task, error bars from
    the intervals."""
    tasks = tasks_of(entries)
    figure, axes = _figure(len(tasks))
    width = 0.8 / len(SPEED_MODES)
    for ax, task in zip(axes, tasks, strict=True):
        panel = [e for e in entries if e.task == task]
        variants = list(dict.fromkeys(e.variant for e in panel))
        for m, mode in enumerate(SPEED_MODES):
            rows = {e.variant: e for e in panel if e.quantity == f"speed/{mode}/chunks_per_second"}
            xs = [v + (m - 0.5) * width for v, name in enumerate(variants) if name in rows]
            bars = [rows[name] for name in variants if name in rows]
            if not bars:
                continue
            heights = np.array([b.point for b in bars])
            errors = [heights - [b.low for b in bars], [b.high for b in bars] - heights]
            ax.bar(xs, heights, width, yerr=errors, capsize=3, label=mode)
        ax.set_xticks(range(len(variants)), variants, rotation=20, fontsize="small")
        ax.set_title(_title(task, panel))
        ax.set_ylabel("chunks per second")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="small")
    figure.suptitle("inference speed: point and 95% interval")
    return _save(figure, path)


def report_figures(summary: Summary, folder: Path) -> list[FigureFile]:
    """Every figure of the report, written under ``folder``."""
    files = []
    for setting, fps in slices(summary):
        name = slice_name(setting, fps)
        where = f"{setting}, {summary.settings.frame_rate(fps)}"
        for metric in CURVE_METRICS:
            entries = select(summary.curves, setting=setting, fps=fps, metric=metric)
            if entries:
                section = "success" if metric == SUCCESS else "loss"
                path = folder / f"{metric.replace('/', '_')}_{name}.png"
                caption = f"{metric} against training steps ({where})"
                files.append(FigureFile(section, caption, plot_steps(entries, metric, path)))
            if metric == SUCCESS and entries:
                path = folder / f"budgets_{name}.png"
                caption = f"{metric} against steps, samples, FLOPs and wall-clock ({where})"
                files.append(FigureFile("convergence", caption, plot_budgets(entries, path)))
        drift = select(summary.drift, setting=setting, fps=fps, mode=DRIFT_MODE)
        for metric in dict.fromkeys(e.metric for e in drift):
            path = folder / f"drift_{metric}_{name}.png"
            caption = f"{metric} against the horizon ({where}, {DRIFT_MODE} inference)"
            entries = [e for e in drift if e.metric == metric]
            files.append(FigureFile("drift", caption, plot_drift(entries, metric, path)))
        speed = [
            e
            for e in select(summary.estimates, setting=setting, fps=fps)
            if e.quantity.startswith("speed/") and e.quantity != SPEEDUP
        ]
        if speed:
            path = folder / f"speed_{name}.png"
            caption = f"inference speed ({where})"
            files.append(FigureFile("speed", caption, plot_speed(speed, path)))
    if summary.depth:
        path = folder / "depth_curve.png"
        caption = (
            "the depth curve: final success and the area under the success curve against the "
            "MCP depth D, at matched steps and at the baseline's training FLOPs"
        )
        files.append(FigureFile("depth", caption, plot_depth(summary.depth, path)))
    return files
