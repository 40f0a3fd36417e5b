"""Both arms grasp the raised handles at the two ends of a tray and lift it level."""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np

from envs import contacts, robot
from envs.expert import ArmTarget, Phase
from envs.scene import Footprint
from envs.state import FreeBody
from envs.tasks.base import OBJECT_CONTACT, Task, free_body_pose, set_free_body, tilt
from envs.tasks.progress import fraction, staged_progress

PLATE_HALF = np.array([0.12, 0.08, 0.005])  # m; the tray body's origin is the plate's centre
RIM_HEIGHT, RIM_HALF_THICKNESS = 0.012, 0.0025  # low wall around the plate's edge
# Each handle is a bar along y on two posts, raised so the open fingers clear plate and rim.
HANDLE_X = 0.105  # m, bar centre from the tray centre along the tray's x axis
BAR_HALF = np.array([0.008, 0.06, 0.008])
BAR_Z = 0.045  # m, bar centre above the plate centre
POST_Y, POST_HALF_SIDE = 0.05, 0.006
MASSES = {"plate": 0.16, "rim": 0.01, "bar": 0.02, "post": 0.005}  # kg, ~0.26 in all
TRAY_RGBA, HANDLE_RGBA = (0.75, 0.6, 0.35, 1.0), (0.25, 0.3, 0.55, 1.0)
CENTRE_LOW, CENTRE_HIGH = np.array([-0.05, -0.10]), np.array([0.05, 0.10])
MAX_YAW = 0.2  # rad
FOOTPRINT_RADIUS = 0.20  # tray corners (0.145) and the outer fingers' path (0.16), with margin
LIFT_HEIGHT = 0.08  # m above the resting height for success
MAX_TILT = 0.15  # rad
EXPERT_LIFT = 0.12  # m the expert raises the tray
APPROACH_HEIGHT = 0.09  # m above the bars before descending
SIDE_SIGN = {"left": -1.0, "right": 1.0}  # the left handle is at the tray's -x end


def _box(body, half, pos, rgba, mass: float) -> None:
    body.add_geom(
        type=mujoco.mjtGeom.mjGEOM_BOX, size=half, pos=pos, rgba=rgba, mass=mass, **OBJECT_CONTACT
    )


def _add_rim(tray) -> None:
    z = PLATE_HALF[2] + RIM_HEIGHT / 2
    for sign in (-1.0, 1.0):
        _box(
            tray,
            [RIM_HALF_THICKNESS, PLATE_HALF[1], RIM_HEIGHT / 2],
            [sign * (PLATE_HALF[0] - RIM_HALF_THICKNESS), 0, z],
            TRAY_RGBA,
            MASSES["rim"],
        )
        _box(
            tray,
            [PLATE_HALF[0], RIM_HALF_THICKNESS, RIM_HEIGHT / 2],
            [0, sign * (PLATE_HALF[1] - RIM_HALF_THICKNESS), z],
            TRAY_RGBA,
            MASSES["rim"],
        )


def _add_handle(tray, side: str) -> None:
    """A rigid child body (no joint) so contacts with it name the handle, not the whole tray."""
    handle = tray.add_body(name=f"tray_handle_{side}", pos=[SIDE_SIGN[side] * HANDLE_X, 0, BAR_Z])
    _box(handle, BAR_HALF, [0, 0, 0], HANDLE_RGBA, MASSES["bar"])
    post_half_z = (BAR_Z - BAR_HALF[2] - PLATE_HALF[2]) / 2
    for sign in (-1.0, 1.0):
        _box(
            handle,
            [POST_HALF_SIDE, POST_HALF_SIDE, post_half_z],
            [0, sign * POST_Y, -BAR_HALF[2] - post_half_z],
            HANDLE_RGBA,
            MASSES["post"],
        )


class LiftTrayDual(Task):
    """Progress: reach 0.3 (each arm's tool centre from home to its handle, averaged), lift 0.6
    (the tray's height over ``LIFT_HEIGHT`` once nothing of it touches the table), success 0.1."""

    name = "lift_tray_dual"
    state_parts = (FreeBody("tray"),)
    max_steps = 430

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        tray = spec.worldbody.add_body(name="tray", pos=[0, 0, 0.5])
        tray.add_freejoint()
        _box(tray, PLATE_HALF, [0, 0, 0], TRAY_RGBA, MASSES["plate"])
        _add_rim(tray)
        for side in robot.SIDES:
            _add_handle(tray, side)

    def bind(self, model: mujoco.MjModel) -> None:
        self.bind_arms(model)
        self.tray = model.body("tray").id
        self.handles = {side: model.body(f"tray_handle_{side}").id for side in robot.SIDES}

    def place_objects(self, model, data, rng, table_z) -> list[Footprint]:
        xy = rng.uniform(CENTRE_LOW, CENTRE_HIGH)
        set_free_body(
            model,
            data,
            self.tray,
            [*xy, table_z + PLATE_HALF[2]],
            yaw=rng.uniform(-MAX_YAW, MAX_YAW),
        )
        return [Footprint(xy, FOOTPRINT_RADIUS)]

    def height(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        """How far (m) the plate's bottom is above the table top."""
        return float(data.xpos[self.tray][2] - PLATE_HALF[2] - self.table_z(model))

    def is_success(self, model, data) -> bool:
        held = all(
            contacts.touches_both(model, data, self.handles[side], self.arms[side].finger_geoms)
            for side in robot.SIDES
        )
        return (
            self.height(model, data) >= LIFT_HEIGHT
            and tilt(model, data, self.tray) < MAX_TILT
            and held
            and self.off_table(model, data, self.tray, *self.handles.values())
        )

    def progress(self, model, data) -> float:
        reach = np.mean(
            [self.reach(data, side, data.xpos[self.handles[side]]) for side in robot.SIDES]
        )
        lifted = self.off_table(model, data, self.tray, *self.handles.values())
        lift = fraction(self.height(model, data), LIFT_HEIGHT) if lifted else 0.0
        return staged_progress(self.is_success(model, data), [(0.3, reach), (0.6, lift)])

    def expert_phases(self, model, data) -> Iterator[Phase]:
        quat = free_body_pose(model, data, self.tray)[3:]
        yaw = float(2.0 * np.arctan2(quat[3], quat[0]))  # the tray lies flat: yaw only
        grasp = {side: data.xpos[self.handles[side]].copy() for side in robot.SIDES}
        above = {side: grasp[side] + [0, 0, APPROACH_HEIGHT] for side in robot.SIDES}
        lifted = {side: grasp[side] + [0, 0, EXPERT_LIFT] for side in robot.SIDES}
        yield Phase(1.2, *(ArmTarget(above[s], yaw, 1.0) for s in robot.SIDES))
        yield Phase(0.3)
        yield Phase(0.9, *(ArmTarget(grasp[s]) for s in robot.SIDES))
        yield Phase(0.2)
        yield Phase(0.5, *(ArmTarget(gripper=0.0) for s in robot.SIDES))
        yield Phase(0.4)
        yield Phase(1.6, *(ArmTarget(lifted[s]) for s in robot.SIDES))
        yield Phase(1.0)
