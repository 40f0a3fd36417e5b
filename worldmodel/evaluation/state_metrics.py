"""Errors of imagined scene states in the units people read: mm, degrees.

A state's channels are named ``envs/state.py``-style: the 14 joint channels, then
``<object>.<suffix>`` per object element. Per frame, imagined vs real:

- ``object_position_mm``: mean over the task's object elements of the Euclidean error of the
  position channels (x, y, z of free and placed bodies; a slide joint's displacement, such as
  the button's press depth, counts as a position of one axis), in mm.
- ``object_rotation_deg``: mean over free bodies of the angle between imagined and real
  orientation (6-D representation, Gram-Schmidt), in degrees; absent without free bodies.
- ``joint_deg``: mean absolute error over the 12 arm joints, in degrees (grippers left out:
  their channel is an opening in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.state import JOINT_CHANNELS, ROTATION_CHANNELS, rotation_angle

POSITION_SUFFIXES = ("x", "y", "z", "q")


def _object_channels(names: Sequence[str]) -> dict[str, dict[str, int]]:
    """object -> suffix -> channel index, for the channels after the joints."""
    objects: dict[str, dict[str, int]] = {}
    for index, name in enumerate(names):
        if index < len(JOINT_CHANNELS):
            continue
        element, _, suffix = name.rpartition(".")
        objects.setdefault(element, {})[suffix] = index
    return objects


def state_errors(
    imagined: np.ndarray, real: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per-frame errors (...,) of imagined vs real states (..., S) with channels ``names``."""
    imagined, real = np.asarray(imagined, np.float64), np.asarray(real, np.float64)
    positions, rotations = [], []
    for channels in _object_channels(names).values():
        position = [channels[s] for s in POSITION_SUFFIXES if s in channels]
        if position:
            difference = imagined[..., position] - real[..., position]
            positions.append(np.linalg.norm(difference, axis=-1) * 1000.0)
        if all(s in channels for s in ROTATION_CHANNELS):
            rotation = [channels[s] for s in ROTATION_CHANNELS]
            angle = rotation_angle(imagined[..., rotation], real[..., rotation])
            rotations.append(np.degrees(angle))
    arm = [i for i, n in enumerate(JOINT_CHANNELS) if not n.endswith("_gripper")]
    errors = {
        "joint_deg": np.degrees(np.abs(imagined[..., arm] - real[..., arm]).mean(-1)),
        "object_position_mm": np.mean(positions, axis=0),
    }
    if rotations:
        errors["object_rotation_deg"] = np.mean(rotations, axis=0)
    return errors
