"""The right arm picks a bar and hands it to the left arm, which places it on a pad.

Both grippers point straight down, so the object is a bar along x that the two hands hold at
the same time at its two ends (fingers closing across it) during the handover.
"""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np

from envs import contacts
from envs.expert import ArmTarget, Phase
from envs.scene import Footprint, sample_free_xy
from envs.state import FreeBody, PlacedBody
from envs.tasks.base import OBJECT_CONTACT, Task, set_free_body, tilt
from envs.tasks.progress import closeness, fraction, staged_progress

BAR_HALF = np.array([0.065, 0.015, 0.015])  # m, a 13 x 3 x 3 cm bar
BAR_MASS, BAR_RGBA = 0.08, (0.95, 0.7, 0.1, 1.0)
PAD_HALF_SIDE, PAD_HALF_THICKNESS, PAD_RGBA = 0.05, 0.004, (0.2, 0.3, 0.8, 1.0)
BAR_X, BAR_Y, BAR_YAW = (0.12, 0.28), (-0.12, 0.12), 0.3  # initial bar centre and |yaw|
PAD_X, PAD_Y = (-0.28, -0.14), (-0.12, 0.12)
GRASP_OFFSET = 0.038  # m along the bar from its centre: right hand at +, left hand at -
LIFT = 0.15  # m, bar bottom above the table during the handover
APPROACH = 0.09  # m above a grasp point, where each descent starts
RIGHT_RETREAT = np.array([0.27, 0.0, 0.25])  # right TCP after letting go, above table top
# Footprints: the bar or pad plus the open fingers' sweep around the grasp points.
FOOTPRINT_RADIUS = 0.085
# Success: bar centre within the pad minus this margin, bottom within the height tolerance of
# the pad top, tilt and speed below these limits, and neither gripper touching it.
PAD_MARGIN, HEIGHT_TOLERANCE, MAX_TILT, MAX_SPEED = 0.02, 0.004, 0.1, 0.05


class HandoverBlock(Task):
    """Progress: right reach 0.15 (the right tool centre from home to the bar's right grasp
    point), lift 0.15 (the bar's bottom height over ``LIFT``), left reach 0.15 (the left tool
    centre from home to the bar's left grasp point), carry 0.25 (the larger of the x and y
    distances between the bar's and the pad's centres, from the closest they can start at down
    to the success margin), lower 0.2 (once centred, the bar's bottom height above the pad's
    top, from ``LIFT`` down to ``HEIGHT_TOLERANCE``), success 0.1; all but the right reach
    count while the bar is off the table."""

    name = "handover_block"
    state_parts = (FreeBody("bar"), PlacedBody("pad"))
    max_steps = 900

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        bar = spec.worldbody.add_body(name="bar", pos=[BAR_X[1], 0, 0.5])
        bar.add_freejoint()
        bar.add_geom(
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=BAR_HALF,
            rgba=BAR_RGBA,
            mass=BAR_MASS,
            **OBJECT_CONTACT,
        )
        pad = spec.worldbody.add_body(name="pad", pos=[PAD_X[0], 0, 0])
        pad.add_geom(
            name="pad",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[PAD_HALF_SIDE, PAD_HALF_SIDE, PAD_HALF_THICKNESS],
            pos=[0, 0, PAD_HALF_THICKNESS],
            rgba=PAD_RGBA,
            mass=0.05,
            **OBJECT_CONTACT,
        )

    def bind(self, model: mujoco.MjModel) -> None:
        self.bind_arms(model)
        self.bar = model.body("bar").id
        self.pad = model.body("pad").id

    def place_objects(self, model, data, rng, table_z) -> list[Footprint]:
        pad_xy = rng.uniform((PAD_X[0], PAD_Y[0]), (PAD_X[1], PAD_Y[1]))
        model.body_pos[self.pad] = [*pad_xy, table_z]
        taken = [Footprint(pad_xy, FOOTPRINT_RADIUS)]
        bar_xy = sample_free_xy(
            rng, (BAR_X[0], BAR_Y[0]), (BAR_X[1], BAR_Y[1]), FOOTPRINT_RADIUS, taken
        )
        set_free_body(
            model,
            data,
            self.bar,
            [*bar_xy, table_z + BAR_HALF[2]],
            yaw=rng.uniform(-BAR_YAW, BAR_YAW),
        )
        return [*taken, Footprint(bar_xy, FOOTPRINT_RADIUS)]

    def pad_top(self, model: mujoco.MjModel) -> np.ndarray:
        """Centre of the pad's top face (world)."""
        return model.body_pos[self.pad] + [0.0, 0.0, 2 * PAD_HALF_THICKNESS]

    def is_success(self, model, data) -> bool:
        pad_top = self.pad_top(model)
        centre = data.xpos[self.bar]
        on_pad = np.all(np.abs(centre[:2] - pad_top[:2]) <= PAD_HALF_SIDE - PAD_MARGIN)
        resting = (
            abs(centre[2] - BAR_HALF[2] - pad_top[2]) <= HEIGHT_TOLERANCE
            and tilt(model, data, self.bar) <= MAX_TILT
            and np.linalg.norm(self._bar_velocity(model, data)) <= MAX_SPEED
        )
        fingers = self.arms["left"].finger_geoms | self.arms["right"].finger_geoms
        return bool(on_pad and resting and not contacts.touches_any(model, data, self.bar, fingers))

    def progress(self, model, data) -> float:
        bar, pad_top = data.xpos[self.bar], self.pad_top(model)
        right_reach = self.reach(data, "right", self._along_bar(data, GRASP_OFFSET))
        lift = left_reach = carry = lower = 0.0
        if self.off_table(model, data, self.bar):
            bottom = bar[2] - BAR_HALF[2]
            lift = fraction(bottom - self.table_z(model), LIFT)
            left_reach = self.reach(data, "left", self._along_bar(data, -GRASP_OFFSET))
            offset, centred = np.abs(bar[:2] - pad_top[:2]).max(), PAD_HALF_SIDE - PAD_MARGIN
            carry = closeness(offset, BAR_X[0] - PAD_X[1], centred)
            if offset <= centred:
                lower = closeness(bottom - pad_top[2], LIFT, HEIGHT_TOLERANCE)
        stages = [(0.15, right_reach), (0.15, lift), (0.15, left_reach), (0.25, carry)]
        return staged_progress(self.is_success(model, data), [*stages, (0.2, lower)])

    def _bar_velocity(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        address = model.jnt_dofadr[model.body_jntadr[self.bar]]
        return data.qvel[address : address + 3]

    def _along_bar(self, data: mujoco.MjData, offset: float) -> np.ndarray:
        """World point ``offset`` metres from the bar's centre along its long axis."""
        return data.xpos[self.bar] + offset * data.xmat[self.bar].reshape(3, 3)[:, 0]

    def _grip_yaw(self, data: mujoco.MjData) -> float:
        """Gripper yaw that closes the fingers across the bar."""
        axis = data.xmat[self.bar].reshape(3, 3)[:, 0]
        return float(np.arctan2(axis[1], axis[0])) + np.pi / 2

    def expert_phases(self, model, data) -> Iterator[Phase]:
        table_z = self.table_z(model)
        # The right hand picks the bar by its right end and lifts it.
        right_grasp = self._along_bar(data, GRASP_OFFSET)
        yield Phase(1.0, right=ArmTarget(right_grasp + [0, 0, APPROACH], self._grip_yaw(data), 1.0))
        yield Phase(0.2)
        yield Phase(0.8, right=ArmTarget(right_grasp))
        yield Phase(0.2)
        yield Phase(0.5, right=ArmTarget(gripper=0.0))
        yield Phase(0.3)
        yield Phase(1.0, right=ArmTarget(right_grasp + [0, 0, LIFT]))
        # It brings the bar, turned along x, to the middle of the table.
        handover = np.array([GRASP_OFFSET, 0.0, table_z + BAR_HALF[2] + LIFT])
        yield Phase(1.4, right=ArmTarget(handover, np.pi / 2))
        yield Phase(0.3)
        # The left hand takes the bar's left end where it really is; the right lets go.
        left_grasp = self._along_bar(data, -GRASP_OFFSET)
        yield Phase(1.0, left=ArmTarget(left_grasp + [0, 0, APPROACH], self._grip_yaw(data), 1.0))
        yield Phase(0.2)
        yield Phase(0.8, left=ArmTarget(left_grasp))
        yield Phase(0.2)
        yield Phase(0.5, left=ArmTarget(gripper=0.0))
        yield Phase(0.3)
        yield Phase(0.4, right=ArmTarget(gripper=1.0))
        yield Phase(0.6, right=ArmTarget(handover + [0, 0, APPROACH]))
        # The left hand puts the bar's centre on the pad's centre and lets go.
        bar_from_tcp = data.xpos[self.bar] - left_grasp
        rest = self.pad_top(model) + [0, 0, BAR_HALF[2]] - bar_from_tcp
        yield Phase(
            1.2,
            left=ArmTarget(rest + [0, 0, APPROACH]),
            right=ArmTarget(RIGHT_RETREAT + [0, 0, table_z]),
        )
        yield Phase(0.3)
        yield Phase(0.8, left=ArmTarget(rest - [0, 0, 0.003]))
        yield Phase(0.2)
        yield Phase(0.4, left=ArmTarget(gripper=1.0))
        yield Phase(0.6, left=ArmTarget(rest + [0, 0, APPROACH]))
