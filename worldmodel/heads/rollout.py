"""Open-loop rollout with pass counting, in ``standard`` or ``mcp_parallel`` mode.

``standard``: the backbone alone, one chunk per autoregressive step (heads unused; works for
any model, also after ``drop_heads``)::

    for each chunk i: steps backbone passes denoise video i; append clean video i;
                      [action_steps passes denoise actions i]; append actions i

``mcp_parallel`` (MCP heads, depth 1 only): one autoregressive step emits chunks i and i+1.
Each Euler step runs ONE backbone pass over the noisy tokens of chunk i against the cache; its
per-layer hidden states feed depth 1 together with the noisy latents of chunk i+1 (embedded
at the slots of chunk i, exactly as in training), and both chunks take an Euler step (chunk i
on the video schedule, chunk i+1 on the ``mcp_shift`` schedule its noise was trained on)::

    for each pair (i, i+1): steps joint passes; append video i; [denoise actions i];
                            append actions i; append video i+1; [denoise actions i+1];
                            append actions i+1

Depth 1 keeps its own KV cache of the clean tokens: whenever a clean segment joins the
backbone cache, its last-layer hidden states run through depth 1's blocks (appended), just
as the context slots of the training window carry the backbone's last-layer states.

Horizon semantics: ``horizon`` chunks are emitted in both modes. With an odd horizon the last
chunk is produced by a standard step (a depth-1 prediction of a chunk past the horizon would
be thrown away), so ``horizon=1`` in ``mcp_parallel`` mode is the standard rollout, with the
same random draws and the same output.

Actions: ``future_actions`` given -> they are appended as the executed actions (open-loop video
prediction, like ``WorldModel.rollout_open_loop``); None -> each chunk's actions are denoised
by the backbone (inverse dynamics) and appended.

Pass counts: ``backbone_passes`` counts every sequential run of the backbone's block stack
(denoising and cache appends alike), counted by a hook on its first block; ``head_passes``
counts runs of depth 1's blocks; ``video_passes`` counts the backbone's video-denoising
passes alone, the quantity that ``mcp_parallel`` halves.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from worldmodel import flow
from worldmodel.heads.modules import MCPHeads, WorldModelWithHeads
from worldmodel.model.layout import CLEAN_ACTION, CLEAN_VIDEO, NOISY_VIDEO, first_visible_chunk
from worldmodel.model.world_model import KVCache, WorldModel, per_token, standard_normal

MODES = ("standard", "mcp_parallel")


@dataclass
class RolloutResult:
    video: Tensor  # (B, horizon*K, N, C) imagined latents
    actions: Tensor  # (B, horizon*K, A, d) appended actions (given or denoised), raw units
    backbone_passes: int  # sequential runs of the backbone's blocks
    head_passes: int  # runs of depth 1's blocks (mcp_parallel only)
    video_passes: int  # backbone passes that denoised video


@contextmanager
def count_calls(module: nn.Module | None):
    """Yields a one-element list holding how many times ``module`` ran inside the block."""
    counter = [0]
    if module is None:
        yield counter
        return

    def hook(_module, _inputs):
        counter[0] += 1

    handle = module.register_forward_pre_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


class HeadCache:
    """Depth 1's KV cache of the clean tokens, fed with the backbone's last-layer states;
    appends go to ``backbone_cache`` and to this cache together."""

    def __init__(self, model: WorldModelWithHeads, heads: MCPHeads, backbone_cache: KVCache):
        self.model, self.depth, self.backbone_cache = model, heads.depths[0], backbone_cache
        self.cache = KVCache(depth=len(self.depth.blocks))

    def run(self, x: Tensor, cond: Tensor, chunk: int, append: bool) -> Tensor:
        """x, cond: (B, T, dim) tokens of ``chunk`` -> depth 1's output (B, T, dim)."""
        first = first_visible_chunk(chunk, self.model.config.attention_window)
        for layer, block in enumerate(self.depth.blocks):
            x, kv = block(x, cond, None, self.cache.past(layer, first))
            if append:
                self.cache.append(layer, kv)
        return x

    def append_clean(self, video: Tensor | None = None, actions: Tensor | None = None) -> None:
        """Append clean video (B, K, N, C) or raw actions (B, K, A, d) to both caches."""
        model, backbone_cache = self.model, self.backbone_cache
        hidden: list[Tensor] = []
        if video is not None:
            kind, chunk = CLEAN_VIDEO, backbone_cache.num_video_chunks
            model.append_clean(backbone_cache, video_chunk=video, hidden_states=hidden)
        else:
            kind, chunk = CLEAN_ACTION, backbone_cache.num_action_chunks
            model.append_clean(backbone_cache, action_chunk=actions, hidden_states=hidden)
        last = hidden[-1]  # (B, T, dim)
        B, T = last.shape[:2]
        cond = model.condition(torch.zeros(B, T, dtype=model.dtype, device=model.device))
        self.run(last, cond, chunk, append=True)
        self.cache.add_segment(kind, chunk, T)


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
) -> RolloutResult:
    """Imagine ``horizon`` chunks after real context (module docstring for the modes).

    context_video (B, Fc, N, C) and context_actions (B, Fc, A, d) hold whole real chunks;
    future_actions (B, >= horizon*K, A, d) or None (denoise actions with ``action_steps``,
    default ``steps``). ``mode="mcp_parallel"`` needs a ``WorldModelWithHeads`` with MCP heads.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not valid; choose one of: {', '.join(MODES)}")
    heads = getattr(model, "heads", None)
    if mode == "mcp_parallel" and not isinstance(heads, MCPHeads):
        raise ValueError("mode='mcp_parallel' needs a WorldModelWithHeads with kind=mcp heads")
    _check_inputs(model, context_video, context_actions, future_actions, horizon)
    K = model.config.K
    action_steps = steps if action_steps is None else action_steps
    B = context_video.shape[0]
    cache = model.init_cache(batch_size=B)
    head_cache = HeadCache(model, heads, cache) if mode == "mcp_parallel" else None

    def append(video=None, actions=None):
        if head_cache is not None:
            head_cache.append_clean(video, actions)
        else:
            model.append_clean(cache, video_chunk=video, action_chunk=actions)

    def actions_of(h: int) -> Tensor:
        if future_actions is not None:
            return future_actions[:, h * K : (h + 1) * K]
        return model.denoise_action_chunk(cache, None, action_steps, generator)

    head_first_block = heads.depths[0].blocks[0] if head_cache is not None else None
    videos, actions = [], []
    video_passes = 0
    with (
        count_calls(model.blocks[0]) as backbone_calls,
        count_calls(head_first_block) as head_calls,
    ):
        for i in range(context_video.shape[1] // K):
            frames = slice(i * K, (i + 1) * K)
            append(video=context_video[:, frames])
            append(actions=context_actions[:, frames])
        h = 0
        while h < horizon:
            if mode == "mcp_parallel" and h + 1 < horizon:
                chunk_videos = _denoise_pair(model, heads, head_cache, steps, generator)
            else:
                chunk_videos = [model.denoise_video_chunk(cache, steps, generator)]
            video_passes += steps
            for video in chunk_videos:
                append(video=video)
                chunk_actions = actions_of(h)
                append(actions=chunk_actions)
                videos.append(video)
                actions.append(chunk_actions)
                h += 1
    return RolloutResult(
        video=torch.cat(videos, dim=1),  # (B, horizon*K, N, C)
        actions=torch.cat(actions, dim=1),  # (B, horizon*K, A, d)
        backbone_passes=backbone_calls[0],
        head_passes=head_calls[0],
        video_passes=video_passes,
    )


def _denoise_pair(
    model: WorldModelWithHeads,
    heads: MCPHeads,
    head_cache: HeadCache,
    steps: int,
    generator: torch.Generator | None,
) -> list[Tensor]:
    """Chunks i and i+1 (each (B, K, N, C)) in ``steps`` joint passes (module docstring)."""
    cfg = model.config
    cache = head_cache.backbone_cache
    B, K, N = cache.batch_size, cfg.K, cfg.tokens_per_frame
    shape = (B, K, N, cfg.latent_dim)
    like = torch.empty(0, dtype=model.dtype, device=model.device)
    x_now = standard_normal(shape, like, generator)  # (B, K, N, C) chunk i
    x_next = standard_normal(shape, like, generator)  # (B, K, N, C) chunk i+1
    sig_now = flow.timestep_schedule(steps, cfg.video_shift).tolist()
    sig_next = flow.timestep_schedule(steps, heads.config.mcp_shift).tolist()
    for s in range(steps):
        level_now = torch.full((B, K), sig_now[s], dtype=model.dtype, device=model.device)
        level_next = torch.full((B, K), sig_next[s], dtype=model.dtype, device=model.device)
        v_now, v_next = predict_pair_velocity(
            model, heads, head_cache, x_now, level_now, x_next, level_next
        )
        x_now = flow.euler_step(x_now, v_now, sig_now[s], sig_now[s + 1])
        x_next = flow.euler_step(x_next, v_next, sig_next[s], sig_next[s + 1])
    return [x_now, x_next]


def predict_pair_velocity(
    model: WorldModelWithHeads,
    heads: MCPHeads,
    head_cache: HeadCache,
    x_now: Tensor,
    sigma_now: Tensor,
    x_next: Tensor,
    sigma_next: Tensor,
) -> tuple[Tensor, Tensor]:
    """One joint pass: velocities (B, K, N, C) of noisy chunk i (levels (B, K)) by the
    backbone and of noisy chunk i+1 by depth 1, both at the slots of chunk i."""
    cache, N = head_cache.backbone_cache, model.config.tokens_per_frame
    chunk = cache.num_video_chunks
    hidden: list[Tensor] = []
    v_now = model.predict_video_velocity(cache, x_now, sigma_now, hidden_states=hidden)
    h_0 = heads.fusion(hidden)  # (B, K*N, dim)
    embedded, _ = model.embed_video(x_next, NOISY_VIDEO, chunk)  # (B, K*N, dim)
    cond = model.condition(per_token(sigma_next, N))  # (B, K*N, dim)
    h_1 = head_cache.run(heads.depths[0].join(h_0, embedded), cond, chunk, append=False)
    return v_now, model.decode_video(h_1, cond, model.config.K)
