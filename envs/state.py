"""The scene state of the state track: the 14 joint positions and the poses of a task's objects.

One frame's state is a float vector of named channels: the robot's joint positions as the
``joint_pos`` observation gives them (left arm first, 6 joints in rad then the gripper opening
in [0, 1]), then each of the task's ``state_parts`` in order:

- ``FreeBody``: a body with a free joint; position x, y, z (m) and its orientation as the first
  two columns of its rotation matrix (``r00 r10 r20 r01 r11 r21``, the continuous 6-D
  representation of Zhou et al. 2019; a quaternion's sign flip would be a jump).
- ``PlacedBody``: a welded body that ``place_objects`` puts by ``model.body_pos``; x, y, z (m;
  z follows the randomized table height). Its position is not in ``qpos``, which is why
  ``qpos`` alone does not describe a scene.
- ``SlideJoint``: a one-dof joint of an object (the button's press); its ``qpos`` (m).

``SceneState.write`` sets a simulator to a state (the imagined one, for videos); what the
state leaves out (light, table colour, distractors) comes from ``env.reset(seed)`` of the same
episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mujoco
import numpy as np

from envs import robot

JOINT_CHANNELS = tuple(
    f"{side}_{joint}" for side in robot.SIDES for joint in (*robot.ARM_JOINTS, "gripper")
)
ROTATION_CHANNELS = ("r00", "r10", "r20", "r01", "r11", "r21")


def rotation_6d(quat: np.ndarray) -> np.ndarray:
    """(6,) the first two columns of the rotation matrix of a unit quaternion (w, x, y, z)."""
    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, np.asarray(quat, np.float64))
    return matrix.reshape(3, 3)[:, :2].T.reshape(6)


def rotation_matrix(six: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the rotations nearest to (..., 6) representations (Gram-Schmidt)."""
    six = np.asarray(six, np.float64)
    a, b = six[..., :3], six[..., 3:6]
    x = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-9)
    b = b - x * (x * b).sum(-1, keepdims=True)
    y = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-9)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def quaternion(six: np.ndarray) -> np.ndarray:
    """(4,) unit quaternion (w, x, y, z) of a (6,) rotation representation."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rotation_matrix(six).reshape(9))
    return quat


def rotation_angle(six_a: np.ndarray, six_b: np.ndarray) -> np.ndarray:
    """(...,) angle (rad) between rotations given as (..., 6) representations."""
    relative_trace = (rotation_matrix(six_a) * rotation_matrix(six_b)).sum((-2, -1))
    return np.arccos(np.clip((relative_trace - 1) / 2, -1.0, 1.0))


@dataclass(frozen=True)
class StatePart:
    """Channels of one object element; ``kind`` tells drift how to measure them."""

    name: str  # body or joint name in the compiled model
    kind: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]

    def channels(self) -> tuple[str, ...]:
        return tuple(f"{self.name}.{s}" for s in self.suffixes)

    def read(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        raise NotImplementedError

    def write(self, model: mujoco.MjModel, data: mujoco.MjData, values: np.ndarray) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class FreeBody(StatePart):
    kind: ClassVar[str] = "free"
    suffixes: ClassVar[tuple[str, ...]] = ("x", "y", "z", *ROTATION_CHANNELS)

    def _qpos(self, model: mujoco.MjModel) -> int:
        return int(model.jnt_qposadr[model.body_jntadr[model.body(self.name).id]])

    def read(self, model, data) -> np.ndarray:
        pose = data.qpos[self._qpos(model) : self._qpos(model) + 7]
        return np.concatenate([pose[:3], rotation_6d(pose[3:])])

    def write(self, model, data, values) -> None:
        address = self._qpos(model)
        data.qpos[address : address + 3] = values[:3]
        data.qpos[address + 3 : address + 7] = quaternion(values[3:9])


@dataclass(frozen=True)
class PlacedBody(StatePart):
    kind: ClassVar[str] = "placed"
    suffixes: ClassVar[tuple[str, ...]] = ("x", "y", "z")

    def read(self, model, data) -> np.ndarray:
        return model.body_pos[model.body(self.name).id].copy()

    def write(self, model, data, values) -> None:
        model.body_pos[model.body(self.name).id] = values[:3]


@dataclass(frozen=True)
class SlideJoint(StatePart):
    kind: ClassVar[str] = "slide"
    suffixes: ClassVar[tuple[str, ...]] = ("q",)

    def read(self, model, data) -> np.ndarray:
        return data.qpos[model.jnt_qposadr[model.joint(self.name).id]][None].copy()

    def write(self, model, data, values) -> None:
        data.qpos[model.jnt_qposadr[model.joint(self.name).id]] = values[0]


def state_names(parts: tuple[StatePart, ...]) -> tuple[str, ...]:
    """The channel names of a scene state with object elements ``parts``."""
    return JOINT_CHANNELS + tuple(c for p in parts for c in p.channels())


class SceneState:
    """Reads and writes the state vector of a task's scene (module docstring for channels)."""

    def __init__(self, parts: tuple[StatePart, ...], arms: dict[str, robot.ArmIds]) -> None:
        self.parts = parts
        self.arms = arms
        self.names = state_names(parts)
        self.slices: list[tuple[StatePart, slice]] = []
        start = len(JOINT_CHANNELS)
        for part in parts:
            self.slices.append((part, slice(start, start + len(part.suffixes))))
            start += len(part.suffixes)

    @property
    def dim(self) -> int:
        return len(self.names)

    def read(self, model: mujoco.MjModel, data: mujoco.MjData, joint_pos: np.ndarray) -> np.ndarray:
        """(S,) float32: ``joint_pos`` (the observation's 14 values) and the object channels."""
        objects = [part.read(model, data) for part in self.parts]
        return np.concatenate([np.asarray(joint_pos, np.float64), *objects]).astype(np.float32)

    def write(self, model: mujoco.MjModel, data: mujoco.MjData, state: np.ndarray) -> None:
        """Set the simulator to ``state`` (S,) and run ``mj_forward``: joints, then objects."""
        state = np.asarray(state, np.float64)
        if state.shape != (self.dim,):
            raise ValueError(f"state: expected shape ({self.dim},), got {state.shape}")
        for index, side in enumerate(robot.SIDES):
            arm = self.arms[side]
            values = state[7 * index : 7 * index + 7]
            data.qpos[arm.qpos] = values[:6]
            data.qpos[arm.finger_qpos] = np.clip(values[6], 0.0, 1.0) * robot.FINGER_TRAVEL
        for part, where in self.slices:
            part.write(model, data, state[where])
        mujoco.mj_forward(model, data)
