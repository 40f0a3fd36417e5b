"""The arm on the button's side presses a spring-loaded button down with its closed fingertips."""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np

from envs import contacts, robot
from envs.expert import ArmTarget, Phase
from envs.scene import Footprint, side_region
from envs.state import PlacedBody, SlideJoint
from envs.tasks.base import OBJECT_CONTACT, Task
from envs.tasks.progress import fraction, staged_progress

HOUSING_HALF = np.array([0.025, 0.025, 0.015])  # m, box base standing on the table
CAP_RADIUS, CAP_HALF_HEIGHT = 0.016, 0.0075  # at rest the cap stands 15 mm above the housing
CAP_TRAVEL = 0.015  # m, the slide joint's range is [-CAP_TRAVEL, 0]
# Spring: its rest length lies above the upper limit, so the cap rests preloaded against the
# limit (stiffness * preload = 3 N, 15x the cap's weight) and nothing light can push it down.
SPRING_STIFFNESS, SPRING_PRELOAD, SPRING_DAMPING = 300.0, 0.01, 5.0
PRESS_DEPTH = 0.008  # m below the rest position: the press counts from here
PRESS_TARGET = 0.013  # m: how far below the cap's rest top the expert drives the fingertips
HOUSING_RGBA, CAP_RGBA = (0.22, 0.22, 0.25, 1.0), (0.85, 0.1, 0.1, 1.0)
X_RANGE, Y_RANGE = (0.12, 0.30), (-0.15, 0.15)  # |x| and y of the housing centre
FOOTPRINT_RADIUS = float(np.hypot(*HOUSING_HALF[:2])) + 0.05  # housing plus the gripper's path


class PressButton(Task):
    """Progress: reach 0.3 (the nearer arm's tool centre from home to where closed fingertips
    touch the cap's top), press 0.6 (press depth over ``PRESS_DEPTH``), success 0.1."""

    name = "press_button"
    state_parts = (PlacedBody("button_housing"), SlideJoint("button_press"))
    max_steps = 250

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        housing = spec.worldbody.add_body(name="button_housing", pos=[X_RANGE[1], 0, 0])
        housing.add_geom(
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=HOUSING_HALF,
            pos=[0, 0, HOUSING_HALF[2]],
            rgba=HOUSING_RGBA,
            mass=0.3,
            **OBJECT_CONTACT,
        )
        cap = housing.add_body(name="button_cap", pos=[0, 0, 2 * HOUSING_HALF[2] + CAP_HALF_HEIGHT])
        cap.add_joint(
            name="button_press",
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=[0, 0, 1],
            range=[-CAP_TRAVEL, 0.0],
            limited=mujoco.mjtLimited.mjLIMITED_TRUE,
            stiffness=[SPRING_STIFFNESS, 0, 0],
            springref=SPRING_PRELOAD,
            damping=SPRING_DAMPING,
            armature=0.01,
            solref_limit=[0.004, 1.0],
        )
        cap.add_geom(
            type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[CAP_RADIUS, CAP_HALF_HEIGHT, 0],
            rgba=CAP_RGBA,
            mass=0.02,
            **OBJECT_CONTACT,
        )
        # The housing is welded to the world, so the parent-child filter does not apply.
        spec.add_exclude(bodyname1="button_housing", bodyname2="button_cap")

    def bind(self, model: mujoco.MjModel) -> None:
        self.bind_arms(model)
        self.housing = model.body("button_housing").id
        self.cap = model.body("button_cap").id
        self.press_qpos = model.jnt_qposadr[model.joint("button_press").id]
        self.tip_below_tcp = _pad_tip_below_tcp(model, self.arms["right"])

    def place_objects(self, model, data, rng, table_z) -> list[Footprint]:
        sign = rng.choice([-1.0, 1.0])
        xy = rng.uniform(*side_region(sign, X_RANGE, Y_RANGE))
        model.body_pos[self.housing] = [*xy, table_z]
        return [Footprint(xy, FOOTPRINT_RADIUS)]

    def press_depth(self, data: mujoco.MjData) -> float:
        """How far (m) the cap is pushed below its rest position."""
        return float(-data.qpos[self.press_qpos])

    def cap_side(self, model: mujoco.MjModel) -> str:
        """The arm on the button's side of the table presses it."""
        return "right" if model.body_pos[self.housing][0] > 0 else "left"

    def is_success(self, model, data) -> bool:
        fingers = self.arms["left"].finger_geoms | self.arms["right"].finger_geoms
        return self.press_depth(data) >= PRESS_DEPTH and contacts.touches_any(
            model, data, self.cap, fingers
        )

    def progress(self, model, data) -> float:
        touch = data.xpos[self.cap] + [0, 0, CAP_HALF_HEIGHT + self.tip_below_tcp]
        reach = max(self.reach(data, side, touch) for side in robot.SIDES)
        press = fraction(self.press_depth(data), PRESS_DEPTH)
        return staged_progress(self.is_success(model, data), [(0.3, reach), (0.6, press)])

    def expert_phases(self, model, data) -> Iterator[Phase]:
        cap_top = data.xpos[self.cap] + [0, 0, CAP_HALF_HEIGHT + self.press_depth(data)]
        tcp_at = lambda tip_height: cap_top + [0, 0, self.tip_below_tcp + tip_height]  # noqa: E731
        side = self.cap_side(model)

        def arm(target: ArmTarget) -> dict[str, ArmTarget]:
            return {side: target}

        yield Phase(1.0, **arm(ArmTarget(tcp_at(0.09), np.pi / 2, 0.0)))
        yield Phase(0.3)
        yield Phase(0.8, **arm(ArmTarget(tcp_at(0.01))))
        yield Phase(0.2)
        yield Phase(0.6, **arm(ArmTarget(tcp_at(-PRESS_TARGET))))
        yield Phase(0.4)
        yield Phase(0.8, **arm(ArmTarget(tcp_at(0.09))))


def _pad_tip_below_tcp(model: mujoco.MjModel, arm: robot.ArmIds) -> float:
    """Distance along the approach axis from the tool centre to the finger pads' tips."""
    pad = min(arm.finger_geoms)
    finger = model.geom_bodyid[pad]
    tip = model.body_pos[finger][0] + model.geom_pos[pad][0] + model.geom_size[pad][0]
    return float(tip - model.site_pos[arm.tcp_site][0])
