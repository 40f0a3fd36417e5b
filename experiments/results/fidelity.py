"""How a reproduction's runs stand against the paper's setting, item by item (issue 34, A-F).

Each row names what the Next Forcing paper and its reference code do (next-forcing
``wan_va/configs/mcp_train_config.py``, ``wan_va/train.py``; lingbot-va
``wan_va/configs/va_robotwin_cfg.py``, ``wan_va/utils/scheduler.py``) and what the runs did,
read from a Next Forcing run's ``config.yaml`` and, for the cost and the drafting speed, from
the summary's per-run measurements; the report prints it under the claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.results.entries import RunValues
from experiments.results.eval_file import MODE_POLICIES
from worldmodel.heads.config import HeadsConfig
from worldmodel.model.config import ModelConfig
from worldmodel.timing import FrameRate

FLOPS = "perf/flops"


def fidelity_rows(
    config: dict[str, Any],
    steps: int,
    early: int,
    late: int,
    runs: Sequence[RunValues],
    base: str,
    variant: str,
) -> list[tuple[str, str, str, str]]:
    """(item, setting, the paper / reference, these runs) rows; ``config``: a ``variant`` run's
    resolved config, ``runs``: the summary's per-run values."""
    model, heads = ModelConfig(**config["model"]), HeadsConfig(**config["heads"])
    rate = FrameRate(float(config["fps"]), int(config["frames_per_latent"]))
    layers = ", ".join(str(layer + 1) for layer in heads.resolved_fusion_layers(model))
    window = config["data"]["window_frames"]
    choices = model.K_choices or [model.K]
    windows = model.train_attention_windows
    history = (
        f"p={model.noisy_history_prob:g} per sample, sigma = shift {model.history_shift:g} of "
        f"U(0, {model.noisy_history_max_u:g})"
    )
    return [
        (
            "A",
            "frame rate of the 50 fps claims",
            "4 actions per latent frame (50 fps video, VAE 4x in time)",
            rate.describe(model.K),
        ),
        (
            "B",
            "MCP depths D x blocks per depth",
            "3 x 3 (1-block ablation: 86.5 vs 85.8)",
            f"{heads.mcp_depth} x {heads.blocks_per_depth}",
        ),
        ("B", "fused layers (1-based)", "4, 12, 20, 30 of 30", f"{layers} of {model.num_blocks}"),
        (
            "B",
            "MCP timestep shift, loss weights",
            "10; 0.5, 0.2, 0.1",
            f"{heads.mcp_shift:g}; {', '.join(f'{w:g}' for w in heads.weights)}",
        ),
        (
            "B",
            "MCP noisy tokens' positions",
            "the predicted chunk's (frame ids + k x chunk)",
            "the predicted chunk's" if heads.target_positions else "their own chunk's",
        ),
        (
            "B",
            "per-timestep loss weights",
            "training table, mean 1 at every shift",
            "table" if model.loss_weighting == "table" else "logit-normal bell",
        ),
        (
            "B",
            "noisy history",
            "p=0.5 per batch, shift-5 table ids 500-999 (sigma 0.005-0.833)",
            history,
        ),
        (
            "C",
            "chunk size (train; inference)",
            "1-4; 2",
            f"{', '.join(map(str, choices))}; {model.K}",
        ),
        (
            "C",
            "attention window (train; inference)",
            "2-32 chunks; 36 chunks",
            f"{'-'.join(map(str, windows)) if windows else model.attention_window or 'all'} "
            f"chunks; all of {window // model.K} chunks",
        ),
        (
            "C",
            "training segment",
            "long segments, episodes of 50k-step training",
            f"{window} latent frames = {window * rate.seconds_per_latent_frame:.2f} s",
        ),
        (
            "D",
            "claim steps (early; late)",
            "5k; 45k of 50k (10%; 90%)",
            f"{early}; {late} of {steps}",
        ),
        (
            "E",
            "Next Forcing FLOPs per step / baseline",
            "about 1.3x (9 blocks on 30)",
            _flops_ratio(runs, base, variant),
        ),
        (
            "F",
            "mcp_parallel: speed; success change",
            "about 2x; -1 to -2 pts",
            _drafting(runs, variant),
        ),
    ]


def fidelity_table(rows: Sequence[tuple[str, str, str, str]]) -> str:
    """Markdown of ``fidelity_rows``."""
    lines = [
        "**The setting item by item: the paper and its reference code, and these runs**",
        "",
        "| item | setting | paper / reference | these runs |",
        "|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def _flops_ratio(runs: Sequence[RunValues], base: str, variant: str) -> str:
    costs = {
        name: [r.cost_per_step.get(FLOPS) for r in runs if r.variant == name]
        for name in (base, variant)
    }
    costs = {name: [c for c in values if c] for name, values in costs.items()}
    if not all(costs.values()):
        return "not measured"
    return f"{np.mean(costs[variant]) / np.mean(costs[base]):.2f}x (measured per step)"


def _drafting(runs: Sequence[RunValues], variant: str) -> str:
    rows = [
        (
            r.mcp_parallel_speedup,
            r.final.get(MODE_POLICIES["standard"]),
            r.final.get(MODE_POLICIES["mcp_parallel"]),
        )
        for r in runs
        if r.variant == variant
    ]
    rows = [(s, a, b) for s, a, b in rows if s is not None and a is not None and b is not None]
    if not rows:
        return "not measured"
    speed = np.mean([s for s, _, _ in rows])
    change = np.mean([b.success_rate - a.success_rate for _, a, b in rows]) * 100
    return f"{speed:.2f}x; {change:+.1f} pts ({len(rows)} runs)"
