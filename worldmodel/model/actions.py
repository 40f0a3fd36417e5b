"""Action units of the model: raw joint targets <-> relative, normalised, aligned actions.

Alignment (as in Robbyant/lingbot-va): the action token of latent frame ``f`` holds the
``A`` actions that lead INTO frame ``f`` (executed between frame ``f - 1`` and frame ``f``), so
the action denoiser is inverse dynamics: given the video of a chunk, which actions produced
it. An episode's frame 0 has no actions leading into it: its token is padding
(``PAD_ACTION`` in model units, masked out of the loss, clamped at inference and never
executed).

Action space (``ModelConfig.action_space``):
- ``relative`` (default, the references' ``get_relative_pose`` / LeRobot's
  ``use_relative_actions``): the joint targets of a chunk minus the joint positions observed
  when the chunk starts to execute (the frame before its first frame; frame 0 for an
  episode's first chunk), on the dims marked relative; the grippers stay absolute.
- ``absolute``: the joint targets as they are.

Normalisation (``ModelConfig.action_norm``), per action dim, fitted on the training episodes:
- ``quantile`` (default, as both references): q01 -> -1 and q99 -> +1; training targets
  are clipped to +-``TRAIN_CLIP``.
- ``zscore``: mean -> 0, one standard deviation -> 1.
Both are the affine map ``(x - offset) / scale``; offset, scale and the relative mask are
buffers of ``ActionCodec``, so they travel with the checkpoint.

Shapes: B batch, F latent frames, A actions per frame, d action dims.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTION_SPACES = ("relative", "absolute")
ACTION_NORMS = ("quantile", "zscore")
QUANTILES = (0.01, 0.99)
TRAIN_CLIP = 1.5  # training targets in model units are clipped to [-1.5, 1.5]
MIN_SCALE = 1e-2  # floor of the per-dim scale (a dim that never moves is not blown up)
PAD_ACTION = 0.0  # the padded token of an episode's first frame, in model units


def chunk_reference(start_joint_pos: Tensor, K: int) -> Tensor:
    """Per frame, the joint positions its chunk is relative to: (B, F, d) -> (B, F, d).

    ``start_joint_pos[:, f]`` are the joint positions observed when the actions of frame f
    start (frame f - 1); each frame takes the value of its chunk's first frame (chunks of
    ``K`` frames from frame 0 of the window, F a multiple of K)."""
    B, F, d = start_joint_pos.shape
    if F % K:
        raise ValueError(f"{F} frames are not whole chunks of K={K}")
    first = start_joint_pos.reshape(B, F // K, K, d)[:, :, :1]  # (B, F/K, 1, d)
    return first.expand(B, F // K, K, d).reshape(B, F, d)


def aligned_actions(actions: Tensor) -> tuple[Tensor, Tensor]:
    """Actions executed AFTER each frame (F, A, d) -> actions leading INTO each frame
    (F + 1, A, d) and the (F + 1,) bool mask of real tokens (frame 0 is padding)."""
    pad = torch.zeros_like(actions[:1])  # (1, A, d)
    valid = torch.ones(len(actions) + 1, dtype=torch.bool)
    valid[0] = False
    return torch.cat([pad, actions]), valid


def start_joint_positions(joint_pos: Tensor) -> Tensor:
    """Joint positions per frame (F + 1, d) -> those observed when the actions leading into
    each frame start: frame f - 1, and frame 0 for frame 0 (F + 1, d)."""
    return torch.cat([joint_pos[:1], joint_pos[:-1]])


class ActionCodec(nn.Module):
    """Raw joint targets <-> model units (module docstring); ``fit`` sets the statistics."""

    def __init__(self, action_dim: int, space: str = "relative", norm: str = "quantile") -> None:
        super().__init__()
        self.space, self.norm = space, norm
        self.register_buffer("offset", torch.zeros(action_dim))
        self.register_buffer("scale", torch.ones(action_dim))
        self.register_buffer("relative", torch.zeros(action_dim, dtype=torch.bool))

    def origin(self, reference: Tensor) -> Tensor:
        """What is subtracted from raw actions (..., d): the reference on relative dims."""
        if self.space == "absolute":
            return torch.zeros_like(reference)
        return reference * self.relative.to(reference.dtype)

    @torch.no_grad()
    def fit(self, actions: Tensor, references: Tensor, relative: Tensor) -> None:
        """Statistics of raw actions (M, A, d) with their chunk references (M, d);
        ``relative`` (d,) bool marks the dims taken relative to the reference."""
        d = self.offset.numel()
        if actions.shape[-1] != d or references.shape[-1] != d or relative.shape != (d,):
            raise ValueError(
                f"action stats need (M, A, {d}) actions, (M, {d}) references and a ({d},) "
                f"mask, got {tuple(actions.shape)}, {tuple(references.shape)}, "
                f"{tuple(relative.shape)}"
            )
        self.relative.copy_(relative.to(torch.bool))
        values = (actions - self.origin(references)[:, None]).reshape(-1, d).double()  # (M*A, d)
        if self.norm == "quantile":
            low, high = torch.quantile(values, torch.tensor(QUANTILES, dtype=values.dtype), dim=0)
            offset, scale = (low + high) / 2, (high - low) / 2
        else:
            offset, scale = values.mean(0), values.std(0)
        self.offset.copy_(offset.to(self.offset.dtype))
        self.scale.copy_(scale.clamp_min(MIN_SCALE).to(self.scale.dtype))

    def encode(self, actions: Tensor, reference: Tensor) -> Tensor:
        """Raw actions (B, F, A, d) and references (B, F, d) -> model units (B, F, A, d)."""
        origin = self.origin(reference.to(actions))[:, :, None]  # (B, F, 1, d)
        return (actions - origin - self.offset) / self.scale

    def decode(self, actions: Tensor, reference: Tensor) -> Tensor:
        """Model units (B, F, A, d) and references (B, F, d) -> raw actions (B, F, A, d)."""
        origin = self.origin(reference.to(actions))[:, :, None]  # (B, F, 1, d)
        return actions * self.scale.to(actions) + self.offset.to(actions) + origin
