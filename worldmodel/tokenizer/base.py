"""The tokenizer contract: camera frames (or scene states) <-> latent tokens, and PSNR.

Glossary: a *frame* is one time step seen by every camera. Each camera image (H, W, 3) becomes
``tokens_per_camera`` tokens of ``latent_dim`` (C) channels; the cameras' tokens are
concatenated in the tokenizer's fixed camera order, so a frame is ``tokens_per_frame``
N = len(cameras) * tokens_per_camera tokens. Latents are normalised to roughly zero mean and
unit variance per channel, because the flow-matching model noises them with N(0, 1).

Subclasses implement only the per-image maps ``_encode_images`` / ``_decode_images`` on
(M, 3, H, W) floats in [0, 1]; this base class handles dtypes, cameras and leading dims. A
tokenizer of the state track (``observes = "state"``, ``worldmodel/tokenizer/state.py``) has
no cameras: it encodes the observation's ``state`` vector instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn


class Tokenizer(nn.Module):
    """Frames <-> latents. ``encode``: camera -> (..., H, W, 3) to (..., N, C); ``decode`` back.

    ``name`` is the registry name (``make_tokenizer``); ``config()`` rebuilds the tokenizer.
    """

    name: str = ""
    # Latents worth caching on disk (``tokenizer.cache``): encoding costs a network pass.
    cache_latents: bool = False
    # The observation entry it encodes: "images" (camera -> frame) or "state" (a vector).
    observes: ClassVar[str] = "images"

    def __init__(self, cameras: Sequence[str], image_size: Sequence[int]) -> None:
        super().__init__()
        cameras = tuple(cameras)
        if (
            not cameras
            or len(set(cameras)) != len(cameras)
            or not all(isinstance(c, str) and c for c in cameras)
        ):
            raise ValueError(f"cameras: expected unique non-empty names, got {list(cameras)}")
        size = tuple(int(v) for v in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size: expected (height, width) > 0, got {list(image_size)}")
        self._cameras = cameras
        self._image_size = size

    # ------------------------------------------------------------ properties
    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera order of the token sequence."""
        return self._cameras

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every camera image."""
        return self._image_size

    @property
    def tokens_per_camera(self) -> int:
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        """Channels C of one token."""
        raise NotImplementedError

    @property
    def tokens_per_frame(self) -> int:
        """Tokens N of one frame, all cameras together."""
        return len(self._cameras) * self.tokens_per_camera

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments plus ``name``; ``make_tokenizer(**config)``-style."""
        return {
            "name": self.name,
            "cameras": list(self.cameras),
            "image_size": list(self.image_size),
        }

    def identity(self) -> str:
        """sha256 of the config and every state tensor: equal iff the function is the same."""
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for key, value in self.state_dict().items():
            digest.update(key.encode())
            digest.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------ per-image maps
    def _encode_images(self, images: Tensor) -> Tensor:
        """(M, 3, H, W) float in [0, 1] -> (M, tokens_per_camera, C) normalised latents."""
        raise NotImplementedError

    def _decode_images(self, latents: Tensor) -> Tensor:
        """(M, tokens_per_camera, C) -> (M, 3, H, W) float, about [0, 1] (clamped by caller)."""
        raise NotImplementedError

    # ------------------------------------------------------------ public maps
    def encode_observations(self, observations: Sequence[Mapping[str, Any]]) -> Tensor:
        """(T, N, C) latents of T env observations (each with ``images``: camera -> frame)."""
        return self.encode(
            {
                camera: torch.as_tensor(np.stack([o["images"][camera] for o in observations]))
                for camera in self.cameras
            }  # camera -> (T, H, W, 3) uint8
        )

    def encode(self, frames: Mapping[str, Tensor]) -> Tensor:
        """camera -> (..., H, W, 3) uint8, or float in [0, 1]; returns (..., N, C) float."""
        missing = [c for c in self.cameras if c not in frames]
        extra = [c for c in frames if c not in self.cameras]
        if missing or extra:
            raise ValueError(
                f"frames: expected cameras {list(self.cameras)}, got {list(frames)} "
                f"(select them with {{c: frames[c] for c in tokenizer.cameras}})"
            )
        lead = None
        tokens = []
        for cam in self.cameras:
            images = self._as_float_images(cam, frames[cam])  # (..., H, W, 3)
            if lead is None:
                lead = images.shape[:-3]
            elif images.shape[:-3] != lead:
                raise ValueError(
                    f"frames[{cam!r}]: leading dims {tuple(images.shape[:-3])} differ from "
                    f"{self.cameras[0]!r}'s {tuple(lead)}"
                )
            flat = images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2)  # (M, 3, H, W)
            tokens.append(self._encode_images(flat))  # (M, n, C)
        latents = torch.cat(tokens, dim=1)  # (M, N, C)
        return latents.reshape(*lead, self.tokens_per_frame, self.latent_dim)  # (..., N, C)

    def decode(self, latents: Tensor) -> dict[str, Tensor]:
        """(..., N, C) -> camera -> (..., H, W, 3) float in [0, 1]."""
        expected = (self.tokens_per_frame, self.latent_dim)
        if latents.ndim < 2 or tuple(latents.shape[-2:]) != expected:
            raise ValueError(
                f"latents: expected shape (..., {expected[0]}, {expected[1]}), "
                f"got {tuple(latents.shape)}"
            )
        lead = latents.shape[:-2]
        flat = latents.reshape(-1, *expected).to(self._device(), torch.float32)  # (M, N, C)
        out = {}
        for cam, part in zip(self.cameras, flat.split(self.tokens_per_camera, dim=1), strict=True):
            images = self._decode_images(part).clamp(0.0, 1.0)  # (M, 3, H, W)
            out[cam] = images.permute(0, 2, 3, 1).reshape(*lead, *self.image_size, 3)
        return out

    def _as_float_images(self, cam: str, images: Tensor) -> Tensor:
        images = torch.as_tensor(images)
        want = (*self.image_size, 3)
        if images.ndim < 3 or tuple(images.shape[-3:]) != want:
            raise ValueError(
                f"frames[{cam!r}]: expected shape (..., {want[0]}, {want[1]}, 3), "
                f"got {tuple(images.shape)}"
            )
        images = images.to(self._device())
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        if not images.is_floating_point():
            raise ValueError(f"frames[{cam!r}]: expected uint8 or float, got {images.dtype}")
        return images.float()

    def _device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")


def psnr(a: Tensor, b: Tensor, max_value: float = 1.0) -> Tensor:
    """Mean over images of each image's PSNR in dB; a, b: (..., H, W, 3) on the same scale.

    An exact match counts as 100 dB (MSE floored at max_value**2 * 1e-10).
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    err = (a.double() - b.double()).square().flatten(-3).mean(-1)  # (...,) per-image MSE
    err = err.clamp_min(max_value**2 * 1e-10)
    return (10.0 * torch.log10(max_value**2 / err)).mean().float()
