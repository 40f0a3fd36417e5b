"""Drift figures: a metric against the horizon, one line per model (matplotlib, Agg canvas).

Each line is the mean over episodes (the number ``DriftResult.summary`` reports); the shaded
band spans the 25th to 75th percentile over episodes. The PNG is written atomically
(``worldmodel.media.write_image``) at ``size`` pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(figure)
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
    figure.tight_layout()
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3]  # (height, width, 3) uint8
    return write_image(path, image)
