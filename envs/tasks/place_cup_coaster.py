"""The arm on the objects' side picks up a cup and sets it down upright on a coaster."""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np

from envs import contacts, robot
from envs.expert import ArmTarget, Phase
from envs.scene import Footprint, sample_pair_on_one_side
from envs.state import FreeBody, PlacedBody
from envs.tasks.base import OBJECT_CONTACT, Task, free_body_pose, set_free_body, tilt
from envs.tasks.progress import closeness, fraction, staged_progress

CUP_RADIUS, CUP_HALF_HEIGHT, CUP_MASS = 0.024, 0.043, 0.08
HANDLE_HALF = np.array([0.008, 0.003, 0.018])  # box on the cup's local +x side
HANDLE_MASS = 0.005
COASTER_RADIUS, COASTER_THICKNESS = 0.048, 0.006
CUP_RGBA, COASTER_RGBA = (0.85, 0.22, 0.18, 1.0), (0.12, 0.32, 0.78, 1.0)
X_RANGE, Y_RANGE = (0.12, 0.32), (-0.17, 0.17)  # |x| and y of the cup and coaster centres
MIN_GAP = 0.05  # m between the cup's and the coaster's rims: centres >= 12.2 cm apart
GRIPPER_CLEARANCE = 0.06  # m around a centre: the open fingers' reach plus a margin
# Success: the cup stands still, upright, on the coaster, well inside its rim, and released.
CENTRE_MARGIN = 0.015  # m: the cup's centre lies within COASTER_RADIUS - CENTRE_MARGIN
MAX_TILT = 0.2  # rad
REST_TOLERANCE = 0.004  # m between the cup's bottom and the coaster's top
REST_SPEED = 0.05  # m/s
# Expert.
GRASP_ABOVE_CENTRE = 0.007  # m: the tool centre sits this far above the cup's centre
APPROACH_HEIGHT = 0.09  # m above the grasp
LIFT = 0.10  # m
RELEASE_GAP = 0.005  # m between the cup's bottom and the coaster's top when the fingers open
CARRY_SPEED = 0.2  # m/s, mean


class PlaceCupCoaster(Task):
    """Progress: reach 0.2 (the nearer arm's tool centre from home to the grasp point), lift 0.2
    (the cup's bottom height over ``LIFT``), carry 0.3 (its centre's horizontal distance to the
    coaster's, from the closest it can start at down to the success margin), lower 0.2 (once
    centred, its bottom's height above the coaster's top, from ``LIFT`` down to
    ``REST_TOLERANCE``), success 0.1; lift, carry and lower count while the cup is off the
    table."""

    name = "place_cup_coaster"
    state_parts = (FreeBody("cup"), PlacedBody("coaster"))
    max_steps = 650

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        cup = spec.worldbody.add_body(name="cup", pos=[0, 0, 0.5])
        cup.add_freejoint()
        cup.add_geom(
            type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[CUP_RADIUS, CUP_HALF_HEIGHT, 0],
            rgba=CUP_RGBA,
            mass=CUP_MASS,
            **OBJECT_CONTACT,
        )
        # The expert closes the fingers across the handle's direction, so it never touches them.
        cup.add_geom(
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=HANDLE_HALF,
            pos=[CUP_RADIUS + HANDLE_HALF[0], 0, 0.005],
            rgba=CUP_RGBA,
            mass=HANDLE_MASS,
            **OBJECT_CONTACT,
        )
        coaster = spec.worldbody.add_body(name="coaster", pos=[X_RANGE[1], 0, 0])
        coaster.add_geom(
            type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[COASTER_RADIUS, COASTER_THICKNESS / 2, 0],
            pos=[0, 0, COASTER_THICKNESS / 2],
            rgba=COASTER_RGBA,
            mass=0.05,
            **OBJECT_CONTACT,
        )

    def bind(self, model: mujoco.MjModel) -> None:
        self.bind_arms(model)
        self.cup = model.body("cup").id
        self.cup_dof = model.jnt_dofadr[model.body_jntadr[self.cup]]
        self.coaster = model.body("coaster").id

    def place_objects(self, model, data, rng, table_z) -> list[Footprint]:
        cup_xy, coaster_xy = sample_pair_on_one_side(
            rng, X_RANGE, Y_RANGE, CUP_RADIUS, COASTER_RADIUS, margin=MIN_GAP
        )
        set_free_body(
            model,
            data,
            self.cup,
            [*cup_xy, table_z + CUP_HALF_HEIGHT],
            yaw=rng.uniform(-np.pi, np.pi),
        )
        model.body_pos[self.coaster] = [*coaster_xy, table_z]
        return [Footprint(cup_xy, GRIPPER_CLEARANCE), Footprint(coaster_xy, GRIPPER_CLEARANCE)]

    def coaster_top(self, data: mujoco.MjData) -> np.ndarray:
        """World position of the centre of the coaster's top face."""
        return data.xpos[self.coaster] + [0, 0, COASTER_THICKNESS]

    def is_success(self, model, data) -> bool:
        cup, top = data.xpos[self.cup], self.coaster_top(data)
        centred = np.linalg.norm(cup[:2] - top[:2]) <= COASTER_RADIUS - CENTRE_MARGIN
        resting = abs(cup[2] - CUP_HALF_HEIGHT - top[2]) <= REST_TOLERANCE
        still = np.linalg.norm(data.qvel[self.cup_dof : self.cup_dof + 3]) <= REST_SPEED
        fingers = self.arms["left"].finger_geoms | self.arms["right"].finger_geoms
        released = not contacts.touches_any(model, data, self.cup, fingers)
        return bool(
            centred and resting and still and tilt(model, data, self.cup) < MAX_TILT and released
        )

    def progress(self, model, data) -> float:
        cup, top = data.xpos[self.cup], self.coaster_top(data)
        grasp = cup + [0, 0, GRASP_ABOVE_CENTRE]
        reach = max(self.reach(data, side, grasp) for side in robot.SIDES)
        lift = carry = lower = 0.0
        if self.off_table(model, data, self.cup):
            bottom = cup[2] - CUP_HALF_HEIGHT
            lift = fraction(bottom - self.table_z(model), LIFT)
            gap, centred = np.linalg.norm(cup[:2] - top[:2]), COASTER_RADIUS - CENTRE_MARGIN
            carry = closeness(gap, CUP_RADIUS + COASTER_RADIUS + MIN_GAP, centred)
            if gap <= centred:
                lower = closeness(bottom - top[2], LIFT, REST_TOLERANCE)
        stages = [(0.2, reach), (0.2, lift), (0.3, carry), (0.2, lower)]
        return staged_progress(self.is_success(model, data), stages)

    def expert_phases(self, model, data) -> Iterator[Phase]:
        pose = free_body_pose(model, data, self.cup).copy()
        side = "right" if pose[0] > 0 else "left"
        cup_yaw = 2.0 * np.arctan2(pose[6], pose[3])
        grasp = pose[:3] + [0, 0, GRASP_ABOVE_CENTRE]

        def arm(target: ArmTarget) -> dict[str, ArmTarget]:
            return {side: target}

        yield Phase(
            1.2, **arm(ArmTarget(grasp + [0, 0, APPROACH_HEIGHT], cup_yaw + np.pi / 2, 1.0))
        )
        yield Phase(0.2)
        yield Phase(0.8, **arm(ArmTarget(grasp)))
        yield Phase(0.2)
        yield Phase(0.5, **arm(ArmTarget(gripper=0.0)))
        yield Phase(0.3)
        lifted = grasp + [0, 0, LIFT]
        yield Phase(1.0, **arm(ArmTarget(lifted)))
        top = self.coaster_top(data)
        carried = np.array([*top[:2], lifted[2]])
        yield Phase(
            max(1.0, np.linalg.norm(carried - lifted) / CARRY_SPEED), **arm(ArmTarget(carried))
        )
        yield Phase(0.3)
        # Correct for where the cup really hangs below the commanded tool centre.
        cup_offset = data.xpos[self.cup] - carried
        release = top + [0, 0, CUP_HALF_HEIGHT + RELEASE_GAP] - cup_offset
        yield Phase(0.8, **arm(ArmTarget(release)))
        yield Phase(0.3)
        yield Phase(0.5, **arm(ArmTarget(gripper=1.0)))
        yield Phase(0.3)
        yield Phase(0.8, **arm(ArmTarget(release + [0, 0, LIFT])))
