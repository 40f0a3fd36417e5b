"""Open-loop rollout on an ``InferenceSession``, in ``standard`` or ``mcp_parallel`` mode.

``standard``: one chunk per autoregressive step (the backbone alone; any model, also after
``drop_heads``)::

    for each chunk i: denoise video i; append it; [denoise actions i]; append actions i

``mcp_parallel`` (MCP heads): one step emits chunks i and i+1 (depth 1's draft, appended
without further denoising). With an odd horizon the last chunk is a standard step (a draft
past the horizon would be thrown away), so ``horizon=1`` in mcp_parallel mode is the
standard rollout, with the same random draws and output.

Actions are in model units (``WorldModel.encode_actions``): ``future_actions`` given -> they
are appended as the executed actions (open-loop video prediction); None -> each chunk's actions
are denoised (inverse dynamics on the imagined video, fully autoregressive). Long horizons
slide the context as the session does (``worldmodel/inference/session.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from worldmodel.inference.session import InferenceSession
from worldmodel.model.world_model import WorldModel


@dataclass
class RolloutResult:
    video: Tensor  # (B, horizon*K, N, C) imagined latents
    actions: Tensor  # (B, horizon*K, A, d) appended actions (given or denoised), model units
    passes: dict[str, int]  # InferenceSession.passes of the rollout, context appends included


def _check_inputs(model, context_video, context_actions, future_actions, horizon) -> None:
    K = model.config.K
    Fc = context_video.shape[1]
    if Fc % K != 0 or context_actions.shape[1] != Fc:
        raise ValueError(f"context must be whole chunks of K={K} frames with their actions")
    if horizon < 1:
        raise ValueError(f"horizon={horizon} is not valid; must be >= 1")
    if future_actions is not None and future_actions.shape[1] < horizon * K:
        raise ValueError(f"future_actions must cover horizon*K={horizon * K} frames")


@torch.no_grad()
def rollout_open_loop(
    model: WorldModel,
    context_video: Tensor,
    context_actions: Tensor,
    horizon: int,
    steps: int,
    future_actions: Tensor | None = None,
    action_steps: int | None = None,
    mode: str = "standard",
    generator: torch.Generator | None = None,
    context_chunks: int | None = None,
    episode_start: bool = False,
) -> RolloutResult:
    """Imagine ``horizon`` chunks after real context (module docstring for the modes).

    context_video (B, Fc, N, C) and context_actions (B, Fc, A, d) hold whole real chunks;
    future_actions (B, >= horizon*K, A, d) or None (denoise actions with ``action_steps``,
    default ``steps``). ``context_chunks``: chunks kept when the context slides.
    ``episode_start``: chunk 0 is an episode's first chunk, so without context the first
    imagined chunk's padded action token is clamped, as in training."""
    _check_inputs(model, context_video, context_actions, future_actions, horizon)
    K = model.config.K
    action_steps = steps if action_steps is None else action_steps
    session = InferenceSession(model, context_video.shape[0], mode, context_chunks)
    context_count = context_video.shape[1] // K
    for i in range(context_count):
        frames = slice(i * K, (i + 1) * K)
        session.make_room(1)
        session.append_video(context_video[:, frames])
        session.append_actions(context_actions[:, frames])
    videos, actions = [], []
    while len(videos) < horizon:
        video, draft = session.denoise_video(
            steps, generator, draft=session.drafts_next() and len(videos) + 1 < horizon
        )
        for chunk_video in [video] if draft is None else [video, draft]:
            h = len(videos)
            session.append_video(chunk_video)
            if future_actions is None:
                pad = episode_start and h == 0 and context_count == 0
                chunk_actions = session.denoise_actions(action_steps, generator, pad)
            else:
                chunk_actions = future_actions[:, h * K : (h + 1) * K]
            session.append_actions(chunk_actions)
            videos.append(chunk_video)
            actions.append(chunk_actions)
    return RolloutResult(
        video=torch.cat(videos, dim=1),  # (B, horizon*K, N, C)
        actions=torch.cat(actions, dim=1),  # (B, horizon*K, A, d)
        passes=dict(session.passes),
    )
