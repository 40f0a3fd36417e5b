"""MCP depth 1 as a drafter at inference (``mcp_parallel``): its KV cache and the joint pass.

In the passes that denoise chunk i, depth 1 denoises chunk i+1 (its draft) at the slots of
chunk i, exactly as in training (``worldmodel/heads/modules.py``): each pass runs the backbone
over the noisy tokens of chunk i against its cache; the backbone's per-layer hidden states
feed depth 1 together with the noisy latents of chunk i+1.

Depth 1 keeps its own KV cache of the clean tokens (``HeadCache``): whenever clean segments
join the backbone cache, their last-layer hidden states run through depth 1's blocks
(appended; segments fused into one backbone pass go through depth 1 in one pass too), just
as the context slots of the training window carry the backbone's last-layer states.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from worldmodel.heads.modules import MCPHeads, WorldModelWithHeads, future_chunk_offset
from worldmodel.model.kv_cache import CleanSegment, KVCache
from worldmodel.model.layout import NOISY_VIDEO
from worldmodel.model.world_model import per_token


class HeadCache:
    """Depth 1's KV cache of the clean tokens, fed with the backbone's last-layer states;
    appends go to ``backbone_cache`` and to this cache together."""

    def __init__(self, model: WorldModelWithHeads, heads: MCPHeads, backbone_cache: KVCache):
        self.model, self.depth, self.backbone_cache = model, heads.depth_modules[0], backbone_cache
        self.cache = KVCache(num_layers=len(self.depth.blocks))

    def run(
        self, x: Tensor, cond: Tensor, chunk: int, append: bool, attn_mask: Tensor | None = None
    ) -> Tensor:
        """x, cond: (B, T, dim) tokens from ``chunk`` on -> depth 1's output (B, T, dim), run
        against this cache as ``WorldModel.run_cached`` runs the backbone against its own."""
        return self.model.run_cached(
            x, cond, chunk, self.cache, append, attn_mask=attn_mask, blocks=self.depth.blocks
        )

    def append_segments(self, segments: Sequence[CleanSegment]) -> None:
        """Append consecutive clean segments to both caches, one pass through each."""
        model, hidden = self.model, []
        layouts = model.append_clean_segments(self.backbone_cache, segments, hidden_states=hidden)
        if not layouts:
            return
        oldest, mask = self.cache.append_mask(layouts, model.config.attention_window)
        last = hidden[-1]  # (B, T_new, dim)
        B, T = last.shape[:2]
        cond = model.condition(torch.zeros(B, T, dtype=model.dtype, device=model.device))
        self.run(last, cond, oldest, append=True, attn_mask=mask)
        for layout in layouts:
            self.cache.add_segment(layout)

    def drop_last_segment(self) -> None:
        """Forget the last clean segment in both caches (an imagined video chunk)."""
        self.backbone_cache.drop_last_segment()
        self.cache.drop_last_segment()


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
    chunk, K = cache.num_video_chunks, x_now.shape[1]
    hidden: list[Tensor] = []
    v_now = model.predict_video_velocity(cache, x_now, sigma_now, hidden_states=hidden)
    h_0 = heads.fusion(hidden)  # (B, K*N, dim)
    ahead = future_chunk_offset(heads.config, 1)  # depth 1 carries chunk i+1's positions
    embedded, _ = model.embed_video(x_next, NOISY_VIDEO, chunk, K, ahead)  # (B, K*N, dim)
    cond = model.condition(per_token(sigma_next, N))  # (B, K*N, dim)
    h_1 = head_cache.run(heads.depth_modules[0].join(h_0, embedded), cond, chunk, append=False)
    return v_now, model.decode_video(h_1, cond, K)
