"""Rectified-flow (flow matching) maths: noising, targets, timestep tables, loss weights.

Pure torch functions, no module state. Conventions:

- ``sigma`` is the noise level (the flow time ``t``): ``sigma = 0`` is data, ``sigma = 1`` is
  pure noise; ``x_sigma = (1 - sigma) * x0 + sigma * noise``.
- The model predicts the velocity ``v = noise - x0``; sampling integrates from ``sigma = 1``
  down to ``sigma = 0`` with Euler steps ``x <- x + (sigma_next - sigma) * v``.
- ``sigma`` has the *leading* dims of the latents it applies to, e.g. ``(B, F)`` for latents
  ``(B, F, N, C)`` (one noise level per latent frame, Diffusion-Forcing style); it is broadcast
  over the trailing dims by :func:`expand_like`.
- Timestep shift ``k`` (video 5, action 1, MCP depths 10; the values live in the configs)
  maps ``sigma -> k * sigma / (1 + (k - 1) * sigma)``, which pushes draws towards noise.
- Loss weights per noise level (``loss_weight``): ``table``, the reference's per-timestep
  weights (``FlowMatchScheduler.set_timesteps(1000, training=True)`` in lingbot-va
  ``wan_va/utils/scheduler.py``, used by next-forcing ``wan_va/train.py`` for video, actions
  and every MCP depth), a bell whose mean is 1 under each loss's own shift; or ``bell``, a
  logit-normal bell whose mean under a shift is below 1 (0.683 at shift 5, 0.469 at 10).

Random draws go through an optional ``torch.Generator``; given one, every function is
deterministic. Draws are made on the generator's device and then moved, so a CPU generator
can seed tensors on any device with the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

# Normaliser of loss_weight: 1 / integral_0^1 exp(-logit(u)^2 / 2) du
# (integral = 0.517921950849622..., computed with mpmath.quad to 30 digits).
LOSS_WEIGHT_NORM = 1.9307928508524410

# logit is evaluated on sigma clamped to [eps, 1 - eps], so sigma = 0 or 1 gives a finite
# (about 1e-41, i.e. zero in practice) weight and no NaN gradient.
_LOGIT_EPS = 1e-6

LOSS_WEIGHTINGS = ("table", "bell")
TABLE_TIMESTEPS = 1000  # entries of the reference's training timestep table


def _as_sigma(sigma: Tensor | float) -> Tensor:
    """Tensors pass through; Python floats become float64 scalars (no float32 rounding)."""
    return sigma if isinstance(sigma, Tensor) else torch.tensor(sigma, dtype=torch.float64)


def expand_like(sigma: Tensor | float, x: Tensor) -> Tensor:
    """``sigma`` with trailing singleton dims so it broadcasts against ``x``.

    ``sigma`` (B, F) and ``x`` (B, F, N, C) -> (B, F, 1, 1). Each leading dim of ``sigma`` must
    equal ``x``'s or be 1. A Python float or 0-dim tensor broadcasts everywhere. The result
    is on ``x``'s device; its dtype is ``sigma``'s, float64 for a Python float (a 0-dim
    tensor does not change the dtype of the tensor it multiplies).
    """
    sigma = _as_sigma(sigma).to(x.device)
    if sigma.ndim > x.ndim or any(
        s not in (1, d) for s, d in zip(sigma.shape, x.shape[: sigma.ndim], strict=True)
    ):
        raise ValueError(
            f"sigma of shape {tuple(sigma.shape)} is not a leading-dims prefix of "
            f"x of shape {tuple(x.shape)}"
        )
    if sigma.ndim == 0:
        return sigma  # a scalar already broadcasts, and keeps x's dtype in products
    return sigma.reshape(*sigma.shape, *([1] * (x.ndim - sigma.ndim)))


def interpolate(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """Noised latents ``x_sigma = (1 - sigma) * x0 + sigma * noise``, in ``x0``'s dtype.

    x0, noise: (B, F, ...); sigma: leading dims of x0, e.g. (B, F), or a scalar.
    """
    s = expand_like(sigma, x0)  # (B, F, 1, ...)
    return ((1 - s) * x0 + s * noise).to(x0.dtype)


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """Rectified-flow velocity ``d x_sigma / d sigma = noise - x0`` (same shape as x0)."""
    return noise - x0


def shift_sigma(sigma: Tensor, shift: float) -> Tensor:
    """Timestep shift ``shift * sigma / (1 + (shift - 1) * sigma)``.

    Monotone on [0, 1] with 0 -> 0 and 1 -> 1; ``shift = 1`` is the identity, ``shift > 1``
    moves mass towards noise (e.g. shift 5: 0.5 -> 5/6).
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def _uniform(
    shape: int | Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """U(0, 1) draws of ``shape``, made on the generator's device, returned on ``device``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    draw_device = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=draw_device, dtype=dtype)
    return u.to(device) if device is not None else u


def _normal_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal draws shaped like ``x`` (x's dtype and device)."""
    draw_device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=draw_device, dtype=x.dtype)
    return noise.to(x.device)


def sample_sigma(
    shape: int | Sequence[int],
    shift: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training noise levels: ``shift_sigma(u, shift)`` with ``u ~ U(0, 1)`` per element.

    With ``shape = (B, F)`` every latent frame gets its own noise level (Diffusion Forcing).
    Returns a tensor of ``shape`` in the default dtype, values in [0, 1).
    """
    return shift_sigma(_uniform(shape, generator, device), shift)


def table_sigmas(shift: float) -> Tensor:
    """(1000,) float64: the reference's training table of noise levels, ids 0..999 from
    sigma = 1 down to ``shift_sigma(0.001, shift)`` (``linspace(1, 0, 1001)[:-1]`` shifted);
    training draws an id uniformly, i.e. ``shift_sigma(u)`` with ``u`` uniform."""
    base = torch.linspace(1.0, 0.0, TABLE_TIMESTEPS + 1, dtype=torch.float64)[:-1]
    return shift_sigma(base, shift)


@functools.lru_cache(maxsize=16)
def _table_normaliser(shift: float) -> tuple[float, float]:
    """(floor, mean) of ``exp(-2 (sigma - 1/2)^2)`` over the table at ``shift``."""
    bell = torch.exp(-2.0 * (table_sigmas(shift) - 0.5).square())  # (1000,)
    floor = float(bell.min())
    return floor, float((bell - floor).mean())


def table_loss_weight(sigma: Tensor, shift: float) -> Tensor:
    """The reference's per-timestep loss weight at noise level ``sigma`` for a loss drawn
    with timestep ``shift``, same shape as sigma.

    ``(exp(-2 (sigma - 1/2)^2) - floor) / mean``: the bell the reference tabulates at its 1000
    training timesteps (``t = 1000 sigma``: ``exp(-2 ((t - 500) / 1000)^2)``), minus its
    smallest entry, divided by the mean over the table, so the mean weight of the table (the
    expected weight of a training draw) is exactly 1 at every shift. At the table's own levels
    it equals the reference's entries; between them it is the same curve (the reference looks
    up the nearest entry)."""
    floor, mean = _table_normaliser(float(shift))
    bell = torch.exp(-2.0 * (sigma.to(torch.float64) - 0.5).square())
    return ((bell - floor).clamp_min(0.0) / mean).to(sigma.dtype)


def loss_weight(sigma: Tensor, shift: float = 1.0, weighting: str = "bell") -> Tensor:
    """Per-noise-level loss weight (module docstring): ``table`` (``table_loss_weight`` at
    ``shift``) or ``bell`` (``bell_loss_weight``, which ignores the shift)."""
    if weighting == "table":
        return table_loss_weight(sigma, shift)
    if weighting == "bell":
        return bell_loss_weight(sigma)
    raise ValueError(
        f"weighting={weighting!r} is not valid; choose one of: {', '.join(LOSS_WEIGHTINGS)}"
    )


def bell_loss_weight(sigma: Tensor) -> Tensor:
    """Bell-shaped loss weight ``w(sigma) = C * exp(-logit(sigma)^2 / 2)``, same shape as sigma.

    ``logit(s) = log(s / (1 - s))``. The weight peaks at ``sigma = 0.5`` (``w = C``), is
    symmetric (``w(s) = w(1 - s)``) and falls to 0 at both ends, so nearly-clean and
    nearly-pure-noise targets (trivial or hopeless) count little. It is the logit-normal(0, 1)
    density times ``sigma * (1 - sigma)`` up to a constant, i.e. the SD3 logit-normal bell
    made bounded. ``C = LOSS_WEIGHT_NORM ~= 1.9308`` makes ``E[w(u)] = 1`` for ``u ~ U(0, 1)``
    (unshifted; under a timestep shift the mean differs).
    """
    logit = torch.logit(sigma, eps=_LOGIT_EPS)
    return LOSS_WEIGHT_NORM * torch.exp(-0.5 * logit.square())


def weighted_mse(
    pred_velocity: Tensor,
    target_velocity: Tensor,
    sigma: Tensor,
    valid: Tensor | None = None,
    shift: float = 1.0,
    weighting: str = "bell",
) -> Tensor:
    """Scalar flow-matching loss: weighted squared error averaged over valid elements.

    pred_velocity, target_velocity: (B, F, ...); sigma: their leading dims, e.g. (B, F);
    valid: bool, sigma's shape (True = counts; e.g. False for targets past the episode end);
    shift, weighting: the loss's timestep shift and weighting scheme (``loss_weight``).

    Per element of sigma: mean over the trailing (feature) dims of the squared error, times
    ``loss_weight(sigma, shift, weighting)``; then the mean over elements where ``valid``.
    With nothing valid the result is exactly 0 and still part of the graph (zero gradients);
    no host sync.
    Computed in at least float32 (bf16/fp16 inputs are upcast), float64 stays float64.
    """
    if pred_velocity.shape != target_velocity.shape:
        raise ValueError(
            f"pred shape {tuple(pred_velocity.shape)} != target shape "
            f"{tuple(target_velocity.shape)}"
        )
    expand_like(sigma, pred_velocity)  # validates that sigma is a leading-dims prefix
    feature_dims = tuple(range(sigma.ndim, pred_velocity.ndim))
    dtype = torch.promote_types(pred_velocity.dtype, torch.float32)  # bf16 -> float32
    err = (pred_velocity.to(dtype) - target_velocity.to(dtype)).square()  # (B, F, ...)
    if feature_dims:
        err = err.mean(dim=feature_dims)  # (B, F)
    weighted = err * loss_weight(sigma, shift, weighting).to(err.dtype)  # (B, F)
    if valid is None:
        return weighted.mean()
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool mask, got dtype {valid.dtype}")
    valid = valid.expand_as(weighted)  # (B, F)
    total = torch.where(valid, weighted, torch.zeros_like(weighted)).sum()
    return total / valid.sum().clamp_min(1)


def timestep_schedule(steps: int, shift: float) -> Tensor:
    """Inference noise levels: ``shift_sigma(linspace(1, 0, steps + 1), shift)``.

    Returns (steps + 1,) in the default dtype, strictly decreasing, exactly 1 first and
    exactly 0 last; Euler step i goes from ``sigmas[i]`` to ``sigmas[i + 1]``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    sigmas = shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)
    sigmas[0], sigmas[-1] = 1.0, 0.0  # exact endpoints despite rounding in the shift
    return sigmas.to(torch.get_default_dtype())


def euler_step(
    x: Tensor,
    velocity: Tensor,
    sigma: Tensor | float,
    sigma_next: Tensor | float,
) -> Tensor:
    """One Euler step of ``dx/dsigma = velocity`` from ``sigma`` to ``sigma_next`` (< sigma).

    ``x + (sigma_next - sigma) * velocity``; x, velocity: (B, F, ...); sigma, sigma_next:
    floats, scalars or leading dims of x (per-frame levels). Result in x's dtype. With the
    exact velocity ``noise - x0`` the step is exact: it maps ``x_sigma`` to ``x_sigma_next``.
    """
    delta = _as_sigma(sigma_next) - _as_sigma(sigma)  # scalar or (B, F)
    delta = expand_like(delta, x)  # (B, F, 1, ...)
    return (x + delta * velocity).to(x.dtype)


def renoise_history(
    x0: Tensor,
    max_u: float,
    probability: float,
    generator: torch.Generator | None = None,
    shift: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Noisy-history augmentation of clean context latents.

    x0: (B, F, ...) clean latents. With ``probability`` per sample (dim B), the sample's
    latent frames are re-noised to ``sigma = shift_sigma(u, shift)``, ``u ~ U(0, max_u)``
    drawn per frame; other samples keep sigma 0 and are returned unchanged. The reference
    (next-forcing ``wan_va/train.py``, ``_add_noise`` with ``noisy_cond_prob=0.5``) draws the
    ids 500-999 of the shift-5 video table: ``max_u = 0.5``, ``shift = 5`` (sigma 0.005 to
    0.833, median 0.625); ``shift = 1`` gives ``U(0, max_u)``. Returns ``(renoised (B, F, ...)
    in x0's dtype, sigma (B, F) in x0's dtype)``; the model is conditioned on that sigma.

    The same random numbers are consumed whatever ``probability`` is, so changing it does
    not shift the generator stream for later draws.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    if not 0.0 <= max_u <= 1.0:
        raise ValueError(f"max_u must be in [0, 1], got {max_u}")
    if x0.ndim < 2:
        raise ValueError(f"x0 must be (B, F, ...), got shape {tuple(x0.shape)}")
    batch, frames = x0.shape[:2]
    apply = _uniform((batch,), generator, x0.device) < probability  # (B,) bool
    u = _uniform((batch, frames), generator, x0.device, x0.dtype) * max_u  # (B, F)
    level = shift_sigma(u, shift)  # (B, F)
    sigma = torch.where(apply[:, None], level, torch.zeros_like(level))  # (B, F)
    noise = _normal_like(x0, generator)  # (B, F, ...)
    return interpolate(x0, noise, sigma), sigma


__all__ = [
    "LOSS_WEIGHTINGS",
    "LOSS_WEIGHT_NORM",
    "bell_loss_weight",
    "euler_step",
    "expand_like",
    "interpolate",
    "loss_weight",
    "renoise_history",
    "sample_sigma",
    "shift_sigma",
    "table_loss_weight",
    "table_sigmas",
    "timestep_schedule",
    "velocity_target",
    "weighted_mse",
]
