"""Multi-chunk prediction (MCP) heads and ``WorldModelWithHeads`` (backbone + heads).

Where is the MCP loss: ``MCPHeads.forward`` (and ``LinearHeads.forward``); the total loss is
assembled in ``WorldModelWithHeads.compute_train_outputs``:

    L = L_video + L_action + sum_k w_k L_mcp_k        (metrics add ``loss/mcp{k}``)

Depth k at chunk i predicts the video of chunk ``i + k`` AT THE NOISY-VIDEO SLOTS OF CHUNK i
(chunks of the step's chunk size ``WindowOutputs.K``, see ``config.K_choices``),
under the training mask: the window's clean video ``x0`` shifted k chunks earlier
(``shift_chunks``) is noised with the depth's own sigma draw (shift ``mcp_shift``) and embedded
with the backbone's ``embed_video`` at the slots of chunk i, carrying the positions of the
chunk it predicts, ``i + k`` (``target_positions``; the reference shifts its rotary frame ids
by ``(depth + 1) * chunk_size``: next-forcing ``wan_va/train.py``, ``_prepare_input_dict``).
Targets outside the window or past the episode end are masked (``future_valid``); each depth's
loss is weighted per noise level under its own shift (``flow.loss_weight``), as the
reference's MCP scheduler does. Shapes as in ``worldmodel/model/world_model.py``:
B batch, F latent frames, N tokens per frame, C latent_dim, L sequence length.

MCP depth k (``MCPDepth``):
    h_0 = fuse(hidden states of ``fusion_layers`` at the noisy-video slots)   (B, F*N, dim)
          (Linear(n*dim -> dim), SiLU, Linear(dim -> dim); the identity for one layer)
    z_k = W_k [norm(h_{k-1}) ; norm(embed(noisy chunk i+k))]                  (B, F*N, dim)
    sequence = backbone's last-layer hidden states with the noisy-video slots replaced by
               z_k and their conditioning recomputed from the depth's sigma, the
               noisy-action slots (which nothing the depth outputs attends to) left out
                                                                         (B, L - F, dim)
    h_k = the depth's blocks over that sequence under the training mask, at the noisy-video
          slots; velocity = the backbone's shared ``video_head``(h_k, cond_k)
With ``chain=False`` (parallel heads) every depth takes h_0 instead of h_{k-1}. The context
slots of every depth carry the backbone's last-layer states, so at inference a depth needs
only its own KV cache of the clean tokens (``worldmodel/heads/draft.py``).

Parameters shared with the backbone (``embed_video``, ``sigma_embed``, ``video_head``) are
used, never owned, by the heads: ``drop_heads`` leaves the backbone untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from worldmodel import flow
from worldmodel.heads.config import HeadsConfig
from worldmodel.model.config import ModelConfig
from worldmodel.model.layout import NOISY_VIDEO
from worldmodel.model.transformer import Block
from worldmodel.model.world_model import (
    StepShape,
    TrainOutputs,
    WindowOutputs,
    WorldModel,
    per_token,
    standard_normal,
)


# ----------------------------------------------------------------- target bookkeeping
def shift_chunks(x: Tensor, k: int, K: int) -> Tensor:
    """Frame ``f`` of the result is frame ``f + k*K`` of ``x`` (B, F, ...); zeros past F.

    The target of depth k at the slots of chunk i is chunk i + k of the window.
    """
    shift = k * K
    out = torch.zeros_like(x)
    if shift < x.shape[1]:
        out[:, : x.shape[1] - shift] = x[:, shift:]
    return out


def future_valid(
    valid: Tensor | None, batch: int, frames: int, k: int, K: int, device=None
) -> Tensor:
    """(B, F) bool: frame f is a target of depth k iff frame f + k*K is in the window and
    valid (inside the episode). ``valid`` (B, F) bool or None (all frames valid)."""
    if valid is None:
        valid = torch.ones(batch, frames, dtype=torch.bool, device=device)
    return shift_chunks(valid.to(device=device, dtype=torch.bool), k, K)


# ----------------------------------------------------------------- modules
class FeatureFusion(nn.Module):
    """Per-token concatenation of n layers' hidden states -> dim (identity when n = 1)."""

    def __init__(self, layers: list[int], dim: int) -> None:
        super().__init__()
        self.layers = list(layers)
        n = len(layers)
        self.mlp = (
            None
            if n == 1
            else nn.Sequential(nn.Linear(n * dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        )

    def forward(self, hidden: list[Tensor]) -> Tensor:
        """hidden: per backbone layer (B, T, dim) -> h_0 (B, T, dim)."""
        picked = [hidden[layer] for layer in self.layers]
        if self.mlp is None:
            return picked[0]
        return self.mlp(torch.cat(picked, dim=-1))  # (B, T, n*dim) -> (B, T, dim)


class MCPDepth(nn.Module):
    """One MCP depth: ``z = W [norm(h_prev) ; norm(embed)]``, then transformer blocks."""

    def __init__(self, model: ModelConfig, num_blocks: int) -> None:
        super().__init__()
        dim = model.dim
        self.norm_hidden = nn.LayerNorm(dim)
        self.norm_embed = nn.LayerNorm(dim)
        self.proj = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList(
            [Block(dim, model.heads, model.mlp_ratio, model.dropout) for _ in range(num_blocks)]
        )

    def join(self, h_prev: Tensor, embedded: Tensor) -> Tensor:
        """h_prev, embedded: (B, T, dim) -> z (B, T, dim)."""
        both = torch.cat([self.norm_hidden(h_prev), self.norm_embed(embedded)], dim=-1)
        return self.proj(both)  # (B, T, 2*dim) -> (B, T, dim)


@dataclass
class FutureDraw:
    """Depth k's noised targets: chunk i + k at the slots of chunk i."""

    k: int  # the depth: chunks ahead of the slots' own chunk
    x0: Tensor  # (B, F, N, C) shifted clean video
    noise: Tensor  # (B, F, N, C)
    sigma: Tensor  # (B, F) the depth's own noise levels (shift mcp_shift)
    valid: Tensor  # (B, F) bool targets inside window and episode
    noisy: Tensor  # (B, F, N, C)

    @property
    def target(self) -> Tensor:
        return flow.velocity_target(self.x0, self.noise)


def draw_future(
    backbone: WorldModel,
    video: Tensor,
    valid: Tensor | None,
    k: int,
    shift: float,
    generator: torch.Generator | None,
    K: int | None = None,
) -> FutureDraw:
    """Sigma (B, F) then noise (B, F, N, C) for depth k, in that order, from ``generator``.

    ``K``: the window's chunk size (default the backbone's config.K)."""
    B, F = video.shape[:2]
    K = backbone.chunk_size(K)
    x0 = shift_chunks(video, k, K)  # (B, F, N, C)
    sigma = flow.sample_sigma((B, F), shift, generator, backbone.device).to(backbone.dtype)
    noise = standard_normal(video.shape, video, generator)  # (B, F, N, C)
    mask = future_valid(valid, B, F, k, K, device=video.device)  # (B, F)
    return FutureDraw(k, x0, noise, sigma, mask, flow.interpolate(x0, noise, sigma))


def future_chunk_offset(config: HeadsConfig, k: int) -> int:
    """Chunks between the slots' own chunk and the positions depth k's noisy tokens carry:
    k with ``target_positions`` (the chunk they predict, as the reference), else 0."""
    return k if config.target_positions else 0


def embed_future(backbone: WorldModel, config: HeadsConfig, draw: FutureDraw, K: int) -> Tensor:
    """Depth k's noisy future video (B, F, N, C) as tokens (B, F*N, dim) at the slots of
    chunks 0.., carrying the positions ``future_chunk_offset`` chunks ahead."""
    ahead = future_chunk_offset(config, draw.k)
    embedded, _ = backbone.embed_video(draw.noisy, NOISY_VIDEO, 0, K, chunks_ahead=ahead)
    return embedded


def future_loss(
    backbone: WorldModel, config: HeadsConfig, velocity: Tensor, draw: FutureDraw
) -> Tensor:
    """Depth k's flow loss, weighted per noise level under the depth's shift ``mcp_shift``."""
    return flow.weighted_mse(
        velocity,
        draw.target,
        draw.sigma,
        draw.valid,
        config.mcp_shift,
        backbone.config.loss_weighting,
    )


class MCPHeads(nn.Module):
    """Next Forcing MCP modules (``chain=True``) or parallel future heads (``chain=False``)."""

    drafts_next_chunk = True  # inference mode mcp_parallel (worldmodel/heads/draft.py)

    def __init__(self, config: HeadsConfig, model: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.fusion = FeatureFusion(config.resolved_fusion_layers(model), model.dim)
        self.depth_modules = nn.ModuleList(
            [MCPDepth(model, config.blocks_per_depth) for _ in range(config.mcp_depth)]
        )

    @torch.no_grad()
    def init_from_backbone(self, backbone: WorldModel) -> None:
        """Block j of every depth <- a copy of backbone block ``num_blocks - blocks + j``
        (``blocks``: ``blocks_per_depth``)."""
        first = len(backbone.blocks) - self.config.blocks_per_depth
        for depth in self.depth_modules:
            for j, block in enumerate(depth.blocks):
                block.load_state_dict(backbone.blocks[first + j].state_dict())

    def run_depth(
        self,
        backbone: WorldModel,
        depth: MCPDepth,
        h_prev: Tensor,
        draw: FutureDraw,
        out: WindowOutputs,
    ) -> tuple[Tensor, Tensor]:
        """One depth over the window's noisy-video and clean slots. Returns (velocity (B, F,
        N, C), h_k (B, F*N, dim)).

        The noisy-action slots are left out: only noisy actions attend to them, and a depth's
        output is read at its noisy-video slots only, so they would be computed for nothing
        (the KV-cached draft never runs them either)."""
        FN, F, N = out.num_video_tokens, draw.sigma.shape[1], backbone.config.tokens_per_frame
        embedded = embed_future(backbone, self.config, draw, out.K)  # (B, F*N, dim)
        z = depth.join(h_prev, embedded)  # (B, F*N, dim)
        cond_video = backbone.condition(per_token(draw.sigma, N))  # (B, F*N, dim)
        noisy_actions = slice(2 * FN, 2 * FN + F)  # sequence order of layout.py
        keep = torch.cat(
            [torch.arange(noisy_actions.start), torch.arange(noisy_actions.stop, out.cond.shape[1])]
        ).to(out.cond.device)  # (L - F,)
        context = keep[FN:]  # the clean slots
        cond = torch.cat([cond_video, out.cond[:, context]], dim=1)  # (B, L - F, dim)
        x = torch.cat([z, out.hidden_states[-1][:, context]], dim=1)  # (B, L - F, dim)
        mask = out.attn_mask[keep][:, keep]  # (L - F, L - F)
        for block in depth.blocks:
            x, _ = block(x, cond, mask)
        h = x[:, :FN]  # (B, F*N, dim)
        return backbone.decode_video(h, cond_video, F), h

    def forward(
        self,
        backbone: WorldModel,
        batch: dict,
        result: TrainOutputs,
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Per-depth losses [L_mcp_1, ..., L_mcp_D] of one window (scalars)."""
        video = batch["video"].to(backbone.device, backbone.dtype)  # (B, F, N, C)
        h_prev = self.fusion(result.outputs.noisy_video_hidden)  # (B, F*N, dim)
        h_0, losses = h_prev, []
        for k, depth in enumerate(self.depth_modules, start=1):
            draw = draw_future(
                backbone,
                video,
                batch.get("valid"),
                k,
                self.config.mcp_shift,
                generator,
                result.outputs.K,
            )
            velocity, h_k = self.run_depth(backbone, depth, h_prev, draw, result.outputs)
            losses.append(future_loss(backbone, self.config, velocity, draw))
            h_prev = h_k if self.config.chain else h_0
        return losses


class LinearHeads(nn.Module):
    """Linear heads on every ``layer_stride``-th layer, one per (layer, depth).

    Head (l, k): ``Linear([h_l ; embed(noisy chunk i+k) ; cond_k]) -> velocity`` per token,
    where ``cond_k`` is the embedding of the depth's noise level (a velocity is meaningless
    without the level). ``L_mcp_k`` is the mean over the layers.
    """

    drafts_next_chunk = False  # a training signal only

    def __init__(self, config: HeadsConfig, model: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = config.linear_layers(model)
        self.heads = nn.ModuleList(
            [
                nn.ModuleList(
                    [nn.Linear(3 * model.dim, model.latent_dim) for _ in range(config.mcp_depth)]
                )
                for _ in self.layers
            ]
        )

    def init_from_backbone(self, backbone: WorldModel) -> None:
        """Nothing to copy: linear heads have no blocks."""

    def forward(
        self,
        backbone: WorldModel,
        batch: dict,
        result: TrainOutputs,
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        video = batch["video"].to(backbone.device, backbone.dtype)  # (B, F, N, C)
        B, F, N, C = video.shape
        hidden = result.outputs.noisy_video_hidden  # per layer (B, F*N, dim)
        losses = []
        for k in range(1, self.config.mcp_depth + 1):
            draw = draw_future(
                backbone,
                video,
                batch.get("valid"),
                k,
                self.config.mcp_shift,
                generator,
                result.outputs.K,
            )
            embedded = embed_future(backbone, self.config, draw, result.outputs.K)  # (B, F*N, dim)
            cond = backbone.condition(per_token(draw.sigma, N))  # (B, F*N, dim)
            terms = []
            for layer, heads in zip(self.layers, self.heads, strict=True):
                features = torch.cat([hidden[layer], embedded, cond], dim=-1)  # (B, F*N, 3*dim)
                velocity = heads[k - 1](features).view(B, F, N, C)
                terms.append(future_loss(backbone, self.config, velocity, draw))
            losses.append(torch.stack(terms).mean())
        return losses


def make_heads(config: HeadsConfig, model_config: ModelConfig) -> nn.Module | None:
    """The heads module of ``config`` for a backbone of ``model_config`` (None: no heads).

    Fresh weights; ``WorldModelWithHeads`` copies the backbone's blocks in when
    ``init_from_backbone``.
    """
    config.validate(model_config)
    if not config.enabled:
        return None
    if config.kind == "mcp":
        return MCPHeads(config, model_config)
    return LinearHeads(config, model_config)


# ----------------------------------------------------------------- backbone + heads
@dataclass
class HeadsTrainOutputs(TrainOutputs):
    """``TrainOutputs`` plus the per-depth MCP losses; ``loss`` includes their weighted sum."""

    mcp_losses: list[Tensor] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        metrics = {"loss/video": self.loss_video.item(), "loss/action": self.loss_action.item()}
        for k, loss in enumerate(self.mcp_losses, start=1):
            metrics[f"loss/mcp{k}"] = loss.item()
        metrics["loss/total"] = self.loss.item()
        return metrics


class WorldModelWithHeads(WorldModel):
    """The backbone with an optional ``heads`` submodule, trained jointly.

    Same contract as ``WorldModel``: ``forward(batch) -> (loss, metrics)``. Backbone
    parameter names are those of ``WorldModel`` and head parameters live under ``heads.``, so
    after ``drop_heads()`` the state dict loads into a plain ``WorldModel``.
    """

    def __init__(self, config: ModelConfig, heads_config: HeadsConfig | None = None) -> None:
        super().__init__(config)
        self.heads_config = HeadsConfig() if heads_config is None else heads_config
        heads = make_heads(self.heads_config, config)
        self.heads = heads
        if heads is not None and self.heads_config.init_from_backbone:
            self.init_heads_from_backbone()

    def init_heads_from_backbone(self) -> None:
        """(Re)copy the backbone's last blocks into the heads, e.g. after loading weights."""
        if self.heads is not None:
            self.heads.init_from_backbone(self)

    @property
    def drafts_next_chunk(self) -> bool:
        """Whether the heads can draft chunk i+1 while the backbone denoises chunk i."""
        return self.heads is not None and self.heads.drafts_next_chunk

    def drop_heads(self) -> None:
        """Delete the heads (zero inference overhead); the backbone is left bit-identical."""
        if "heads" in self._modules:
            del self._modules["heads"]
        self.heads = None

    def compute_train_outputs(
        self,
        batch: dict,
        generator: torch.Generator | None = None,
        return_hidden: bool = False,
        shape: StepShape | None = None,
    ) -> HeadsTrainOutputs:
        heads = self.heads
        # draw and crop here: the heads need the window the backbone saw (whole K chunks)
        shape = self.draw_step_shape(generator) if shape is None else shape
        batch = self.crop_to_chunks(batch, self.chunk_size(shape.K))
        base = super().compute_train_outputs(
            batch, generator, return_hidden=return_hidden or heads is not None, shape=shape
        )
        mcp_losses = [] if heads is None else heads(self, batch, base, generator)
        loss = base.loss
        if heads is not None:
            for weight, term in zip(self.heads_config.weights, mcp_losses, strict=True):
                loss = loss + weight * term
        return HeadsTrainOutputs(
            loss, base.loss_video, base.loss_action, base.inputs, base.outputs, mcp_losses
        )
