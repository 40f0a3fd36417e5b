"""``WorldModel``: the chunk-causal video/action flow-matching backbone (LingBot-VA style).

Glossary and the attention rules: ``worldmodel/model/layout.py``. Shapes:
    B batch, F = num_chunks * K latent frames, N video tokens per frame, C latent_dim,
    A actions_per_frame, d action_dim, dim model width, L training-sequence length.

Training (``forward_train``) runs one window as ``[noisy video | clean video | noisy action |
clean action]`` under ``training_mask`` and returns the video + action flow losses.
Random context (``StepShape``): with ``config.K_choices`` each step draws its chunk size
``K_step`` (``draw_step_shape``), cuts the window's F frames into ``F // K_step`` whole chunks
and drops the trailing frames that do not fill one (``crop_to_chunks``); layout, mask and the
MCP heads' chunk shift then use ``K_step``. With ``config.train_attention_windows`` it then
draws the step's attention window, which the mask (and the heads) use. Inference uses
``config.K`` and ``config.attention_window`` unless given others.
Inference runs chunk by chunk against a ``KVCache`` of clean tokens through the primitives
``append_clean_segments`` (clean video / clean actions of the next chunks join the cache,
several in one pass under the layout mask; ``append_clean`` for one chunk),
``predict_video_velocity`` and ``predict_action_velocity`` (noisy tokens run against the cache,
never appended); ``worldmodel/inference/session.py`` drives them (denoising loops, sliding
context, pass counts) for open loop and closed loop alike. Actions enter and leave the model in
model units (``worldmodel/model/actions.py``: relative, normalised, aligned to the frame they
lead into); ``encode_actions``/``decode_actions_raw`` convert.

Hooks for multi-chunk prediction (MCP) heads: ``compute_train_outputs`` returns the inputs,
the per-token conditioning, the mask and (``return_hidden=True``) the hidden states after
every block; ``WindowOutputs.noisy_video_hidden`` slices the noisy-video slots
(B, F*N, dim) per layer. ``embed_video``, ``condition``, ``blocks`` and ``video_head`` are
the pieces an MCP depth reuses (same slots, same mask, shared output head).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from worldmodel import flow
from worldmodel.model.actions import PAD_ACTION, TRAIN_CLIP, ActionCodec, chunk_reference
from worldmodel.model.config import ModelConfig
from worldmodel.model.kv_cache import CleanSegment, KVCache
from worldmodel.model.layout import (
    CLEAN_ACTION,
    CLEAN_VIDEO,
    NOISY_ACTION,
    NOISY_VIDEO,
    TokenLayout,
    block_layout,
    concat_layouts,
    first_visible_chunk,
    may_attend,
)
from worldmodel.model.transformer import Block, FinalLayer, run_blocks

SIGMA_FREQUENCIES = 256  # sinusoidal features of the noise level before its MLP
MCP_CHUNKS_AHEAD = 8  # chunk positions past max_chunks that MCP depths' noisy tokens may carry


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(...,) real values -> (..., dim) features [cos(v * f_j), sin(v * f_j)]."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float64) / half
    )  # (half,)
    angles = values.to(torch.float64)[..., None] * freqs  # (..., half)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (..., 2 * half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)  # (..., dim)
    return emb


def _draw(choices: list[int], generator: torch.Generator | None) -> int:
    """One of ``choices``, uniformly (one draw from ``generator``; none for one choice)."""
    if len(choices) == 1:
        return choices[0]
    device = generator.device if generator is not None else "cpu"
    index = torch.randint(len(choices), (1,), generator=generator, device=device)
    return choices[int(index)]


def per_token(sigma: Tensor, tokens_per_frame: int) -> Tensor:
    """(B, F) per-frame values -> (B, F * tokens_per_frame), repeated over a frame's tokens."""
    return sigma.repeat_interleave(tokens_per_frame, dim=1)


Generators = torch.Generator | Sequence[torch.Generator] | None


def standard_normal(shape: tuple[int, ...], like: Tensor, generator: Generators):
    """N(0, 1) draws of ``shape`` in ``like``'s dtype/device, drawn on the generator's device.

    A sequence of generators draws row b of dim 0 from ``generator[b]`` alone, so a row gets
    the numbers a batch of one would get from that generator (batched closed loop)."""
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]} rows")
        return torch.cat([standard_normal((1, *shape[1:]), like, g) for g in generator])
    draw_device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=draw_device, dtype=like.dtype)
    return noise.to(like.device)


@dataclass(frozen=True)
class StepShape:
    """The chunk size and attention window of a teacher-forced pass (a training step)."""

    K: int  # latent frames per chunk
    attention_window: int | None  # clean chunks visible before the own chunk; None = all


@dataclass
class WindowInputs:
    """One training window, already noised. Actions are in model units (``window_actions``)."""

    noisy_video: Tensor  # (B, F, N, C)
    noisy_video_sigma: Tensor  # (B, F)
    clean_video: Tensor  # (B, F, N, C), possibly re-noised history
    clean_video_sigma: Tensor  # (B, F), 0 or the re-noised level
    noisy_action: Tensor  # (B, F, A, d)
    noisy_action_sigma: Tensor  # (B, F)
    clean_action: Tensor  # (B, F, A, d)


@dataclass
class WindowOutputs:
    """Predictions of a teacher-forced window pass, plus what MCP heads consume."""

    video_velocity: Tensor  # (B, F, N, C) at the noisy-video slots
    action_velocity: Tensor  # (B, F, A, d) at the noisy-action slots (model units)
    cond: Tensor  # (B, L, dim) per-token conditioning (noise-level embedding)
    attn_mask: Tensor  # (L, L) bool, the training mask
    shape: StepShape  # chunk size and attention window of this window's layout and mask
    hidden_states: list[Tensor] | None = None  # after each block, each (B, L, dim)
    num_video_tokens: int = 0  # F * N: the noisy-video slots are the first ones

    @property
    def K(self) -> int:
        """Latent frames per chunk of this window's layout."""
        return self.shape.K

    @property
    def noisy_video_hidden(self) -> list[Tensor]:
        """Per layer, the hidden states of the noisy-video slots, each (B, F*N, dim)."""
        if self.hidden_states is None:
            raise ValueError("hidden states were not kept; pass return_hidden=True")
        return [h[:, : self.num_video_tokens] for h in self.hidden_states]


@dataclass
class TrainOutputs:
    loss: Tensor  # scalar, loss_video + loss_action
    loss_video: Tensor
    loss_action: Tensor
    inputs: WindowInputs
    outputs: WindowOutputs

    @property
    def metrics(self) -> dict[str, float]:
        return {
            "loss/video": self.loss_video.item(),
            "loss/action": self.loss_action.item(),
            "loss/total": self.loss.item(),
        }


class WorldModel(nn.Module):
    drafts_next_chunk = False  # only heads that draft (worldmodel/heads) make it True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        # content embeddings
        self.video_in = nn.Linear(cfg.latent_dim, cfg.dim)
        self.action_in = nn.Sequential(
            nn.Linear(cfg.action_token_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim)
        )
        # positional and token-type embeddings
        self.type_embed = nn.Embedding(4, cfg.dim)
        self.frame_embed = nn.Embedding(cfg.max_K, cfg.dim)
        self.position_embed = nn.Embedding(cfg.tokens_per_frame, cfg.dim)
        # chunk positions: the sequence's max_chunks, plus MCP_CHUNKS_AHEAD for the noisy tokens
        # of MCP depths, which carry the positions of the chunk they predict
        positions = cfg.max_chunks + MCP_CHUNKS_AHEAD
        chunk_pe = sinusoidal_embedding(torch.arange(positions), cfg.dim)  # (positions, dim)
        self.register_buffer("chunk_pe", chunk_pe.float(), persistent=False)
        # noise-level conditioning for AdaLN
        self.sigma_embed = nn.Sequential(
            nn.Linear(SIGMA_FREQUENCIES, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim)
        )
        self.blocks = nn.ModuleList(
            [Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.num_blocks)]
        )
        self.video_head = FinalLayer(cfg.dim, cfg.latent_dim)
        self.action_head = FinalLayer(cfg.dim, cfg.action_token_dim, hidden=cfg.dim)
        # raw joint targets <-> model units; its statistics travel with the weights
        self.action_codec = ActionCodec(cfg.action_dim, cfg.action_space, cfg.action_norm)
        for embedding in (self.type_embed, self.frame_embed, self.position_embed):
            nn.init.normal_(embedding.weight, std=0.02)
        # the blocks of a denoising pass (noisy tokens against the cache): ``run_blocks``, or
        # its compiled version (``worldmodel/inference/compiled.py``)
        self.denoising_blocks: Callable = run_blocks

    # ----------------------------------------------------------------- actions
    def encode_actions(self, actions: Tensor, reference: Tensor) -> Tensor:
        """Raw actions (B, F, A, d) and per-frame references (B, F, d) -> model units in the
        model's dtype (``worldmodel/model/actions.py``)."""
        return self.action_codec.encode(actions.to(self.device), reference.to(self.device)).to(
            self.dtype
        )

    def decode_actions_raw(self, actions: Tensor, reference: Tensor) -> Tensor:
        """Model units (B, F, A, d) and per-frame references (B, F, d) -> raw actions."""
        return self.action_codec.decode(actions, reference.to(actions.device))

    def window_actions(self, batch: dict, K: int) -> tuple[Tensor, Tensor | None]:
        """A training window's actions in model units (B, F, A, d), clipped to +-TRAIN_CLIP,
        padded tokens set to ``PAD_ACTION``, and the (B, F) mask of tokens that count in the
        action loss (None: all).

        batch: ``actions`` (B, F, A, d) raw, leading into each frame; ``start_joint_pos``
        (B, F, d) the joint positions when each frame's actions start (needed when the action
        space is relative); ``action_valid`` (B, F) bool, False on padding (optional)."""
        raw = batch["actions"].to(self.device)  # (B, F, A, d)
        start = batch.get("start_joint_pos")
        if start is None:
            if self.config.action_space == "relative":
                raise ValueError("relative actions need batch['start_joint_pos'] (B, F, d)")
            start = torch.zeros(*raw.shape[:2], raw.shape[-1], device=self.device)
        actions = self.encode_actions(raw, chunk_reference(start.to(self.device), K))
        actions = actions.clamp(-TRAIN_CLIP, TRAIN_CLIP)
        mask = batch.get("action_valid")
        valid = batch.get("valid")
        if mask is None:
            return actions, None if valid is None else valid.to(self.device, torch.bool)
        mask = mask.to(self.device, torch.bool)  # (B, F)
        actions = torch.where(mask[..., None, None], actions, torch.full_like(actions, PAD_ACTION))
        if valid is not None:
            mask = mask & valid.to(self.device, torch.bool)
        return actions, mask

    @property
    def dtype(self) -> torch.dtype:
        return self.video_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.video_in.weight.device

    # ----------------------------------------------------------------- embeddings
    def positional(self, layout: TokenLayout, chunks_ahead: int = 0) -> Tensor:
        """(T, dim): chunk + frame-in-chunk + within-frame position + token-type embeddings.

        ``chunks_ahead``: the tokens carry the chunk positions that many chunks past their
        slots (an MCP depth's noisy tokens, at most ``MCP_CHUNKS_AHEAD``)."""
        if int(layout.chunk.max()) >= self.config.max_chunks:
            raise ValueError(
                f"chunk index {int(layout.chunk.max())} is past max_chunks="
                f"{self.config.max_chunks}; raise max_chunks in the model config"
            )
        if not 0 <= chunks_ahead <= MCP_CHUNKS_AHEAD:
            raise ValueError(
                f"chunks_ahead={chunks_ahead} is not valid; positions may run 0.."
                f"{MCP_CHUNKS_AHEAD} chunks ahead of the slots"
            )
        device = self.device
        return (
            self.chunk_pe.to(self.dtype)[layout.chunk.to(device) + chunks_ahead]
            + self.frame_embed(layout.frame.to(device))
            + self.position_embed(layout.position.to(device))
            + self.type_embed(layout.kind.to(device))
        )

    def chunk_size(self, K: int | None) -> int:
        """``K`` checked against the frame-in-chunk embeddings (1..config.max_K); None =
        config.K."""
        if K is None:
            return self.config.K
        if not 1 <= K <= self.config.max_K:
            raise ValueError(f"chunk size K={K} is not valid; must be in 1..{self.config.max_K}")
        return K

    def num_chunks(self, frames: int, K: int | None = None) -> int:
        """Whole chunks of ``K`` (default config.K) in ``frames`` latent frames (an error if
        there is a partial chunk)."""
        K = self.chunk_size(K)
        if frames % K != 0 or frames == 0:
            raise ValueError(f"{frames} latent frames are not whole chunks of K={K}")
        return frames // K

    def embed_video(
        self,
        video: Tensor,
        kind: int,
        first_chunk: int,
        K: int | None = None,
        chunks_ahead: int = 0,
    ) -> tuple[Tensor, TokenLayout]:
        """Video latents (B, F, N, C) of whole chunks of ``K`` frames (default config.K) ->
        tokens (B, F*N, dim) and their layout (slots from ``first_chunk``); ``chunks_ahead``:
        the positions they carry run that many chunks past their slots (``positional``)."""
        B, F, N, C = video.shape
        if (N, C) != (self.config.tokens_per_frame, self.config.latent_dim):
            raise ValueError(
                f"video tokens (N, C)={(N, C)} do not match the config's tokens_per_frame="
                f"{self.config.tokens_per_frame}, latent_dim={self.config.latent_dim}"
            )
        K = self.chunk_size(K)
        layout = block_layout(kind, first_chunk, self.num_chunks(F, K), K, N)
        tokens = self.video_in(video.reshape(B, F * N, C))  # (B, F*N, dim)
        return tokens + self.positional(layout, chunks_ahead), layout

    def embed_actions(
        self, actions: Tensor, kind: int, first_chunk: int, K: int | None = None
    ) -> tuple[Tensor, TokenLayout]:
        """Normalised actions (B, F, A, d) of whole chunks of ``K`` frames (default config.K)
        -> one token per frame (B, F, dim) and the layout."""
        B, F, A, d = actions.shape
        K = self.chunk_size(K)
        layout = block_layout(kind, first_chunk, self.num_chunks(F, K), K, 1)
        tokens = self.action_in(actions.reshape(B, F, A * d))  # (B, F, dim)
        return tokens + self.positional(layout), layout

    def condition(self, sigma: Tensor) -> Tensor:
        """Per-token noise levels (B, T) -> AdaLN conditioning (B, T, dim)."""
        features = sinusoidal_embedding(sigma * 1000.0, SIGMA_FREQUENCIES)  # (B, T, 256)
        return self.sigma_embed(features.to(self.dtype))

    def decode_actions(self, hidden: Tensor, cond: Tensor) -> Tensor:
        """Action-token hidden states (B, F, dim) -> velocities (B, F, A, d)."""
        B, F, _ = hidden.shape
        out = self.action_head(hidden, cond)  # (B, F, A*d)
        return out.view(B, F, self.config.actions_per_frame, self.config.action_dim)

    def decode_video(self, hidden: Tensor, cond: Tensor, frames: int) -> Tensor:
        """Video-token hidden states (B, F*N, dim) -> velocities (B, F, N, C)."""
        B = hidden.shape[0]
        out = self.video_head(hidden, cond)  # (B, F*N, C)
        return out.view(B, frames, self.config.tokens_per_frame, self.config.latent_dim)

    # ----------------------------------------------------------------- teacher-forced pass
    @property
    def inference_shape(self) -> StepShape:
        """The chunk size and attention window of inference (``config.K``, ``attention_window``)."""
        return StepShape(self.config.K, self.config.attention_window)

    def forward_window(
        self, inputs: WindowInputs, return_hidden: bool = False, shape: StepShape | None = None
    ) -> WindowOutputs:
        """Run one window of chunks under the training mask (``shape``: chunk size and
        attention window, default ``inference_shape``); the velocity predictions of every
        chunk."""
        shape = self.inference_shape if shape is None else shape
        K = self.chunk_size(shape.K)
        B, F, N, _ = inputs.noisy_video.shape
        parts = [
            self.embed_video(inputs.noisy_video, NOISY_VIDEO, 0, K),
            self.embed_video(inputs.clean_video, CLEAN_VIDEO, 0, K),
            self.embed_actions(inputs.noisy_action, NOISY_ACTION, 0, K),
            self.embed_actions(inputs.clean_action, CLEAN_ACTION, 0, K),
        ]
        x = torch.cat([tokens for tokens, _ in parts], dim=1)  # (B, L, dim)
        layout = concat_layouts([lay for _, lay in parts])
        attn_mask = may_attend(layout, layout, shape.attention_window).to(self.device)  # (L, L)
        sigma = torch.cat(
            [
                per_token(inputs.noisy_video_sigma, N),  # (B, F*N)
                per_token(inputs.clean_video_sigma, N),  # (B, F*N)
                inputs.noisy_action_sigma,  # (B, F)
                torch.zeros_like(inputs.noisy_action_sigma),  # (B, F) clean actions
            ],
            dim=1,
        )  # (B, L)
        cond = self.condition(sigma)  # (B, L, dim)

        hidden_states = [] if return_hidden else None
        for block in self.blocks:
            x, _ = block(x, cond, attn_mask)
            if return_hidden:
                hidden_states.append(x)

        video_slots = slice(0, F * N)
        action_slots = slice(2 * F * N, 2 * F * N + F)
        return WindowOutputs(
            video_velocity=self.decode_video(x[:, video_slots], cond[:, video_slots], F),
            action_velocity=self.decode_actions(x[:, action_slots], cond[:, action_slots]),
            cond=cond,
            attn_mask=attn_mask,
            shape=StepShape(K, shape.attention_window),
            hidden_states=hidden_states,
            num_video_tokens=F * N,
        )

    def noise_window(
        self, batch: dict, generator: torch.Generator | None
    ) -> tuple[WindowInputs, tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Draw noise levels and noise for a batch.

        Returns (inputs, (video x0, actions x0 in model units), (video noise, action noise)).
        """
        cfg = self.config
        video = batch["video"].to(self.device, self.dtype)  # (B, F, N, C)
        actions = batch["model_actions"]  # (B, F, A, d) from window_actions
        B, F = video.shape[:2]
        video_sigma = flow.sample_sigma((B, F), cfg.video_shift, generator, self.device)
        action_sigma = flow.sample_sigma((B, F), cfg.action_shift, generator, self.device)
        video_sigma, action_sigma = video_sigma.to(self.dtype), action_sigma.to(self.dtype)
        video_noise = standard_normal(video.shape, video, generator)  # (B, F, N, C)
        action_noise = standard_normal(actions.shape, actions, generator)  # (B, F, A, d)
        clean_video, clean_sigma = flow.renoise_history(
            video, cfg.noisy_history_max_u, cfg.noisy_history_prob, generator, cfg.history_shift
        )  # (B, F, N, C), (B, F)
        inputs = WindowInputs(
            noisy_video=flow.interpolate(video, video_noise, video_sigma),
            noisy_video_sigma=video_sigma,
            clean_video=clean_video,
            clean_video_sigma=clean_sigma,
            noisy_action=flow.interpolate(actions, action_noise, action_sigma),
            noisy_action_sigma=action_sigma,
            clean_action=actions,
        )
        return inputs, (video, actions), (video_noise, action_noise)

    def draw_step_shape(self, generator: torch.Generator | None) -> StepShape:
        """This step's chunk size, uniform over ``config.K_choices`` (``config.K`` without
        choices), then its attention window, uniform over ``config.train_attention_windows``
        (``config.attention_window`` without a range); a single choice draws nothing."""
        K = _draw(self.config.K_choices or [self.config.K], generator)
        windows = self.config.train_attention_windows
        if windows is None:
            return StepShape(K, self.config.attention_window)
        return StepShape(K, _draw(list(range(windows[0], windows[1] + 1)), generator))

    def crop_to_chunks(self, batch: dict, K: int) -> dict:
        """The batch cut to its ``F // K`` whole chunks of ``K`` frames: the trailing
        ``F % K`` frames of video (B, F, N, C), actions (B, F, A, d) and valid (B, F) are
        dropped. The other keys are kept as they are."""
        F = batch["video"].shape[1]
        frames = F // self.chunk_size(K) * K
        if frames == 0:
            raise ValueError(f"a window of {F} latent frames holds no whole chunk of K={K}")
        if frames == F:
            return batch
        cropped = dict(batch)
        for key in ("video", "actions", "valid", "action_valid", "start_joint_pos"):
            if batch.get(key) is not None:
                cropped[key] = batch[key][:, :frames]
        return cropped

    def compute_train_outputs(
        self,
        batch: dict,
        generator: torch.Generator | None = None,
        return_hidden: bool = False,
        shape: StepShape | None = None,
    ) -> TrainOutputs:
        """Losses and everything an MCP head needs. batch: video (B, F, N, C) clean latents,
        actions (B, F, A, d) raw, valid (B, F) bool frames inside the episode (optional).

        ``shape``: the chunk size and attention window of this step; None draws them
        (``draw_step_shape``, before the noise). The window is cut to whole chunks of its K
        (``crop_to_chunks``)."""
        shape = self.draw_step_shape(generator) if shape is None else shape
        K = self.chunk_size(shape.K)
        batch = self.crop_to_chunks(batch, K)
        model_actions, action_valid = self.window_actions(batch, K)  # (B, F, A, d), (B, F)
        batch = {**batch, "model_actions": model_actions}
        inputs, (video, actions), (video_noise, action_noise) = self.noise_window(batch, generator)
        valid = batch.get("valid")
        valid = None if valid is None else valid.to(self.device, torch.bool)  # (B, F)
        out = self.forward_window(inputs, return_hidden=return_hidden, shape=shape)
        loss_video = flow.weighted_mse(
            out.video_velocity,
            flow.velocity_target(video, video_noise),
            inputs.noisy_video_sigma,
            valid,
            self.config.video_shift,
            self.config.loss_weighting,
        )
        loss_action = flow.weighted_mse(
            out.action_velocity,
            flow.velocity_target(actions, action_noise),
            inputs.noisy_action_sigma,
            action_valid,
            self.config.action_shift,
            self.config.loss_weighting,
        )
        return TrainOutputs(loss_video + loss_action, loss_video, loss_action, inputs, out)

    def forward_train(
        self, batch: dict, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """The model contract: ``(loss, metrics)`` with metrics loss/video, loss/action,
        loss/total, chunk_size (this step's K) when ``config.K_choices`` is set and
        attention_window (a window of chunks) when ``config.train_attention_windows`` is.

        ``batch["step_shape"]``, when present, fixes this step's ``StepShape`` instead of
        drawing it (a trainer that splits one step over processes draws it once for all)."""
        result = self.compute_train_outputs(batch, generator, shape=batch.get("step_shape"))
        metrics = result.metrics
        if self.config.K_choices is not None:
            metrics["chunk_size"] = float(result.outputs.K)
        window = result.outputs.shape.attention_window
        if self.config.train_attention_windows is not None and window is not None:
            metrics["attention_window"] = float(window)
        return result.loss, metrics

    def forward(self, batch: dict, generator: torch.Generator | None = None):
        return self.forward_train(batch, generator)

    # ----------------------------------------------------------------- KV-cached inference
    def init_cache(self, batch_size: int | None = None) -> KVCache:
        """An empty cache; ``batch_size`` is needed only to denoise with no context."""
        return KVCache(num_layers=self.config.num_blocks, batch_size=batch_size)

    def run_cached(
        self,
        tokens: Tensor,
        cond: Tensor,
        chunk: int,
        cache: KVCache,
        append: bool,
        hidden_states: list[Tensor] | None = None,
        attn_mask: Tensor | None = None,
        blocks: Sequence[Block] | None = None,
    ) -> Tensor:
        """New tokens (B, T, dim) from ``chunk`` on attend to the cache (from that chunk's
        window on) and to each other (all of it, or where ``attn_mask`` (T, T_past + T) says).

        With ``append`` their keys/values join the cache (clean tokens only). A list passed
        as ``hidden_states`` receives the output of every block (the MCP-parallel hook).
        ``blocks``: the backbone's by default; MCP depth 1's run against its own cache.
        """
        blocks = self.blocks if blocks is None else blocks
        first_chunk = first_visible_chunk(chunk, self.config.attention_window)
        if attn_mask is not None:
            attn_mask = attn_mask.to(self.device)
        pasts = [cache.past(layer, first_chunk) for layer in range(len(blocks))]
        run = run_blocks if append else self.denoising_blocks
        outputs, kvs = run(blocks, tokens, cond, attn_mask, pasts)
        if append:
            for layer, kv in enumerate(kvs):
                cache.append(layer, kv)
        if hidden_states is not None:
            hidden_states.extend(outputs)
        return outputs[-1]  # (B, T, dim)

    def _check_cache_batch(self, cache: KVCache, batch_size: int) -> None:
        if cache.batch_size is None:
            cache.batch_size = batch_size
        elif cache.batch_size != batch_size:
            raise ValueError(
                f"batch size {batch_size} does not match the cache's {cache.batch_size}"
            )

    def _frame_sigma(self, sigma: Tensor | float | None, B: int, K: int) -> Tensor:
        """A float, (B,) or (B, K) noise level -> (B, K) in the model's dtype."""
        sigma = 0.0 if sigma is None else sigma
        sigma = torch.as_tensor(sigma, dtype=self.dtype, device=self.device)
        if sigma.ndim == 1:
            sigma = sigma[:, None]
        return sigma.expand(B, K)

    def append_clean(
        self,
        cache: KVCache,
        video_chunk: Tensor | None = None,
        action_chunk: Tensor | None = None,
        video_sigma: Tensor | float | None = None,
        hidden_states: list[Tensor] | None = None,
    ) -> None:
        """Append the clean video (B, K, N, C) and/or the actions in model units (B, K, A, d) of
        the next chunk (its chunk size K, 1..config.K, is read from the shapes); both in one
        pass (``append_clean_segments``).

        Order follows the mask: clean video of chunk i first, then its clean actions.
        ``video_sigma`` (float or (B, K)) marks re-noised history; default 0 (clean).
        """
        segments = []
        if video_chunk is not None:
            segments.append(CleanSegment(CLEAN_VIDEO, video_chunk, video_sigma))
        if action_chunk is not None:
            segments.append(CleanSegment(CLEAN_ACTION, action_chunk))
        self.append_clean_segments(cache, segments, hidden_states)

    def append_clean_segments(
        self,
        cache: KVCache,
        segments: Sequence[CleanSegment],
        hidden_states: list[Tensor] | None = None,
    ) -> list[TokenLayout]:
        """Append consecutive clean segments (video i, actions i, video i+1, ...) to the cache
        in one pass under the layout mask; their layouts.

        A list passed as ``hidden_states`` receives every block's output of the appended tokens
        (B, T_new, dim), in segment order: the hook MCP-parallel inference caches from.
        """
        videos, actions = cache.num_video_chunks, cache.num_action_chunks
        tokens, sigmas, layouts = [], [], []
        for segment in segments:
            values = segment.values.to(self.device, self.dtype)
            B, K = values.shape[:2]
            self._check_cache_batch(cache, B)
            if segment.kind == CLEAN_VIDEO:
                if actions != videos:
                    raise ValueError(
                        f"append the actions of chunk {videos - 1} before its next video"
                    )
                token, layout = self.embed_video(values, CLEAN_VIDEO, videos, K)  # (B, K*N, dim)
                frame_sigma = self._frame_sigma(segment.sigma, B, K)  # (B, K)
                sigmas.append(per_token(frame_sigma, values.shape[2]))  # (B, K*N)
                videos += 1
            else:
                if videos != actions + 1:
                    raise ValueError(
                        f"append the clean video of chunk {actions} before its actions"
                    )
                token, layout = self.embed_actions(values, CLEAN_ACTION, actions, K)  # (B, K, dim)
                sigmas.append(torch.zeros(B, K, dtype=self.dtype, device=self.device))
                actions += 1
            tokens.append(token)
            layouts.append(layout)
        if not segments:
            return layouts
        oldest, mask = cache.append_mask(layouts, self.config.attention_window)
        cond = self.condition(torch.cat(sigmas, dim=1))  # (B, T_new, dim)
        self.run_cached(
            torch.cat(tokens, dim=1), cond, oldest, cache, True, hidden_states, attn_mask=mask
        )
        for layout in layouts:
            cache.add_segment(layout)
        return layouts

    def predict_video_velocity(
        self,
        cache: KVCache,
        noisy: Tensor,
        sigma: Tensor,
        hidden_states: list[Tensor] | None = None,
    ) -> Tensor:
        """Noisy video (B, K, N, C) of the next chunk at levels (B, K) -> velocity (B, K, N, C).

        Runs against the cache without appending (noisy tokens are never cached). A list
        passed as ``hidden_states`` receives every block's output (B, K*N, dim).
        """
        chunk = cache.num_video_chunks
        if cache.num_action_chunks != chunk:
            raise ValueError(f"append the actions of chunk {chunk - 1} before the next video")
        B, K, N, _ = noisy.shape
        tokens, _ = self.embed_video(noisy, NOISY_VIDEO, chunk, K)  # (B, K*N, dim)
        cond = self.condition(per_token(sigma, N))  # (B, K*N, dim)
        x = self.run_cached(
            tokens, cond, chunk, cache, append=False, hidden_states=hidden_states
        )  # (B, K*N, dim)
        return self.decode_video(x, cond, K)

    def predict_action_velocity(self, cache: KVCache, noisy: Tensor, sigma: Tensor) -> Tensor:
        """Noisy actions in model units (B, K, A, d) at levels (B, K) -> velocity (B, K, A, d).

        The cache must hold the clean video of this chunk (and nothing of its actions).
        """
        chunk = cache.num_action_chunks
        if cache.num_video_chunks != chunk + 1:
            raise ValueError(f"append the clean video of chunk {chunk} before its actions")
        tokens, _ = self.embed_actions(noisy, NOISY_ACTION, chunk, noisy.shape[1])  # (B, K, dim)
        cond = self.condition(sigma)  # (B, K, dim)
        x = self.run_cached(tokens, cond, chunk, cache, append=False)  # (B, K, dim)
        return self.decode_actions(x, cond)
