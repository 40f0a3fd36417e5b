"""Dense task progress in [0, 1]: ordered stages, each with a share and a fraction done.

A task's progress is 1.0 exactly when its success check passes. Otherwise it is the sum of
``share * fraction`` over its stages in task order (reach, lift, carry, ...), where a stage
counts as at least as far along as any later stage (the bar resting on the pad implies it
was reached and lifted, even after the gripper has let go and moved away). The shares of a
task's stages sum to ``1 - SUCCESS_SHARE``: the last part comes with success itself (contact,
release, stillness), so a state that is not a success scores at most ``1 - SUCCESS_SHARE``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SUCCESS_SHARE = 0.1


def fraction(value: float, full: float) -> float:
    """``value / full`` clipped to [0, 1]: how much of ``full`` (> 0) is done."""
    return float(np.clip(value / full, 0.0, 1.0))


def closeness(distance: float, start: float, done: float) -> float:
    """0 at ``distance >= start``, 1 at ``distance <= done``, linear in between."""
    return float(np.clip((start - distance) / (start - done), 0.0, 1.0))


def staged_progress(success: bool, stages: Sequence[tuple[float, float]]) -> float:
    """1.0 on success, else the shares of the ordered ``(share, fraction)`` stages done."""
    if success:
        return 1.0
    shares = np.array([share for share, _ in stages])
    fractions = np.clip([f for _, f in stages], 0.0, 1.0)
    done = np.maximum.accumulate(fractions[::-1])[::-1]  # a later stage implies the earlier
    return float(np.dot(shares, done))
