"""Per-image quality metrics: MSE, PSNR and SSIM on (..., H, W, c) images, in torch.

Inputs are tensors or arrays of the same shape (..., H, W, c), each uint8 (scaled to [0, 1]
first) or float in [0, 1]; the two may differ in dtype (e.g. decoded floats vs real uint8
frames). ``data_range`` is the range of those [0, 1]-scale values. Every metric returns one
float64 value per leading index, shape (...,).

- ``psnr`` equals ``skimage.metrics.peak_signal_noise_ratio``; identical images give +inf.
  Averages over images should cap each value at ``PSNR_CAP_DB`` first (the tokenizer's
  reconstruction PSNR uses the same 100 dB cap), so one exact match cannot make a mean inf.
- ``ssim`` equals ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
  data_range=..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``, the
  settings of Wang et al. 2004: an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma),
  population covariances, SSIM map averaged over the pixels at least 5 pixels from the border
  (skimage crops (win_size - 1) // 2 pixels) and then over channels. Images must be at least
  11x11.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PSNR_CAP_DB = 100.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # the Gaussian window reaches int(3.5 * 1.5 + 0.5) = 5 pixels each side
SSIM_K1, SSIM_K2 = 0.01, 0.03


def as_float_images(images: Tensor | np.ndarray, name: str = "images") -> Tensor:
    """uint8 -> float64 / 255; float -> float64 as is; (..., H, W, c) with at least 3 dims."""
    images = torch.as_tensor(images)
    if images.ndim < 3:
        raise ValueError(f"{name}: expected images (..., H, W, c), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.double() / 255.0
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected uint8 or float in [0, 1], got {images.dtype}")
    return images.double()


def _pair(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    a, b = as_float_images(a, "a"), as_float_images(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {b.shape}")
    return a, b.to(a.device)


def mse(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor:
    """Mean squared error of each image (..., H, W, c) -> (...,), on the [0, 1] scale."""
    a, b = _pair(a, b)
    return (a - b).square().flatten(-3).mean(-1)


def psnr(a: Tensor | np.ndarray, b: Tensor | np.ndarray, data_range: float = 1.0) -> Tensor:
    """PSNR in dB of each image (...,); +inf where the images are identical."""
    return 10.0 * torch.log10(data_range**2 / mse(a, b))


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> Tensor:
    """Normalised 1-D Gaussian weights (win_size,), as scipy.ndimage.gaussian_filter uses."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def _local_mean(x: Tensor, window: Tensor) -> Tensor:
    """Separable Gaussian mean of (M, 1, H, W) over valid windows -> (M, 1, H-2r, W-2r)."""
    w = window.to(x.device)
    x = F.conv2d(x, w.view(1, 1, -1, 1))  # along H
    return F.conv2d(x, w.view(1, 1, 1, -1))  # along W


def ssim(a: Tensor | np.ndarray, b: Tensor | np.ndarray, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of each image (...,) (module docstring for the exact settings)."""
    a, b = _pair(a, b)
    window = gaussian_window()
    *lead, H, W, c = a.shape
    if min(H, W) < window.numel():
        raise ValueError(
            f"ssim needs images of at least {window.numel()}x{window.numel()} pixels, got {H}x{W}"
        )
    x = a.reshape(-1, H, W, c).permute(0, 3, 1, 2).reshape(-1, 1, H, W)  # (M*c, 1, H, W)
    y = b.reshape(-1, H, W, c).permute(0, 3, 1, 2).reshape(-1, 1, H, W)  # (M*c, 1, H, W)
    ux, uy = _local_mean(x, window), _local_mean(y, window)  # (M*c, 1, H', W')
    vx = _local_mean(x * x, window) - ux * ux
    vy = _local_mean(y * y, window) - uy * uy
    vxy = _local_mean(x * y, window) - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    per_channel = s.flatten(1).mean(-1).view(-1, c)  # (M, c)
    return per_channel.mean(-1).view(lead)  # (...,)
