"""Build the model of a run from its configs, and rebuild it from a checkpoint alone.

The model keys that follow from the data are derived here, once: ``tokens_per_frame`` and
``latent_dim`` from the tokenizer, ``action_dim`` from the dataset, ``actions_per_frame`` from
the frame rate (``worldmodel/timing.py``), ``train_window_frames`` from the training windows
(``DERIVED_MODEL_KEYS``; a run that sets one is refused). A checkpoint's
``build`` entry holds the derived configs, so evaluation needs nothing but the checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

from worldmodel.heads.config import HeadsConfig
from worldmodel.heads.modules import WorldModelWithHeads
from worldmodel.model.config import ModelConfig
from worldmodel.timing import FrameRate
from worldmodel.tokenizer.base import Tokenizer
from worldmodel.tokenizer.factory import TokenizerConfig
from worldmodel.training.checkpoint import load_checkpoint

# model keys derived at build -> where they come from (the refusal of a user-set one names it)
DERIVED_MODEL_KEYS = {
    "tokens_per_frame": "the tokenizer",
    "latent_dim": "the tokenizer",
    "action_dim": "the dataset",
    "actions_per_frame": "fps, frames_per_latent and the dataset's control rate",
    "train_window_frames": "data.window_frames",
}


def derived_keys_set(model: ModelConfig) -> list[str]:
    """The derived keys of ``model`` that differ from their defaults (a user set them)."""
    defaults = ModelConfig()
    return [key for key in DERIVED_MODEL_KEYS if getattr(model, key) != getattr(defaults, key)]


def derive_model_config(
    model: ModelConfig,
    tokenizer: Tokenizer,
    frame_rate: FrameRate,
    action_dim: int,
    window_frames: int,
) -> ModelConfig:
    """``model`` with the data-derived keys filled in (a new object; ``model`` is unchanged)."""
    return replace(
        model,
        tokens_per_frame=tokenizer.tokens_per_frame,
        latent_dim=tokenizer.latent_dim,
        action_dim=action_dim,
        actions_per_frame=frame_rate.actions_per_latent_frame,
        train_window_frames=window_frames,
    )


@dataclass
class RunBuild:
    """Everything that rebuilds a run's model and tokenizer (stored in every checkpoint)."""

    model: ModelConfig
    heads: HeadsConfig
    tokenizer: TokenizerConfig
    cameras: list[str]
    image_size: list[int]
    fps: float  # video frames per second (the paper's label, worldmodel/timing.py)
    task: str
    setting: str
    dataset: str  # path of the training dataset (evaluation seeds and held-out episodes)
    train_episodes: int  # episodes 0..train_episodes-1 trained on; the rest held out
    frames_per_latent: int = 4  # video frames per latent frame (1 in runs made before it)
    control_hz: float = 50.0  # the dataset's control rate

    @property
    def frame_rate(self) -> FrameRate:
        return FrameRate(self.fps, self.frames_per_latent, self.control_hz)

    @property
    def latent_fps(self) -> float:
        """Latent frames per second: the rate its episodes are read at."""
        return self.frame_rate.latent_fps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunBuild:
        values = dict(values)
        values["model"] = ModelConfig(**values["model"])
        values["heads"] = HeadsConfig(**values["heads"])
        values["tokenizer"] = TokenizerConfig(**values["tokenizer"])
        return cls(**values)

    def make_model(self) -> WorldModelWithHeads:
        return WorldModelWithHeads(self.model, self.heads)

    def make_tokenizer(self) -> Tokenizer:
        return self.tokenizer.build(self.cameras, self.image_size)


@dataclass
class TrainedRun:
    model: WorldModelWithHeads  # in eval mode, on CPU
    tokenizer: Tokenizer
    build: RunBuild
    step: int
    checkpoint: dict[str, Any]  # the whole checkpoint dict (config, git, progress, ...)
    checkpoint_path: str


def load_trained(path: str | os.PathLike) -> TrainedRun:
    """The model and tokenizer of a training checkpoint, weights loaded, in eval mode."""
    payload = load_checkpoint(path)
    build = RunBuild.from_dict(payload["build"])
    model = build.make_model()
    state = payload["model"]
    model.load_state_dict(state)
    model.eval()
    tokenizer = build.make_tokenizer().eval()
    return TrainedRun(model, tokenizer, build, int(payload["step"]), payload, str(path))
