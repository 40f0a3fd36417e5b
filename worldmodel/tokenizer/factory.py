"""Build a tokenizer by name: the config group ``tokenizer`` (``TokenizerConfig``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from worldmodel.tokenizer.base import Tokenizer
from worldmodel.tokenizer.conv_ae import TRAIN_COMMAND, load_conv_ae
from worldmodel.tokenizer.patch import PatchTokenizer
from worldmodel.tokenizer.state import StateTokenizer, fit_state_statistics

TOKENIZERS = ("patch", "conv_ae", "state")
_CONV_AE_ARCH = ("latent_dim", "downsample", "width")
_STATE_FITTED = ("channels", "mean", "std")


def make_tokenizer(
    name: str,
    cameras: Sequence[str],
    image_size: Sequence[int],
    checkpoint: str | None = None,
    **kwargs: Any,
) -> Tokenizer:
    """``patch``: ``PatchTokenizer(cameras, image_size, **kwargs)`` (``patch=8``).

    ``conv_ae``: ``load_conv_ae(checkpoint, cameras)``; kwargs ``latent_dim``, ``downsample``,
    ``width``, when given, must match the checkpoint.

    ``state``: ``StateTokenizer(channels, mean, std)`` (kwargs; cameras and image size unused).
    """
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer={name!r} is not valid; choose one of: {', '.join(TOKENIZERS)}")
    if name == "state":
        return StateTokenizer(**kwargs)
    if name == "patch":
        if checkpoint is not None:
            raise ValueError("tokenizer=patch takes no checkpoint (it has no weights)")
        return PatchTokenizer(cameras, image_size, **kwargs)
    if not checkpoint:
        raise ValueError(
            f"tokenizer=conv_ae needs a checkpoint: train one with {TRAIN_COMMAND} "
            "--out <ckpt>.pt and pass checkpoint=<ckpt>.pt"
        )
    unknown = sorted(set(kwargs) - set(_CONV_AE_ARCH))
    if unknown:
        raise TypeError(f"tokenizer=conv_ae: unknown arguments {unknown}; valid: {_CONV_AE_ARCH}")
    tokenizer = load_conv_ae(checkpoint, cameras)
    if tuple(tokenizer.image_size) != tuple(int(v) for v in image_size):
        raise ValueError(
            f"{checkpoint}: trained at image_size {list(tokenizer.image_size)}, "
            f"not {list(image_size)} - retrain with {TRAIN_COMMAND}"
        )
    config = tokenizer.config()
    for key, value in kwargs.items():
        if value != config[key]:
            raise ValueError(
                f"tokenizer.{key}={value} but {checkpoint} has {key}={config[key]}; "
                "drop the override or use a matching checkpoint"
            )
    return tokenizer


@dataclass
class TokenizerConfig:
    """Config group ``tokenizer``; cameras and image size come from the dataset, not here."""

    name: str = "patch"  # patch | conv_ae | state
    patch: int = 8  # patch: pixels per patch side (C = patch * patch * 3)
    checkpoint: str | None = None  # conv_ae: a train_conv_ae checkpoint (required)
    # conv_ae architecture: None takes the checkpoint's; a value must match the checkpoint
    latent_dim: int | None = None  # channels per token
    downsample: int | None = None  # pixels per token side, a power of two
    width: int | None = None  # channels of the first conv stage
    # state: fitted on the run's training episodes (``fitted``) and kept in the run's build;
    # never set by hand
    channels: list[str] | None = None  # the dataset's state_names
    mean: list[float] | None = None  # per channel
    std: list[float] | None = None  # per channel, floored (worldmodel/tokenizer/state.py)

    def __post_init__(self) -> None:
        if self.name not in TOKENIZERS:
            raise ValueError(
                f"tokenizer.name={self.name!r} is not valid; choose one of: {', '.join(TOKENIZERS)}"
            )

    def fitted(self, dataset: str | Path, train_episodes: int) -> TokenizerConfig:
        """This config with what it learns from episodes 0..train_episodes-1 of ``dataset``
        filled in: the state tokenizer's channel statistics (other tokenizers: unchanged)."""
        if self.name != "state":
            return self
        given = [k for k in _STATE_FITTED if getattr(self, k) is not None]
        if given:
            raise ValueError(
                f"tokenizer.{given[0]} is fitted on the training episodes, not set; drop the "
                f"override{'s' if len(given) > 1 else ''} of {', '.join(given)}"
            )
        channels, mean, std = fit_state_statistics(dataset, range(train_episodes))
        return replace(self, channels=channels, mean=mean, std=std)

    def build(self, cameras: Sequence[str], image_size: Sequence[int]) -> Tokenizer:
        if self.name == "state":
            if self.mean is None:
                raise ValueError(
                    "tokenizer=state has no channel statistics; fit them on the training "
                    "episodes with TokenizerConfig.fitted(dataset, train_episodes)"
                )
            fitted = {k: getattr(self, k) for k in _STATE_FITTED}
            return make_tokenizer("state", cameras, image_size, **fitted)
        if self.name == "patch":
            return make_tokenizer("patch", cameras, image_size, patch=self.patch)
        arch = {k: getattr(self, k) for k in _CONV_AE_ARCH if getattr(self, k) is not None}
        return make_tokenizer("conv_ae", cameras, image_size, self.checkpoint, **arch)
