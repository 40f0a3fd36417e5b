"""What every task provides: objects, initial poses, a success check, progress and an expert."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import mujoco
import numpy as np

from envs import contacts, robot
from envs.expert import Phase
from envs.scene import Footprint
from envs.state import StatePart
from envs.tasks.progress import closeness

OBJECT_CONTACT = dict(
    contype=robot.OBJECT_GROUP,
    conaffinity=robot.OBJECT_GROUP | robot.ARM_GROUP,
    condim=4,
    friction=[1.0, 0.01, 0.001],
)


def free_body_pose(model: mujoco.MjModel, data: mujoco.MjData, body: int) -> np.ndarray:
    """The 7 qpos entries (position, quaternion) of a body with a free joint."""
    address = model.jnt_qposadr[model.body_jntadr[body]]
    return data.qpos[address : address + 7]


def set_free_body(
    model: mujoco.MjModel, data: mujoco.MjData, body: int, pos, yaw: float = 0.0
) -> None:
    free_body_pose(model, data, body)[:] = [*pos, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]


def tilt(model: mujoco.MjModel, data: mujoco.MjData, body: int) -> float:
    """Angle (rad) between the body's z axis and the world's."""
    return float(np.arccos(np.clip(data.xmat[body][8], -1.0, 1.0)))


def home_tcp_positions(
    model: mujoco.MjModel, arms: dict[str, robot.ArmIds]
) -> dict[str, np.ndarray]:
    """World position of each arm's tool centre in the home pose (the arms' bases are fixed)."""
    data = mujoco.MjData(model)
    for arm in arms.values():
        data.qpos[arm.qpos] = robot.HOME
    mujoco.mj_kinematics(model, data)
    return {side: data.site_xpos[arm.tcp_site].copy() for side, arm in arms.items()}


class Task(ABC):
    """One manipulation task. Ids of its elements are looked up in :meth:`bind`."""

    name: ClassVar[str]
    max_steps: ClassVar[int]  # episode limit in 50 Hz control steps
    # the object elements of the state track's scene state, in channel order (envs/state.py)
    state_parts: ClassVar[tuple[StatePart, ...]]

    @abstractmethod
    def add_objects(self, spec: mujoco.MjSpec) -> None:
        """Add the task's bodies (free joints for movable objects) to the scene spec."""

    @abstractmethod
    def bind(self, model: mujoco.MjModel) -> None:
        """Look up the ids of the task's bodies and geoms in the compiled model."""

    @abstractmethod
    def place_objects(
        self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator, table_z: float
    ) -> list[Footprint]:
        """Set initial object poses (rejection-sampled); return the table area they occupy."""

    @abstractmethod
    def is_success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """A pure function of the simulator state (after ``mj_forward``)."""

    @abstractmethod
    def progress(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        """Dense progress in [0, 1], a pure function of the simulator state (after ``mj_forward``).

        Exactly 0 in the reset state (objects settled, arms at home), exactly 1 whenever
        :meth:`is_success` holds, and below 1 otherwise; built with
        :func:`envs.tasks.progress.staged_progress` from stages whose shares the task's
        docstring lists.
        """

    @abstractmethod
    def expert_phases(self, model: mujoco.MjModel, data: mujoco.MjData) -> Iterator[Phase]:
        """The scripted expert's plan; resumed at each phase start to read the current state."""

    def bind_arms(self, model: mujoco.MjModel) -> None:
        """What every task's checks use: arm ids, the table top and the home tool centres."""
        self.arms = {side: robot.arm_ids(model, side) for side in robot.SIDES}
        self.table_geom = model.geom("table_top").id
        self.table_body = model.body("table").id
        self.home_tcp = home_tcp_positions(model, self.arms)

    def table_z(self, model: mujoco.MjModel) -> float:
        return float(model.body_pos[self.table_body][2])

    def reach(self, data: mujoco.MjData, side: str, point: np.ndarray) -> float:
        """How far (0 at home, 1 there) the arm's tool centre has come towards ``point``."""
        start = float(np.linalg.norm(self.home_tcp[side] - point))
        tcp = data.site_xpos[self.arms[side].tcp_site]
        return closeness(float(np.linalg.norm(tcp - point)), start, 0.0)

    def off_table(self, model: mujoco.MjModel, data: mujoco.MjData, *bodies: int) -> bool:
        """None of ``bodies`` touches the table top (held up, or resting on something else)."""
        return not any(
            self.table_geom in contacts.touching_geoms(model, data, body) for body in bodies
        )
