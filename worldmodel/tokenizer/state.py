"""``state`` tokenizer: the state track's latent frame is the scene state, z-scored per channel.

A frame's scene state (``envs/state.py``: the 14 joint positions, then the poses of the task's
objects; S channels named in the dataset's ``state_names``) becomes ONE token of C = S
channels, ``(state - mean) / std`` with the mean and standard deviation of each channel over
every frame of the run's training episodes (``fit_state_statistics``; a channel that barely
moves, such as a yaw-only object's tilt, has its std floored at ``STD_FLOOR``). No rendering:
datasets of this track are collected without cameras, and the closed loop encodes the
observation's ``state``. The fitted statistics are part of the run's build (checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from worldmodel.data.episodes import EpisodeFile
from worldmodel.tokenizer.base import Tokenizer

STD_FLOOR = 1e-3  # in the channel's unit (m, rad, or the gripper's [0, 1] opening)


def fit_state_statistics(
    dataset: str | Path, indices: Iterable[int]
) -> tuple[list[str], list[float], list[float]]:
    """(channel names, mean, std) over every control-rate frame of episodes ``indices``."""
    with EpisodeFile(dataset) as episodes:
        every_frame = episodes.control_hz
        states = np.concatenate([episodes.state_at_fps(i, every_frame) for i in indices]).astype(
            np.float64
        )  # (frames, S)
        names = list(episodes.state_names)
    std = np.maximum(states.std(axis=0), STD_FLOOR)
    return names, states.mean(axis=0).tolist(), std.tolist()


class StateTokenizer(Tokenizer):
    """Scene state (..., S) <-> one normalised token (..., 1, S) per frame; exact inverse."""

    name = "state"
    observes = "state"

    def __init__(
        self, channels: Sequence[str], mean: Sequence[float], std: Sequence[float]
    ) -> None:
        nn.Module.__init__(self)  # no cameras: the base class's camera checks do not apply
        self._cameras, self._image_size = (), (0, 0)
        self.channels = tuple(str(c) for c in channels)
        if not self.channels or not len(self.channels) == len(mean) == len(std):
            raise ValueError(
                f"state tokenizer: {len(self.channels)} channels, {len(mean)} means and "
                f"{len(std)} stds; fit them together with fit_state_statistics"
            )
        if min(std) <= 0:
            raise ValueError(f"state tokenizer: every std must be > 0, got min {min(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float64).float())
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float64).float())

    @property
    def tokens_per_camera(self) -> int:
        return 1

    @property
    def tokens_per_frame(self) -> int:
        return 1

    @property
    def latent_dim(self) -> int:
        return len(self.channels)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channels": list(self.channels),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    def encode_state(self, states: Tensor) -> Tensor:
        """(..., S) scene states -> (..., 1, S) latents."""
        states = torch.as_tensor(states).to(self.mean)
        if states.shape[-1:] != (self.latent_dim,):
            raise ValueError(
                f"states: expected shape (..., {self.latent_dim}) with channels "
                f"{list(self.channels)}, got {tuple(states.shape)}; use the task it was fitted on"
            )
        return ((states - self.mean) / self.std)[..., None, :]

    def decode_state(self, latents: Tensor) -> Tensor:
        """(..., 1, S) latents -> (..., S) scene states."""
        if latents.shape[-2:] != (1, self.latent_dim):
            raise ValueError(
                f"latents: expected shape (..., 1, {self.latent_dim}), got {tuple(latents.shape)}"
            )
        return latents[..., 0, :].to(self.mean) * self.std + self.mean

    def encode_observations(self, observations: Sequence[Mapping[str, Any]]) -> Tensor:
        """(T, 1, S) latents of T env observations (their ``state``)."""
        return self.encode_state(torch.as_tensor(np.stack([o["state"] for o in observations])))

    def encode(self, frames: Mapping[str, Tensor]) -> Tensor:
        raise TypeError("tokenizer=state encodes scene states: call encode_state(states)")

    def decode(self, latents: Tensor) -> dict[str, Tensor]:
        raise TypeError("tokenizer=state decodes to scene states: call decode_state(latents)")
