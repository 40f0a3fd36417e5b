"""Evaluation figures (matplotlib, Agg canvas), written atomically as PNG at ``size`` pixels.

Drift: a metric against the horizon, one line per model; each line is the mean over episodes
(the number ``DriftResult.summary`` reports), the shaded band spans the 25th to 75th
percentile over episodes. Action skill (``diagnose``): teacher-forced action RMSE by chunk
index and by frame within the chunk, the model on real and on imagined video beside the
hold-last-action and data-mean predictors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from worldmodel.evaluation.diagnose import ActionSkill, DraftError
from worldmodel.evaluation.drift import METRICS, DriftResult
from worldmodel.media import write_image

DPI = 100


def plot_drift(
    results: Mapping[str, DriftResult],
    metric: str,
    regime: str,
    path: Path,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """PNG of ``metric`` (a key of ``drift.METRICS``) in ``regime`` against the horizon, one
    line per named result; ``size`` is (width, height) in pixels."""
    if not results:
        raise ValueError("results is empty; pass at least one name -> DriftResult")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not valid; choose one of: {', '.join(METRICS)}")
    figure, canvas = _figure(size)
    axes = figure.add_subplot()
    for name, result in results.items():
        values = result.curve(regime, metric)  # (E, H)
        horizon = np.arange(1, values.shape[1] + 1)
        low, high = np.percentile(values, [25, 75], axis=0)  # (H,) each
        (line,) = axes.plot(horizon, values.mean(axis=0), marker="o", label=name)
        axes.fill_between(horizon, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xlabel("horizon (chunks)")
    axes.set_ylabel(METRICS[metric].label)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_title(f"{regime}: mean over episodes, band 25-75th percentile")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, canvas, path)


PREDICTOR_LABELS = {
    "real": "model, real video",
    "imagined": "model, imagined video",
    "drafted": "model, depth-1 draft (mcp_parallel)",
    "hold": "hold last action",
    "mean": "data mean",
}


def plot_action_skill(
    skill: ActionSkill, path: Path, group: str = "arm", size: tuple[int, int] = (960, 400)
) -> Path:
    """PNG of the teacher-forced action RMSE of ``group`` (arm or gripper) per chunk index
    (left) and per frame within the chunk (right), one line per predictor."""
    figure, canvas = _figure(size)
    unit = "rad" if group == "arm" else "opening units"
    for column, (table, label) in enumerate(
        ((skill.by_chunk, "chunk index in the window"), (skill.by_frame, "frame within chunk"))
    ):
        axes = figure.add_subplot(1, 2, column + 1)
        for name, curves in table.items():
            values = curves[group]
            axes.plot(range(len(values)), values, marker="o", label=PREDICTOR_LABELS[name])
        axes.set_xlabel(label)
        axes.set_ylabel(f"{group} action RMSE ({unit})")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_yscale("log")  # the data mean sits 10-50x above the others
        axes.grid(alpha=0.3, which="both")
    axes.legend()
    figure.suptitle(
        f"teacher-forced {group} actions, {skill.windows} held-out windows, "
        f"{skill.tokens} action tokens"
    )
    return _save(figure, canvas, path)


DRAFT_LABELS = {
    "backbone": "backbone's own denoising",
    "backbone_two_ahead": "backbone, two chunks ahead",
    "draft": "depth-1 draft",
    "draft_vs_backbone": "draft vs backbone",
}


def plot_draft_error(draft: DraftError, path: Path, size: tuple[int, int] = (960, 400)) -> Path:
    """PNG of mcp_parallel's depth-1 drafts against the backbone's own denoising of the same
    chunks: latent MSE to the real chunk per chunk index (left) and, per Euler step, the MSE of
    each trajectory's clean estimate (right)."""
    figure, canvas = _figure(size)
    for column, (table, label) in enumerate(
        ((draft.by_chunk, "chunk index in the window"), (draft.by_step, "Euler step"))
    ):
        axes = figure.add_subplot(1, 2, column + 1)
        for name, values in table.items():
            axes.plot(range(len(values)), values, marker="o", label=DRAFT_LABELS[name])
        axes.set_xlabel(label)
        axes.set_ylabel("latent MSE to the real chunk")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_yscale("log")
        axes.grid(alpha=0.3, which="both")
        axes.legend()
    figure.suptitle(f"mcp_parallel drafts vs the backbone, {draft.windows} held-out windows")
    return _save(figure, canvas, path)


def _figure(size: tuple[int, int]) -> tuple[Figure, FigureCanvasAgg]:
    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    return figure, FigureCanvasAgg(figure)


def _save(figure: Figure, canvas: FigureCanvasAgg, path: Path) -> Path:
    figure.tight_layout()
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3]  # (height, width, 3) uint8
    return write_image(path, image)
