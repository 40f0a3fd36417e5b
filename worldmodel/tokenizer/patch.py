"""``patch`` tokenizer: no learning, each non-overlapping p x p pixel patch is one token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from worldmodel.tokenizer.base import Tokenizer

PIXEL_MEAN = 0.5  # latents are (pixel/255 - PIXEL_MEAN) / PIXEL_STD: roughly N(0, 1) for
PIXEL_STD = 0.25  # natural-looking images, values in [-2, 2]


class PatchTokenizer(Tokenizer):
    """Pixels -> patch vectors of C = p * p * 3 values ordered (row, column, rgb); exact inverse.

    A camera image gives (H/p) * (W/p) tokens in raster order.
    """

    name = "patch"

    def __init__(self, cameras: Sequence[str], image_size: Sequence[int], patch: int = 8) -> None:
        super().__init__(cameras, image_size)
        height, width = self.image_size
        if patch < 1 or height % patch or width % patch:
            raise ValueError(
                f"patch={patch}: must be >= 1 and divide image_size {list(self.image_size)}"
            )
        self.patch = int(patch)
        self._grid = (height // patch, width // patch)

    @property
    def tokens_per_camera(self) -> int:
        return self._grid[0] * self._grid[1]

    @property
    def latent_dim(self) -> int:
        return self.patch * self.patch * 3

    def config(self) -> dict[str, Any]:
        return {**super().config(), "patch": self.patch}

    def _encode_images(self, images: Tensor) -> Tensor:
        m, p, (gh, gw) = images.shape[0], self.patch, self._grid
        x = (images - PIXEL_MEAN) / PIXEL_STD  # (M, 3, H, W)
        x = x.reshape(m, 3, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)  # (M, gh, gw, p, p, 3)
        return x.reshape(m, gh * gw, p * p * 3)  # (M, n, C)

    def _decode_images(self, latents: Tensor) -> Tensor:
        m, p, (gh, gw) = latents.shape[0], self.patch, self._grid
        x = latents.reshape(m, gh, gw, p, p, 3).permute(0, 5, 1, 3, 2, 4)  # (M, 3, gh, p, gw, p)
        return x.reshape(m, 3, gh * p, gw * p) * PIXEL_STD + PIXEL_MEAN  # (M, 3, H, W)
