"""``conv_ae`` tokenizer: a small convolutional autoencoder, one set of weights for all cameras.

Each camera image (H, W) maps to a latent grid (H/d, W/d) of ``latent_dim`` channels with
d = ``downsample`` = 2**stages; the grid is flattened in raster order into tokens. Blocks are
GroupNorm + SiLU + 3x3 conv residual blocks, no attention; the residual blocks run at the
reduced resolutions only, which keeps the model cheap enough to train on CPU.

Latents are standardised with per-channel ``latent_mean`` / ``latent_std`` buffers computed
from training frames at the end of training (``train_conv_ae``), so they travel with the
weights. Checkpoints (``save_conv_ae`` / ``load_conv_ae``) hold plain dicts and tensors only
and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel import atomic
from worldmodel.tokenizer.base import Tokenizer

CHECKPOINT_SCHEMA_VERSION = 1
TRAIN_COMMAND = "python -m experiments.train_tokenizer --data data/<task>_<setting>.h5"


def _norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _Upsample(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _stage_channels(width: int, stages: int) -> list[int]:
    """Channels after each downsampling stage: width, 2 width, 4 width, 4 width, ..."""
    return [width * min(2**i, 4) for i in range(stages)]


class ConvAETokenizer(Tokenizer):
    """Conv encoder/decoder; ``tokens_per_camera`` = (H/downsample) * (W/downsample)."""

    name = "conv_ae"
    cache_latents = True

    def __init__(
        self,
        cameras: Sequence[str],
        image_size: Sequence[int],
        latent_dim: int = 8,
        downsample: int = 8,
        width: int = 32,
    ) -> None:
        super().__init__(cameras, image_size)
        stages = downsample.bit_length() - 1
        height, img_width = self.image_size
        if downsample < 2 or 2**stages != downsample:
            raise ValueError(f"downsample={downsample}: must be a power of two >= 2")
        if height % downsample or img_width % downsample:
            raise ValueError(
                f"downsample={downsample}: must divide image_size {list(self.image_size)}"
            )
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim={latent_dim}, width={width}: both must be >= 1")
        self._latent_dim, self.downsample, self.width = int(latent_dim), int(downsample), width
        self._grid = (height // downsample, img_width // downsample)
        chans = _stage_channels(width, stages)

        enc: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
        c_prev = width
        for c in chans:  # each stage halves H and W
            enc += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1), _ResBlock(c)]
            c_prev = c
        enc += [_norm(c_prev), nn.SiLU(), nn.Conv2d(c_prev, latent_dim, 1)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv2d(latent_dim, chans[-1], 3, padding=1)]
        ups = [*chans[-2::-1], width]  # channels after each upsampling stage
        c_prev = chans[-1]
        for c in ups:
            dec += [_ResBlock(c_prev), _Upsample(c_prev, c)]
            c_prev = c
        dec += [_norm(c_prev), nn.SiLU(), nn.Conv2d(c_prev, 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    @property
    def tokens_per_camera(self) -> int:
        return self._grid[0] * self._grid[1]

    @property
    def latent_dim(self) -> int:
        return self._latent_dim

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "latent_dim": self.latent_dim,
            "downsample": self.downsample,
            "width": self.width,
        }

    # ------------------------------------------------------------ raw (unnormalised) maps
    def encode_raw(self, images: Tensor) -> Tensor:
        """(M, 3, H, W) in [0, 1] -> (M, C, H/d, W/d) latents before standardisation."""
        return self.encoder(images * 2.0 - 1.0)

    def decode_raw(self, grid: Tensor) -> Tensor:
        """(M, C, H/d, W/d) -> (M, 3, H, W) reconstruction, about [0, 1], not clamped."""
        return (self.decoder(grid) + 1.0) * 0.5

    def _encode_images(self, images: Tensor) -> Tensor:
        grid = self.encode_raw(images)  # (M, C, h, w)
        tokens = grid.flatten(2).transpose(1, 2)  # (M, h*w, C)
        return (tokens - self.latent_mean) / self.latent_std

    def _decode_images(self, latents: Tensor) -> Tensor:
        tokens = latents * self.latent_std + self.latent_mean  # (M, n, C)
        grid = tokens.transpose(1, 2).reshape(-1, self.latent_dim, *self._grid)  # (M, C, h, w)
        return self.decode_raw(grid)


# ---------------------------------------------------------------- checkpoints


def save_conv_ae(tokenizer: ConvAETokenizer, path: str | os.PathLike, **extra: Any) -> Path:
    """Write the checkpoint atomically (tmp file, then rename); ``extra``: plain-data entries."""
    checkpoint = {
        "schema_version": CHECKPOINT_SCHEMA_VERSION,
        "tokenizer": tokenizer.name,
        "config": tokenizer.config(),
        "state_dict": {k: v.detach().cpu() for k, v in tokenizer.state_dict().items()},
        **extra,
    }
    return atomic.torch_save(checkpoint, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict, checked to be a conv_ae checkpoint of this schema."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: conv_ae checkpoint not found - train one with {TRAIN_COMMAND} --out {path}"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping) or checkpoint.get("tokenizer") != ConvAETokenizer.name:
        raise ValueError(
            f"{path}: not a conv_ae tokenizer checkpoint - train one with {TRAIN_COMMAND}"
        )
    if checkpoint.get("schema_version") != CHECKPOINT_SCHEMA_VERSION:
        raise ValueError(
            f"{path}: checkpoint schema {checkpoint.get('schema_version')}, this code reads "
            f"{CHECKPOINT_SCHEMA_VERSION} - retrain with {TRAIN_COMMAND}"
        )
    return dict(checkpoint)


def load_conv_ae(path: str | os.PathLike, cameras: Sequence[str] | None = None) -> ConvAETokenizer:
    """The tokenizer of a ``train_conv_ae`` checkpoint, in eval mode on CPU.

    ``cameras``: a subset (any order) of the cameras it was trained on; default all of them.
    The checkpoint dict is kept as ``tokenizer.checkpoint`` minus the state dict.
    """
    checkpoint = read_checkpoint(path)
    config = {k: v for k, v in checkpoint["config"].items() if k != "name"}
    if cameras is not None:
        unknown = [c for c in cameras if c not in config["cameras"]]
        if unknown:
            raise ValueError(
                f"cameras {unknown}: {path} was trained on {config['cameras']} only - "
                f"retrain with {TRAIN_COMMAND} including them"
            )
        config["cameras"] = list(cameras)
    tokenizer = ConvAETokenizer(**config)
    tokenizer.load_state_dict(checkpoint["state_dict"])
    tokenizer.checkpoint = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    tokenizer.checkpoint_path = Path(path)
    return tokenizer.eval()
