"""Validation flow-matching loss per future-chunk horizon on fixed held-out windows.

Horizon 1 is the backbone's next-chunk video loss; horizon k + 1 is MCP depth k's loss
(chunk i + k predicted at the slots of chunk i), so a ``single_step`` model reports h = 1
only. The windows (evenly spread over the held-out episodes) and the noise (seeded per
batch) are the same at every evaluation, so the curve moves only because the model does.
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodel.training.trainer import step_generator
from worldmodel.training.windows import WindowSet

VALIDATION_STREAM = 7


@torch.no_grad()
def validation_losses(
    model: nn.Module, windows: WindowSet, count: int, batch_size: int, seed: int
) -> dict[str, float]:
    """``val/loss_video_h{h}``, ``val/loss_action`` and ``val/loss_total``, averaged over
    ``count`` fixed windows at the inference chunk size and attention window."""
    was_training = model.training
    model.eval()
    ids = windows.spread(count)
    sums: dict[str, float] = {}
    for start in range(0, len(ids), batch_size):
        part = ids[start : start + batch_size]
        batch = {k: v.to(model.device) for k, v in windows.batch(part).items()}
        batch["step_shape"] = model.inference_shape
        _, metrics = model(batch, generator=step_generator(seed, start, VALIDATION_STREAM))
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value * len(part)
    model.train(was_training)
    means = {key: value / len(ids) for key, value in sums.items()}
    out = {
        "val/loss_video_h1": means["loss/video"],
        "val/loss_action": means["loss/action"],
        "val/loss_total": means["loss/total"],
    }
    for key, value in means.items():
        if key.startswith("loss/mcp"):
            out[f"val/loss_video_h{int(key.removeprefix('loss/mcp')) + 1}"] = value
    return out
