"""``WorldModel``: the chunk-causal video/action flow-matching backbone (LingBot-VA style).

Glossary and the attention rules: ``worldmodel/model/layout.py``. Shapes:
    B batch, F = num_chunks * K latent frames, N video tokens per frame, C latent_dim,
    A actions_per_frame, d action_dim, dim model width, L training-sequence length.

Training (``forward_train``) runs one window as ``[noisy video | clean video | noisy action |
clean action]`` under ``training_mask`` and returns the video + action flow losses.
Random chunk size: with ``config.K_choices`` each step draws its chunk size ``K_step`` from
them (``draw_chunk_size``), cuts the window's F frames into ``F // K_step`` whole chunks and
drops the trailing frames that do not fill one (``crop_to_chunks``); layout, mask and the MCP
heads' chunk shift then use ``K_step``. Inference uses ``config.K`` unless given a ``K``.
Inference runs chunk by chunk against a ``KVCache`` of clean tokens:

    cache = model.init_cache()
    for each chunk i:
        video = model.denoise_video_chunk(cache, steps)           # noisy video i vs cache
        actions = model.denoise_action_chunk(cache, video, steps)  # appends clean video i
        model.append_clean(cache, action_chunk=actions)            # appends clean action i
    closed loop: model.observe_chunk(cache, real_video, actions) replaces the imagined
    clean video i by the real frames before the executed actions are appended.

Hooks for multi-chunk prediction (MCP) heads: ``compute_train_outputs`` returns the inputs,
the per-token conditioning, the mask and (``return_hidden=True``) the hidden states after
every block; ``WindowOutputs.noisy_video_hidden`` slices the noisy-video slots
(B, F*N, dim) per layer. ``embed_video``, ``condition``, ``blocks`` and ``video_head`` are
the pieces an MCP depth reuses (same slots, same mask, shared output head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from worldmodel import flow
from worldmodel.model.config import ModelConfig
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
from worldmodel.model.transformer import Block, FinalLayer

SIGMA_FREQUENCIES = 256  # sinusoidal features of the noise level before its MLP


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


def per_token(sigma: Tensor, tokens_per_frame: int) -> Tensor:
    """(B, F) per-frame values -> (B, F * tokens_per_frame), repeated over a frame's tokens."""
    return sigma.repeat_interleave(tokens_per_frame, dim=1)


def standard_normal(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None):
    """N(0, 1) draws of ``shape`` in ``like``'s dtype/device, drawn on the generator's device."""
    draw_device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=draw_device, dtype=like.dtype)
    return noise.to(like.device)


@dataclass
class WindowInputs:
    """One training window, already noised. Actions are normalised (see ``set_action_stats``)."""

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
    action_velocity: Tensor  # (B, F, A, d) at the noisy-action slots (normalised units)
    cond: Tensor  # (B, L, dim) per-token conditioning (noise-level embedding)
    attn_mask: Tensor  # (L, L) bool, the training mask
    K: int  # latent frames per chunk of this window's layout
    hidden_states: list[Tensor] | None = None  # after each block, each (B, L, dim)
    num_video_tokens: int = 0  # F * N: the noisy-video slots are the first ones

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


@dataclass
class KVCache:
    """Keys/values of the clean tokens seen so far, per layer, appended one segment at a time.

    A segment is the clean video or the clean actions of one chunk, in the order
    video 0, action 0, video 1, action 1, ...; noisy tokens are never appended.
    """

    depth: int
    keys: list[Tensor | None] = field(default_factory=list)  # per layer (B, heads, T, hd)
    values: list[Tensor | None] = field(default_factory=list)
    chunk: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # (T,)
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # (kind, chunk, length)
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [None] * self.depth
            self.values = [None] * self.depth

    @property
    def num_video_chunks(self) -> int:
        return sum(kind == CLEAN_VIDEO for kind, _, _ in self.segments)

    @property
    def num_action_chunks(self) -> int:
        return sum(kind == CLEAN_ACTION for kind, _, _ in self.segments)

    def __len__(self) -> int:
        return self.chunk.numel()

    def past(self, layer: int, first_chunk: int) -> tuple[Tensor, Tensor] | None:
        """Cached (keys, values) of ``layer`` from ``first_chunk`` on (the attention window)."""
        if self.keys[layer] is None:
            return None
        start = int((self.chunk < first_chunk).sum())  # tokens are sorted by chunk
        return self.keys[layer][:, :, start:], self.values[layer][:, :, start:]

    def append(self, layer: int, kv: tuple[Tensor, Tensor]) -> None:
        k, v = kv  # each (B, heads, T_new, hd)
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)

    def add_segment(self, kind: int, chunk: int, length: int) -> None:
        new = torch.full((length,), chunk, dtype=torch.long)
        self.chunk = torch.cat([self.chunk, new])
        self.segments.append((kind, chunk, length))

    def drop_last_segment(self) -> tuple[int, int, int]:
        """Forget the most recently appended segment (e.g. an imagined clean video chunk)."""
        kind, chunk, length = self.segments.pop()
        keep = len(self) - length
        self.chunk = self.chunk[:keep]
        for layer in range(self.depth):
            if keep == 0:
                self.keys[layer] = self.values[layer] = None
            else:
                self.keys[layer] = self.keys[layer][:, :, :keep]
                self.values[layer] = self.values[layer][:, :, :keep]
        return kind, chunk, length


class WorldModel(nn.Module):
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
        self.frame_embed = nn.Embedding(cfg.K, cfg.dim)
        self.position_embed = nn.Embedding(cfg.tokens_per_frame, cfg.dim)
        chunk_pe = sinusoidal_embedding(torch.arange(cfg.max_chunks), cfg.dim)  # (max_chunks, dim)
        self.register_buffer("chunk_pe", chunk_pe.float(), persistent=False)
        # noise-level conditioning for AdaLN
        self.sigma_embed = nn.Sequential(
            nn.Linear(SIGMA_FREQUENCIES, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim)
        )
        self.blocks = nn.ModuleList(
            [Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)]
        )
        self.video_head = FinalLayer(cfg.dim, cfg.latent_dim)
        self.action_head = FinalLayer(cfg.dim, cfg.action_token_dim, hidden=cfg.dim)
        # action normalisation statistics travel with the weights
        self.register_buffer("action_mean", torch.zeros(cfg.action_dim))
        self.register_buffer("action_std", torch.ones(cfg.action_dim))
        for embedding in (self.type_embed, self.frame_embed, self.position_embed):
            nn.init.normal_(embedding.weight, std=0.02)

    # ----------------------------------------------------------------- normalisation
    def set_action_stats(self, mean: Tensor, std: Tensor) -> None:
        """Per-action-dim mean and std (action_dim,) of the training data."""
        mean, std = torch.as_tensor(mean), torch.as_tensor(std)
        if mean.shape != self.action_mean.shape or std.shape != self.action_std.shape:
            raise ValueError(
                f"action stats must have shape ({self.config.action_dim},), got "
                f"{tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if (std <= 0).any():
            raise ValueError("action std must be > 0 in every dim")
        self.action_mean.copy_(mean)
        self.action_std.copy_(std)

    def normalise_actions(self, actions: Tensor) -> Tensor:
        """Raw (B, F, A, d) -> zero-mean unit-std (B, F, A, d) in the model's dtype."""
        return ((actions - self.action_mean) / self.action_std).to(self.dtype)

    def denormalise_actions(self, actions: Tensor) -> Tensor:
        return actions * self.action_std + self.action_mean

    @property
    def dtype(self) -> torch.dtype:
        return self.video_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.video_in.weight.device

    # ----------------------------------------------------------------- embeddings
    def positional(self, layout: TokenLayout) -> Tensor:
        """(T, dim): chunk + frame-in-chunk + within-frame position + token-type embeddings."""
        if int(layout.chunk.max()) >= self.config.max_chunks:
            raise ValueError(
                f"chunk index {int(layout.chunk.max())} is past max_chunks="
                f"{self.config.max_chunks}; raise max_chunks in the model config"
            )
        device = self.device
        return (
            self.chunk_pe.to(self.dtype)[layout.chunk.to(device)]
            + self.frame_embed(layout.frame.to(device))
            + self.position_embed(layout.position.to(device))
            + self.type_embed(layout.kind.to(device))
        )

    def chunk_size(self, K: int | None) -> int:
        """``K`` checked against the frame-in-chunk embeddings (1..config.K); None = config.K."""
        if K is None:
            return self.config.K
        if not 1 <= K <= self.config.K:
            raise ValueError(f"chunk size K={K} is not valid; must be in 1..{self.config.K}")
        return K

    def num_chunks(self, frames: int, K: int | None = None) -> int:
        """Whole chunks of ``K`` (default config.K) in ``frames`` latent frames (an error if
        there is a partial chunk)."""
        K = self.chunk_size(K)
        if frames % K != 0 or frames == 0:
            raise ValueError(f"{frames} latent frames are not whole chunks of K={K}")
        return frames // K

    def embed_video(
        self, video: Tensor, kind: int, first_chunk: int, K: int | None = None
    ) -> tuple[Tensor, TokenLayout]:
        """Video latents (B, F, N, C) of whole chunks of ``K`` frames (default config.K) ->
        tokens (B, F*N, dim) and their layout."""
        B, F, N, C = video.shape
        if (N, C) != (self.config.tokens_per_frame, self.config.latent_dim):
            raise ValueError(
                f"video tokens (N, C)={(N, C)} do not match the config's tokens_per_frame="
                f"{self.config.tokens_per_frame}, latent_dim={self.config.latent_dim}"
            )
        K = self.chunk_size(K)
        layout = block_layout(kind, first_chunk, self.num_chunks(F, K), K, N)
        tokens = self.video_in(video.reshape(B, F * N, C))  # (B, F*N, dim)
        return tokens + self.positional(layout), layout

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
    def forward_window(
        self, inputs: WindowInputs, return_hidden: bool = False, K: int | None = None
    ) -> WindowOutputs:
        """Run one window of chunks of ``K`` frames (default config.K) under the training mask;
        the velocity predictions of every chunk."""
        cfg = self.config
        K = self.chunk_size(K)
        B, F, N, _ = inputs.noisy_video.shape
        parts = [
            self.embed_video(inputs.noisy_video, NOISY_VIDEO, 0, K),
            self.embed_video(inputs.clean_video, CLEAN_VIDEO, 0, K),
            self.embed_actions(inputs.noisy_action, NOISY_ACTION, 0, K),
            self.embed_actions(inputs.clean_action, CLEAN_ACTION, 0, K),
        ]
        x = torch.cat([tokens for tokens, _ in parts], dim=1)  # (B, L, dim)
        layout = concat_layouts([lay for _, lay in parts])
        attn_mask = may_attend(layout, layout, cfg.attention_window).to(self.device)  # (L, L)
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
            K=K,
            hidden_states=hidden_states,
            num_video_tokens=F * N,
        )

    def noise_window(
        self, batch: dict, generator: torch.Generator | None
    ) -> tuple[WindowInputs, tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Draw noise levels and noise for a batch.

        Returns (inputs, (video x0, normalised actions x0), (video noise, action noise)).
        """
        cfg = self.config
        video = batch["video"].to(self.device, self.dtype)  # (B, F, N, C)
        actions = self.normalise_actions(batch["actions"].to(self.device))  # (B, F, A, d)
        B, F = video.shape[:2]
        video_sigma = flow.sample_sigma((B, F), cfg.video_shift, generator, self.device)
        action_sigma = flow.sample_sigma((B, F), cfg.action_shift, generator, self.device)
        video_sigma, action_sigma = video_sigma.to(self.dtype), action_sigma.to(self.dtype)
        video_noise = standard_normal(video.shape, video, generator)  # (B, F, N, C)
        action_noise = standard_normal(actions.shape, actions, generator)  # (B, F, A, d)
        clean_video, clean_sigma = flow.renoise_history(
            video, cfg.noisy_history_max_sigma, cfg.noisy_history_prob, generator
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

    def draw_chunk_size(self, generator: torch.Generator | None) -> int:
        """This step's chunk size: uniform over ``config.K_choices`` (one draw from
        ``generator``), ``config.K`` without choices; a single choice draws nothing."""
        choices = self.config.K_choices
        if choices is None:
            return self.config.K
        if len(choices) == 1:
            return choices[0]
        device = generator.device if generator is not None else "cpu"
        index = torch.randint(len(choices), (1,), generator=generator, device=device)
        return choices[int(index)]

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
        for key in ("video", "actions", "valid"):
            if batch.get(key) is not None:
                cropped[key] = batch[key][:, :frames]
        return cropped

    def compute_train_outputs(
        self,
        batch: dict,
        generator: torch.Generator | None = None,
        return_hidden: bool = False,
        K: int | None = None,
    ) -> TrainOutputs:
        """Losses and everything an MCP head needs. batch: video (B, F, N, C) clean latents,
        actions (B, F, A, d) raw, valid (B, F) bool frames inside the episode (optional).

        ``K``: the chunk size of this step; None draws it (``draw_chunk_size``, before the
        noise). The window is cut to whole chunks of it (``crop_to_chunks``)."""
        K = self.draw_chunk_size(generator) if K is None else self.chunk_size(K)
        batch = self.crop_to_chunks(batch, K)
        inputs, (video, actions), (video_noise, action_noise) = self.noise_window(batch, generator)
        valid = batch.get("valid")
        valid = None if valid is None else valid.to(self.device, torch.bool)  # (B, F)
        out = self.forward_window(inputs, return_hidden=return_hidden, K=K)
        loss_video = flow.weighted_mse(
            out.video_velocity,
            flow.velocity_target(video, video_noise),
            inputs.noisy_video_sigma,
            valid,
        )
        loss_action = flow.weighted_mse(
            out.action_velocity,
            flow.velocity_target(actions, action_noise),
            inputs.noisy_action_sigma,
            valid,
        )
        return TrainOutputs(loss_video + loss_action, loss_video, loss_action, inputs, out)

    def forward_train(
        self, batch: dict, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """The model contract: ``(loss, metrics)`` with metrics loss/video, loss/action,
        loss/total, and chunk_size (this step's K) when ``config.K_choices`` is set.

        ``batch["chunk_size"]``, when present, fixes this step's K instead of drawing it (a
        trainer that splits one step over processes draws K once for all of them)."""
        result = self.compute_train_outputs(batch, generator, K=batch.get("chunk_size"))
        metrics = result.metrics
        if self.config.K_choices is not None:
            metrics["chunk_size"] = float(result.outputs.K)
        return result.loss, metrics

    def forward(self, batch: dict, generator: torch.Generator | None = None):
        return self.forward_train(batch, generator)

    # ----------------------------------------------------------------- KV-cached inference
    def init_cache(self, batch_size: int | None = None) -> KVCache:
        """An empty cache; ``batch_size`` is needed only to denoise with no context."""
        return KVCache(depth=self.config.depth, batch_size=batch_size)

    def run_cached(
        self,
        tokens: Tensor,
        cond: Tensor,
        chunk: int,
        cache: KVCache,
        append: bool,
        hidden_states: list[Tensor] | None = None,
    ) -> Tensor:
        """New tokens of ``chunk`` (B, T, dim) attend to the cache and to each other.

        With ``append`` their keys/values join the cache (clean tokens only). A list passed
        as ``hidden_states`` receives the output of every block (the MCP-parallel hook).
        """
        first_chunk = first_visible_chunk(chunk, self.config.attention_window)
        x = tokens
        for layer, block in enumerate(self.blocks):
            x, kv = block(x, cond, None, cache.past(layer, first_chunk))
            if append:
                cache.append(layer, kv)
            if hidden_states is not None:
                hidden_states.append(x)
        return x  # (B, T, dim)

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
        """Append the clean video (B, K, N, C) and/or raw actions (B, K, A, d) of the next chunk
        (its chunk size K, 1..config.K, is read from the shapes).

        Order follows the mask: clean video of chunk i first, then its clean actions.
        ``video_sigma`` (float or (B, K)) marks re-noised history; default 0 (clean).
        A list passed as ``hidden_states`` receives every block's output of the appended
        tokens (video first, then actions): the hook MCP-parallel inference caches from.
        """
        if video_chunk is not None:
            chunk = cache.num_video_chunks
            if cache.num_action_chunks != chunk:
                raise ValueError(f"append the actions of chunk {chunk - 1} before its next video")
            B, K, N, _ = video_chunk.shape
            self._check_cache_batch(cache, B)
            video_chunk = video_chunk.to(self.device, self.dtype)
            tokens, _ = self.embed_video(video_chunk, CLEAN_VIDEO, chunk, K)  # (B, K*N, dim)
            sigma = self._frame_sigma(video_sigma, B, K)  # (B, K)
            cond = self.condition(per_token(sigma, N))  # (B, K*N, dim)
            self.run_cached(tokens, cond, chunk, cache, append=True, hidden_states=hidden_states)
            cache.add_segment(CLEAN_VIDEO, chunk, K * N)
        if action_chunk is not None:
            chunk = cache.num_action_chunks
            if cache.num_video_chunks != chunk + 1:
                raise ValueError(f"append the clean video of chunk {chunk} before its actions")
            B, K = action_chunk.shape[:2]
            self._check_cache_batch(cache, B)
            actions = self.normalise_actions(action_chunk.to(self.device))  # (B, K, A, d)
            tokens, _ = self.embed_actions(actions, CLEAN_ACTION, chunk, K)  # (B, K, dim)
            cond = self.condition(torch.zeros(B, K, dtype=self.dtype, device=self.device))
            self.run_cached(tokens, cond, chunk, cache, append=True, hidden_states=hidden_states)
            cache.add_segment(CLEAN_ACTION, chunk, K)

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
        """Normalised noisy actions (B, K, A, d) at levels (B, K) -> velocity (B, K, A, d).

        The cache must hold the clean video of this chunk (and nothing of its actions).
        """
        chunk = cache.num_action_chunks
        if cache.num_video_chunks != chunk + 1:
            raise ValueError(f"append the clean video of chunk {chunk} before its actions")
        tokens, _ = self.embed_actions(noisy, NOISY_ACTION, chunk, noisy.shape[1])  # (B, K, dim)
        cond = self.condition(sigma)  # (B, K, dim)
        x = self.run_cached(tokens, cond, chunk, cache, append=False)  # (B, K, dim)
        return self.decode_actions(x, cond)

    def _euler_denoise(self, predict, shape, steps, shift, generator) -> Tensor:
        """Integrate from pure noise (sigma 1) to data (sigma 0) with ``steps`` Euler steps."""
        like = torch.empty(0, dtype=self.dtype, device=self.device)
        x = standard_normal(shape, like, generator)
        sigmas = flow.timestep_schedule(steps, shift).tolist()  # (steps + 1,) from 1 to 0
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            level = torch.full(shape[:2], sigma, dtype=self.dtype, device=self.device)  # (B, K)
            x = flow.euler_step(x, predict(x, level), sigma, sigma_next)
        return x

    def _cache_batch_size(self, cache: KVCache) -> int:
        if cache.batch_size is None:
            raise ValueError("empty cache: pass batch_size to init_cache")
        return cache.batch_size

    @torch.no_grad()
    def denoise_video_chunk(
        self,
        cache: KVCache,
        steps: int,
        generator: torch.Generator | None = None,
        K: int | None = None,
    ) -> Tensor:
        """Generate the next chunk's video latents (B, K, N, C) (video timestep shift);
        ``K`` defaults to config.K."""
        cfg = self.config
        K = self.chunk_size(K)
        shape = (self._cache_batch_size(cache), K, cfg.tokens_per_frame, cfg.latent_dim)
        return self._euler_denoise(
            lambda x, s: self.predict_video_velocity(cache, x, s),
            shape,
            steps,
            cfg.video_shift,
            generator,
        )

    @torch.no_grad()
    def denoise_action_chunk(
        self,
        cache: KVCache,
        video_chunk: Tensor | None,
        steps: int,
        generator: torch.Generator | None = None,
        K: int | None = None,
    ) -> Tensor:
        """Generate the raw actions (B, K, A, d) of the chunk whose video is ``video_chunk``.

        The clean video (B, K, N, C) is appended to the cache first (pass None if it already
        is); the actions are not appended: call ``append_clean(cache, action_chunk=...)``.
        ``K`` defaults to the frames of ``video_chunk``, else config.K.
        """
        cfg = self.config
        if K is None and video_chunk is not None:
            K = video_chunk.shape[1]
        K = self.chunk_size(K)
        if video_chunk is not None:
            self.append_clean(cache, video_chunk=video_chunk)
        shape = (self._cache_batch_size(cache), K, cfg.actions_per_frame, cfg.action_dim)
        actions = self._euler_denoise(
            lambda x, s: self.predict_action_velocity(cache, x, s),
            shape,
            steps,
            cfg.action_shift,
            generator,
        )
        return self.denormalise_actions(actions)

    @torch.no_grad()
    def observe_chunk(self, cache: KVCache, real_video: Tensor, actions: Tensor) -> None:
        """Closed-loop primitive: after ``actions`` (B, K, A, d) ran in the environment, the
        real frames (B, K, N, C) replace the imagined clean video of this chunk in the cache,
        then the executed actions are appended."""
        if cache.segments and cache.segments[-1][0] == CLEAN_VIDEO:
            cache.drop_last_segment()  # the imagined video of this chunk
        self.append_clean(cache, video_chunk=real_video, action_chunk=actions)

    @torch.no_grad()
    def imagine_chunk(
        self,
        cache: KVCache,
        video_steps: int,
        action_steps: int,
        generator: torch.Generator | None = None,
        K: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Closed-loop planning step: imagined video (B, K, N, C) and actions (B, K, A, d);
        ``K`` defaults to config.K.

        Leaves the imagined clean video in the cache; ``observe_chunk`` replaces it.
        """
        video = self.denoise_video_chunk(cache, video_steps, generator, K)
        actions = self.denoise_action_chunk(cache, video, action_steps, generator)
        return video, actions

    @torch.no_grad()
    def rollout_open_loop(
        self,
        context_video: Tensor,
        context_actions: Tensor,
        future_actions: Tensor,
        horizon: int,
        steps: int,
        generator: torch.Generator | None = None,
        K: int | None = None,
    ) -> Tensor:
        """Imagine ``horizon`` chunks of ``K`` frames (default config.K) from real context and
        the true future actions.

        context_video (B, Fc, N, C) and context_actions (B, Fc, A, d) hold whole real chunks;
        future_actions (B, >= horizon*K, A, d). Each imagined chunk is appended as clean
        context for the next. Returns the imagined video (B, horizon*K, N, C).
        """
        K = self.chunk_size(K)
        B, Fc = context_video.shape[:2]
        if Fc % K != 0 or context_actions.shape[1] != Fc:
            raise ValueError(f"context must be whole chunks of K={K} frames with their actions")
        if future_actions.shape[1] < horizon * K:
            raise ValueError(f"future_actions must cover horizon*K={horizon * K} frames")
        cache = self.init_cache(batch_size=B)
        for i in range(Fc // K):
            frames = slice(i * K, (i + 1) * K)
            self.append_clean(cache, context_video[:, frames], context_actions[:, frames])
        imagined = []
        for h in range(horizon):
            video = self.denoise_video_chunk(cache, steps, generator, K)  # (B, K, N, C)
            self.append_clean(cache, video, future_actions[:, h * K : (h + 1) * K])
            imagined.append(video)
        return torch.cat(imagined, dim=1)  # (B, horizon*K, N, C)
