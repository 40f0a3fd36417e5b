"""Time on the clocks of the harness (README, "Glossary"), in the paper's units.

- ``control_hz`` (50 Hz): the rate at which actions are executed and recorded.
- ``fps``: the **video** frame rate, the number the paper names ("12 / 25 / 50 fps"); at
  most the control rate, one video frame per ``control_hz / fps`` control steps.
- ``frames_per_latent``: video frames one latent frame stands for. The reference's video VAE
  compresses time 4x (lingbot-va ``wan_va/configs/va_robotwin_cfg.py``: ``action_per_frame =
  16`` at 12.5 fps; its RoboTwin client ``evaluation/robotwin/eval_polict_client_openpi.py``
  takes an observation every ``action.shape[2] // 4`` actions), so the default is 4: the
  paper's 50 fps runs 4 actions per latent frame, 25 fps 8 and 12.5 fps ("12 fps") 16. Our
  tokenizers see one kept frame per latent frame, so a latent frame here is the observation at
  its time (the state, or one image).

The world model sees latent frames at ``latent_fps = fps / frames_per_latent``; each carries
``actions_per_latent_frame = control_hz / latent_fps`` actions (the fps stride of the data
functions, which take that latent rate). Runs made before 2026-12-07 had no temporal
compression: their ``fps`` was the latent rate, and they are read with
``frames_per_latent = 1`` (``worldmodel/training/renamed_keys.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAMES_PER_LATENT = 4  # the reference VAE's temporal compression
PAPER_FPS = (12.5, 25.0, 50.0)  # the paper's "12 / 25 / 50 fps" at a 50 Hz control rate


def fps_stride(control_hz: float, fps: float) -> int:
    """Control steps per kept frame at ``fps`` frames per second; ValueError unless
    ``control_hz / fps`` is a positive integer."""
    stride = control_hz / fps if fps > 0 else 0.0
    if stride < 1 or not np.isclose(stride, round(stride), rtol=0, atol=1e-9):
        examples = ", ".join(f"{control_hz / k:g}" for k in (1, 2, 4, 5, 10))
        raise ValueError(
            f"fps={fps:g}: control_hz / fps must be a positive integer "
            f"(valid fps are {control_hz:g} / k, e.g. {examples})"
        )
    return round(stride)


def kept_frames(steps: int, stride: int) -> slice:
    """The frames o_0, o_s, o_2s, ... kept of an episode of ``steps`` control steps (T+1
    observations) at ``stride`` control steps per frame; a trailing partial stride is dropped,
    so the slice holds ``steps // stride + 1`` frames."""
    return slice(0, steps // stride * stride + 1, stride)


@dataclass(frozen=True)
class FrameRate:
    """A run's frame rate: the paper's video ``fps`` and what it means for the model."""

    fps: float  # video frames per second (the paper's label)
    frames_per_latent: int = FRAMES_PER_LATENT  # video frames per latent frame
    control_hz: float = 50.0

    def __post_init__(self) -> None:
        if self.frames_per_latent < 1:
            raise ValueError(
                f"frames_per_latent={self.frames_per_latent} is not valid; must be >= 1"
            )
        fps_stride(self.control_hz, self.fps)  # one video frame per whole control steps

    @property
    def video_stride(self) -> int:
        """Control steps per video frame."""
        return fps_stride(self.control_hz, self.fps)

    @property
    def actions_per_latent_frame(self) -> int:
        """Control steps (actions) per latent frame: the model's ``actions_per_frame``."""
        return self.video_stride * self.frames_per_latent

    @property
    def latent_fps(self) -> float:
        """Latent frames per second: the rate the data functions read episodes at."""
        return self.control_hz / self.actions_per_latent_frame

    @property
    def seconds_per_latent_frame(self) -> float:
        return self.actions_per_latent_frame / self.control_hz

    def seconds_per_chunk(self, K: int) -> float:
        """Seconds of behaviour one chunk of ``K`` latent frames covers."""
        return K * self.seconds_per_latent_frame

    def describe(self, K: int | None = None) -> str:
        """``fps 50 (4 actions per latent frame[, 0.16 s per chunk of 2])``."""
        chunk = "" if K is None else f", {self.seconds_per_chunk(K):.2f} s per chunk of {K}"
        return f"fps {self.fps:g} ({self.actions_per_latent_frame} actions per latent frame{chunk})"
