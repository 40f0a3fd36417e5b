"""Time on the two clocks of the harness (README, "Glossary"): the control rate at which actions
are executed and recorded (``control_hz``, 50 Hz) and the frame rate at which the world model
sees frames (``fps``); their ratio, the fps stride, is the number of actions per frame."""

from __future__ import annotations

import numpy as np


def fps_stride(control_hz: float, fps: float) -> int:
    """Control steps per kept frame (the actions per frame); ValueError unless
    ``control_hz / fps`` is a positive integer."""
    stride = control_hz / fps if fps > 0 else 0.0
    if stride < 1 or not np.isclose(stride, round(stride), rtol=0, atol=1e-9):
        examples = ", ".join(f"{control_hz / k:g}" for k in (1, 2, 4, 5, 10))
        raise ValueError(
            f"fps={fps:g}: control_hz / fps must be a positive integer "
            f"(valid fps are {control_hz:g} / k, e.g. {examples})"
        )
    return round(stride)
