"""Each arm picks the cylinder on its side of the table and lifts it to the target height."""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np

from envs import contacts, robot
from envs.expert import ArmTarget, Phase
from envs.scene import Footprint, sample_free_xy, side_region
from envs.state import FreeBody
from envs.tasks.base import OBJECT_CONTACT, Task, free_body_pose, set_free_body
from envs.tasks.progress import fraction, staged_progress

RADIUS, HALF_HEIGHT, MASS = 0.02, 0.035, 0.08
LIFT_HEIGHT = 0.10  # m: success once each cylinder's bottom is this far above the table
COLORS = {"left": (0.2, 0.45, 0.85, 1.0), "right": (0.9, 0.35, 0.2, 1.0)}


class PickDualCylinders(Task):
    """Progress: reach 0.3 (each arm's tool centre from home to its cylinder's centre,
    averaged), lift 0.6 (each cylinder's bottom height over ``LIFT_HEIGHT`` once it no longer
    touches the table, averaged), success 0.1."""

    name = "pick_dual_cylinders"
    state_parts = (FreeBody("cylinder_left"), FreeBody("cylinder_right"))
    max_steps = 300

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        for side in robot.SIDES:
            body = spec.worldbody.add_body(name=f"cylinder_{side}", pos=[0, 0, 0.5])
            body.add_freejoint()
            body.add_geom(
                type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                size=[RADIUS, HALF_HEIGHT, 0],
                rgba=COLORS[side],
                mass=MASS,
                **OBJECT_CONTACT,
            )

    def bind(self, model: mujoco.MjModel) -> None:
        self.bind_arms(model)
        self.cylinders = {side: model.body(f"cylinder_{side}").id for side in robot.SIDES}

    def place_objects(self, model, data, rng, table_z) -> list[Footprint]:
        taken: list[Footprint] = []
        for side, sign in (("left", -1.0), ("right", 1.0)):
            low, high = side_region(sign, (0.12, 0.30), (-0.15, 0.15))
            xy = sample_free_xy(rng, low, high, RADIUS, taken)
            set_free_body(model, data, self.cylinders[side], [*xy, table_z + HALF_HEIGHT])
            taken.append(Footprint(xy, RADIUS + 0.06))
        return taken

    def bottom_height(self, model: mujoco.MjModel, data: mujoco.MjData, side: str) -> float:
        """How far (m) the bottom of the cylinder on ``side`` is above the table top."""
        return float(data.xpos[self.cylinders[side]][2] - HALF_HEIGHT - self.table_z(model))

    def is_success(self, model, data) -> bool:
        for side in robot.SIDES:
            lifted = self.bottom_height(model, data, side) >= LIFT_HEIGHT
            held = contacts.touches_both(
                model, data, self.cylinders[side], self.arms[side].finger_geoms
            )
            if not (lifted and held):
                return False
        return True

    def progress(self, model, data) -> float:
        reach = np.mean(
            [self.reach(data, side, data.xpos[self.cylinders[side]]) for side in robot.SIDES]
        )
        lift = np.mean(
            [
                fraction(self.bottom_height(model, data, side), LIFT_HEIGHT)
                if self.off_table(model, data, self.cylinders[side])
                else 0.0
                for side in robot.SIDES
            ]
        )
        return staged_progress(self.is_success(model, data), [(0.3, reach), (0.6, lift)])

    def expert_phases(self, model, data) -> Iterator[Phase]:
        table_z = self.table_z(model)
        grasp = {
            side: free_body_pose(model, data, self.cylinders[side])[:3].copy()
            for side in robot.SIDES
        }
        above = {side: grasp[side] + [0, 0, 0.09] for side in robot.SIDES}
        yaw = np.pi / 2
        yield Phase(1.0, *(ArmTarget(above[s], yaw, 1.0) for s in robot.SIDES))
        yield Phase(0.8, *(ArmTarget(grasp[s]) for s in robot.SIDES))
        yield Phase(0.5, *(ArmTarget(gripper=0.0) for s in robot.SIDES))
        yield Phase(0.3)
        lift = {s: np.array([*grasp[s][:2], table_z + LIFT_HEIGHT + 0.08]) for s in robot.SIDES}
        yield Phase(1.2, *(ArmTarget(lift[s]) for s in robot.SIDES))
        yield Phase(1.0)
