"""Open-loop rollout drift: how a world model's prediction error grows with the horizon.

Episodes (``DriftEpisodes``): E held-out episode windows from the episodes' frame 0,
frame-aligned: latents (E, F, N, C), raw actions (E, F, A, d) (``actions[:, f]`` lead into
latent frame f; frame 0's are padding, ``action_valid`` False), the joint positions each
frame's actions start from (E, F, d) (relative actions are taken against them) and, for
pixel metrics, the real camera frames (E, F, H, W, 3); for state-track videos, the real scene
states (E, F, S) and the episodes' env seeds. The first ``context_chunks`` (Cc) chunks of K
latent frames are real context; horizon h = 1..H is chunk Cc + h - 1 (0-based),
so every episode needs F >= (Cc + H) * K frames (later frames are ignored).

Context regimes:
- ``teacher_forced``: for each horizon h the model predicts chunk C+h-1 (0-based) in ONE step
  from all-real context (real video and real actions of every earlier chunk): the one-step
  error at that position.
- ``open_loop`` (chunk autoregressive video prediction): real context up to chunk C, then the
  model imagines chunks C..C+H-1 autoregressively from its own imagined video, with the TRUE
  future actions appended as executed actions.
- ``autoregressive`` (fully autoregressive): as open_loop but the model also denoises its own
  actions for every imagined chunk (future_actions=None) - no real information after the
  context.
(C is ``context_chunks``.) All E episodes run as one batch (B = E).

Inference mode (``DriftConfig.mode``): ``open_loop`` and ``autoregressive`` run
``worldmodel.inference.rollout_open_loop`` in that mode (``mcp_parallel`` needs MCP heads;
a model after ``drop_heads`` runs ``standard``). ``teacher_forced`` predicts one chunk per step,
which is always the backbone's own prediction: in ``mcp_parallel`` the backbone denoises chunk
i exactly as in ``standard`` (depth 1 reads its hidden states and never feeds back), and depth
1's chunk i+1 would not see the real chunk i, so it has no teacher-forced counterpart.
Every regime starts from a fresh generator seeded with ``DriftConfig.seed``, so all regimes
draw the same noise for chunk Cc: teacher_forced and open_loop agree exactly at h = 1.

Metrics, one value per (episode, horizon), arrays (E, H):
- ``latent_mse``: MSE of imagined vs real latents over the chunk's K frames, N tokens, C dims.
- ``action_mse`` (teacher_forced and autoregressive only; open_loop is given the true
  actions): MSE over the chunk's real action tokens (K, A, d) in raw action units of the
  actions the backbone denoises for the chunk (decoded against the real episode's joint
  positions) vs the true actions. teacher_forced: inverse dynamics on the REAL video of the
  chunk (appended after its one-step video prediction) with the real earlier chunks;
  autoregressive: on the imagined video of the chunk, after its own earlier actions.
- with a tokenizer, the imagined latents are decoded and compared with the REAL camera frames
  (so pixel metrics include the tokenizer's reconstruction error): ``pixel_mse`` (on the
  [0, 1] scale), ``psnr`` (dB) and ``ssim``, each the mean over the chunk's K frames and the
  tokenizer's cameras of the per-image value (``image_metrics``; PSNR capped at
  ``PSNR_CAP_DB`` = 100 dB per image before averaging, so curves are finite).
- with a state tokenizer (the state track), the imagined and real latents are decoded to scene
  states and compared in the units of ``worldmodel/evaluation/state_metrics.py``:
  ``object_position_mm``, ``object_rotation_deg`` (tasks with free bodies) and ``joint_deg``,
  each the mean over the chunk's K frames.

Summaries (``CurveSummary``) of the curve averaged over episodes: the value at h = 1 and
h = H; ``auc``, the trapezoid area under the curve over h = 1..H divided by H - 1 (the mean
height of the curve, in the metric's unit, comparable across horizons; the h = 1 value when
H = 1); ``slope``, the least-squares slope over h (unit per chunk; None when H = 1); and
``crossing``, the first horizon (linearly interpolated between integer h; 1.0 if already
there at h = 1) at which the curve reaches the metric's threshold - rises to it for errors,
falls to it for PSNR/SSIM - or None if it never does. Default thresholds (``METRICS``):
latent MSE 0.5 (half the variance of the unit-variance latents), pixel MSE 0.01 (= 20 dB),
PSNR 20 dB, SSIM 0.5, object position 10 mm, object rotation 10 degrees, joints 5 degrees;
action MSE has none (raw units differ per task), so its crossing is
None unless ``DriftConfig.thresholds`` sets one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worldmodel.evaluation.image_metrics import PSNR_CAP_DB, mse, psnr, ssim
from worldmodel.evaluation.state_metrics import state_errors
from worldmodel.inference import MODES, InferenceSession, check_mode, rollout_open_loop
from worldmodel.model.actions import chunk_reference
from worldmodel.model.world_model import WorldModel
from worldmodel.tokenizer.base import Tokenizer

REGIMES = ("teacher_forced", "open_loop", "autoregressive")


@dataclass(frozen=True)
class MetricSpec:
    """How a drift metric is read: axis label with unit, direction, default threshold."""

    label: str
    higher_is_better: bool
    threshold: float | None


METRICS = {
    "latent_mse": MetricSpec("latent MSE (latent units²)", False, 0.5),
    "action_mse": MetricSpec("action MSE (raw action units²)", False, None),
    "pixel_mse": MetricSpec("pixel MSE ([0, 1] scale)", False, 0.01),
    "psnr": MetricSpec("PSNR (dB)", True, 20.0),
    "ssim": MetricSpec("SSIM", True, 0.5),
    "object_position_mm": MetricSpec("object position error (mm)", False, 10.0),
    "object_rotation_deg": MetricSpec("object rotation error (degrees)", False, 10.0),
    "joint_deg": MetricSpec("arm joint error (degrees)", False, 5.0),
}


@dataclass
class DriftConfig:
    """What a drift measurement runs (module docstring for the regimes and metrics)."""

    context_chunks: int = 1  # Cc real chunks before the imagined ones
    horizon: int = 4  # H imagined chunks
    steps: int = 10  # Euler steps per video chunk
    action_steps: int | None = None  # Euler steps per action chunk; None = steps
    mode: str = "standard"  # standard | mcp_parallel
    seed: int = 0  # every regime's generator starts from it
    regimes: list[str] = field(default_factory=lambda: list(REGIMES))
    thresholds: dict[str, float] = field(default_factory=dict)  # overrides METRICS defaults

    def __post_init__(self) -> None:
        if self.context_chunks < 0:
            raise ValueError(f"context_chunks={self.context_chunks} is not valid; must be >= 0")
        for key in ("horizon", "steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} is not valid; must be >= 1")
        if self.action_steps is not None and self.action_steps < 1:
            raise ValueError(f"action_steps={self.action_steps} is not valid; must be >= 1")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not valid; choose one of: {', '.join(MODES)}")
        self.regimes = list(self.regimes)
        known = all(r in REGIMES for r in self.regimes)
        if not self.regimes or not known or len(set(self.regimes)) != len(self.regimes):
            raise ValueError(
                f"regimes={self.regimes} is not valid; choose distinct ones of: "
                f"{', '.join(REGIMES)}"
            )
        self.thresholds = {k: float(v) for k, v in dict(self.thresholds).items()}
        unknown = [k for k in self.thresholds if k not in METRICS]
        if unknown:
            raise ValueError(
                f"thresholds names unknown metric(s) {unknown}; valid: {', '.join(METRICS)}"
            )

    def threshold(self, metric: str) -> float | None:
        return self.thresholds.get(metric, METRICS[metric].threshold)


@dataclass
class DriftEpisodes:
    """E held-out episode windows, frame-aligned (module docstring)."""

    latents: Tensor  # (E, F, N, C)
    actions: Tensor  # (E, F, A, d) raw units, leading into each latent frame
    start_joint_pos: Tensor  # (E, F, d) joint positions when each frame's actions start
    action_valid: Tensor  # (E, F) bool, False on padded tokens
    frames: dict[str, Tensor] | None = None  # camera -> (E, F, H, W, 3) uint8 or float [0, 1]
    states: Tensor | None = None  # (E, F, S) the real scene states (state-track videos)
    seeds: list[int] | None = None  # (E,) the env seeds of the episodes (to render states)

    def __post_init__(self) -> None:
        self.latents, self.actions = torch.as_tensor(self.latents), torch.as_tensor(self.actions)
        self.start_joint_pos = torch.as_tensor(self.start_joint_pos)
        self.action_valid = torch.as_tensor(self.action_valid, dtype=torch.bool)
        if self.latents.ndim != 4 or self.actions.ndim != 4:
            raise ValueError(
                f"latents (E, F, N, C) and actions (E, F, A, d) must be 4-D, got "
                f"{tuple(self.latents.shape)} and {tuple(self.actions.shape)}"
            )
        lead = tuple(self.latents.shape[:2])
        for name in ("actions", "start_joint_pos", "action_valid"):
            shape = tuple(getattr(self, name).shape[:2])
            if shape != lead:
                raise ValueError(f"{name} (E, F)={shape} != latents' {lead}")
        if self.states is not None:
            self.states = torch.as_tensor(self.states)
            if self.states.ndim != 3 or tuple(self.states.shape[:2]) != lead:
                raise ValueError(
                    f"states must be (E, F, S) with (E, F)={lead}, got {tuple(self.states.shape)}"
                )
        if self.seeds is not None and len(self.seeds) != lead[0]:
            raise ValueError(f"seeds has {len(self.seeds)} entries for {lead[0]} episodes")
        if self.frames is not None:
            self.frames = {cam: torch.as_tensor(x) for cam, x in self.frames.items()}
            for cam, x in self.frames.items():
                if x.ndim != 5 or tuple(x.shape[:2]) != lead or x.shape[-1] != 3:
                    raise ValueError(
                        f"frames[{cam!r}] must be (E, F, H, W, 3) with (E, F)={lead}, "
                        f"got {tuple(x.shape)}"
                    )

    @property
    def num_frames(self) -> int:
        return self.latents.shape[1]


@dataclass(frozen=True)
class CurveSummary:
    """Summary numbers of one error-vs-horizon curve (module docstring)."""

    at_h1: float
    at_hH: float
    auc: float
    slope: float | None
    threshold: float | None
    crossing: float | None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def first_crossing(curve: np.ndarray, threshold: float, higher_is_better: bool) -> float | None:
    """First horizon h (1-based, linearly interpolated) where ``curve`` (H,) reaches
    ``threshold``: falls to it if ``higher_is_better``, else rises to it; None if never."""
    y = np.asarray(curve, dtype=np.float64)
    beyond = y <= threshold if higher_is_better else y >= threshold
    if not beyond.any():
        return None
    i = int(np.argmax(beyond))  # 0-based index = horizon i + 1
    if i == 0:
        return 1.0
    return float(i + (threshold - y[i - 1]) / (y[i] - y[i - 1]))


def summarise_curve(
    curve: np.ndarray, threshold: float | None, higher_is_better: bool
) -> CurveSummary:
    """h=1 and h=H values, normalised trapezoid area, least-squares slope, threshold crossing."""
    y = np.asarray(curve, dtype=np.float64)  # (H,)
    h = np.arange(1, len(y) + 1, dtype=np.float64)
    single = len(y) == 1
    return CurveSummary(
        at_h1=float(y[0]),
        at_hH=float(y[-1]),
        auc=float(y[0]) if single else float(np.trapezoid(y, h) / (len(y) - 1)),
        slope=None if single else float(np.polyfit(h, y, 1)[0]),
        threshold=threshold,
        crossing=None if threshold is None else first_crossing(y, threshold, higher_is_better),
    )


@dataclass
class DriftResult:
    """Per regime and metric an (E, H) array of per-episode, per-horizon values."""

    config: DriftConfig
    curves: dict[str, dict[str, np.ndarray]]  # regime -> metric -> (E, H)

    def curve(self, regime: str, metric: str) -> np.ndarray:
        """(E, H) values of ``metric`` in ``regime``."""
        if regime not in self.curves:
            raise ValueError(f"regime={regime!r} was not measured; have: {', '.join(self.curves)}")
        if metric not in self.curves[regime]:
            have = ", ".join(self.curves[regime])
            raise ValueError(f"metric={metric!r} is not measured in {regime}; have: {have}")
        return self.curves[regime][metric]

    def mean_curve(self, regime: str, metric: str) -> np.ndarray:
        """(H,) mean over episodes."""
        return self.curve(regime, metric).mean(axis=0)

    def summary(self, regime: str, metric: str) -> CurveSummary:
        return summarise_curve(
            self.mean_curve(regime, metric),
            self.config.threshold(metric),
            METRICS[metric].higher_is_better,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: config, per-episode curves, mean curves and summaries."""
        return {
            "config": asdict(self.config),
            "curves": {
                r: {m: v.tolist() for m, v in metrics.items()} for r, metrics in self.curves.items()
            },
            "mean": {
                r: {m: self.mean_curve(r, m).tolist() for m in metrics}
                for r, metrics in self.curves.items()
            },
            "summary": {
                r: {m: self.summary(r, m).to_dict() for m in metrics}
                for r, metrics in self.curves.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        """Inverse of ``to_dict`` (mean curves and summaries are recomputed)."""
        curves = {
            r: {m: np.asarray(v, dtype=np.float64) for m, v in metrics.items()}
            for r, metrics in data["curves"].items()
        }
        return cls(DriftConfig(**data["config"]), curves)


# ----------------------------------------------------------------- regimes
def chunk_slice(chunk: int, K: int) -> slice:
    """Latent frames of chunk ``chunk`` (0-based)."""
    return slice(chunk * K, (chunk + 1) * K)


def _teacher_forced(
    model: WorldModel, video: Tensor, actions: Tensor, config: DriftConfig, generator
) -> tuple[Tensor, Tensor]:
    """One-step video (E, H*K, N, C) and inverse-dynamics actions (E, H*K, A, d), model units;
    ``actions`` (E, F, A, d) are the real ones in model units."""
    K, first = model.config.K, config.context_chunks
    action_steps = config.action_steps or config.steps
    session = InferenceSession(model, video.shape[0])
    for i in range(first):
        session.make_room(1)
        session.append_video(video[:, chunk_slice(i, K)])
        session.append_actions(actions[:, chunk_slice(i, K)])
    predicted_video, predicted_actions = [], []
    for i in range(first, first + config.horizon):
        frames = chunk_slice(i, K)
        predicted_video.append(session.denoise_video(config.steps, generator)[0])
        session.append_video(video[:, frames])  # inverse dynamics on the real video
        predicted_actions.append(session.denoise_actions(action_steps, generator, i == 0))
        session.append_actions(actions[:, frames])
    return torch.cat(predicted_video, dim=1), torch.cat(predicted_actions, dim=1)


def _rollout(
    model: WorldModel,
    video: Tensor,
    actions: Tensor,
    config: DriftConfig,
    generator,
    own_actions: bool,
) -> tuple[Tensor, Tensor | None]:
    """Imagined video (E, H*K, N, C) and, with ``own_actions``, the denoised actions."""
    Fc = config.context_chunks * model.config.K
    result = rollout_open_loop(
        model,
        video[:, :Fc],
        actions[:, :Fc],
        config.horizon,
        config.steps,
        future_actions=None if own_actions else actions[:, Fc:],
        action_steps=config.action_steps,
        mode=config.mode,
        generator=generator,
        episode_start=True,  # drift episodes start at their frame 0
    )
    return result.video, result.actions if own_actions else None


RUNNERS = {
    "teacher_forced": _teacher_forced,
    "open_loop": functools.partial(_rollout, own_actions=False),
    "autoregressive": functools.partial(_rollout, own_actions=True),
}


# ----------------------------------------------------------------- metrics
def chunk_mean(values: Tensor, horizon: int, valid: Tensor | None = None) -> np.ndarray:
    """(E, H*K, ...) per-frame values -> (E, H) means over each chunk's frames and the rest;
    ``valid`` (E, H*K) bool keeps only those frames (NaN for a chunk without any)."""
    E = values.shape[0]
    per_frame = values.reshape(E, values.shape[1], -1).mean(-1).double()  # (E, H*K)
    if valid is None:
        valid = torch.ones_like(per_frame, dtype=torch.bool)
    valid = valid.to(per_frame.device).reshape(E, horizon, -1)  # (E, H, K)
    sums = (per_frame.reshape(E, horizon, -1) * valid).sum(-1)  # (E, H)
    return (sums / valid.sum(-1)).cpu().numpy()  # 0/0 = NaN for a chunk of padding only


def pixel_metrics(
    latents: Tensor, real: Mapping[str, Tensor], tokenizer: Tokenizer, horizon: int
) -> dict[str, np.ndarray]:
    """Imagined latents (E, H*K, N, C) decoded vs real frames camera -> (E, H*K, H, W, 3)."""
    decoded = tokenizer.decode(latents)  # camera -> (E, H*K, H, W, 3) floats
    per_image = {"pixel_mse": [], "psnr": [], "ssim": []}
    for cam in tokenizer.cameras:
        imagined, truth = decoded[cam], real[cam]
        per_image["pixel_mse"].append(mse(imagined, truth))  # (E, H*K)
        per_image["psnr"].append(psnr(imagined, truth).clamp(max=PSNR_CAP_DB))
        per_image["ssim"].append(ssim(imagined, truth))
    return {
        name: chunk_mean(torch.stack(values, dim=-1), horizon)  # (E, H*K, cameras) -> (E, H)
        for name, values in per_image.items()
    }


def scene_state_metrics(
    latents: Tensor, real: Tensor, tokenizer: Tokenizer, horizon: int
) -> dict[str, np.ndarray]:
    """Imagined vs real latents (E, H*K, 1, S) of a state tokenizer, decoded to states."""
    errors = state_errors(
        tokenizer.decode_state(latents.float()).cpu().numpy(),
        tokenizer.decode_state(real.float()).cpu().numpy(),
        tokenizer.channels,
    )  # name -> (E, H*K)
    return {name: chunk_mean(torch.from_numpy(e), horizon) for name, e in errors.items()}


@torch.no_grad()
def measure_drift(
    model: WorldModel,
    episodes: DriftEpisodes,
    config: DriftConfig,
    tokenizer: Tokenizer | None = None,
) -> DriftResult:
    """Drift curves of ``model`` on ``episodes`` for every regime of ``config``; pixel (or,
    for a state tokenizer, scene-state) metrics with a ``tokenizer`` (None: latent and action
    metrics only). Runs in eval mode."""
    check_mode(model, config.mode)
    K, H = model.config.K, config.horizon
    Fc, Fe = config.context_chunks * K, (config.context_chunks + H) * K
    if episodes.num_frames < Fe:
        raise ValueError(
            f"episodes have {episodes.num_frames} latent frames; context_chunks + horizon = "
            f"{config.context_chunks + H} chunks of K={K} need {Fe}: lengthen the windows"
        )
    real = None
    if tokenizer is not None and tokenizer.observes == "images":
        missing = [c for c in tokenizer.cameras if c not in (episodes.frames or {})]
        if missing:
            raise ValueError(
                f"pixel metrics need the real frames of camera(s) {missing} in episodes.frames; "
                "pass them or tokenizer=None"
            )
        real = {cam: episodes.frames[cam][:, Fc:Fe] for cam in tokenizer.cameras}
    video = episodes.latents[:, :Fe].to(model.device, model.dtype)  # (E, Fe, N, C)
    real_actions = episodes.actions[:, :Fe].to(model.device)  # (E, Fe, A, d) raw
    window = {
        "actions": real_actions,
        "start_joint_pos": episodes.start_joint_pos[:, :Fe],
        "action_valid": episodes.action_valid[:, :Fe],
    }
    actions, _ = model.window_actions(window, K)  # (E, Fe, A, d) model units
    references = chunk_reference(episodes.start_joint_pos[:, :Fe].to(model.device), K)
    action_valid = episodes.action_valid[:, Fc:Fe]  # (E, H*K)
    was_training = model.training
    model.eval()
    curves = {}
    try:
        for regime in config.regimes:
            generator = torch.Generator(device=model.device).manual_seed(config.seed)
            imagined, denoised_actions = RUNNERS[regime](model, video, actions, config, generator)
            metrics = {"latent_mse": chunk_mean((imagined - video[:, Fc:]).square(), H)}
            if denoised_actions is not None:
                raw = model.decode_actions_raw(denoised_actions, references[:, Fc:])
                error = (raw - real_actions[:, Fc:]).square()  # (E, H*K, A, d)
                metrics["action_mse"] = chunk_mean(error, H, action_valid)
            if real is not None:
                metrics.update(pixel_metrics(imagined, real, tokenizer, H))
            elif tokenizer is not None:
                metrics.update(scene_state_metrics(imagined, video[:, Fc:], tokenizer, H))
            curves[regime] = metrics
    finally:
        model.train(was_training)
    return DriftResult(config, curves)
