"""The arm on the blocks' side stacks the red block on the blue one and lets go."""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np

from envs import contacts, robot
from envs.expert import ArmTarget, Phase
from envs.scene import Footprint, sample_pair_on_one_side
from envs.state import FreeBody
from envs.tasks.base import OBJECT_CONTACT, Task, set_free_body, tilt
from envs.tasks.progress import closeness, fraction, staged_progress

HALF = 0.02  # m, half side of both cubes
MASSES = {"top": 0.06, "base": 0.07}
COLORS = {"top": (0.88, 0.2, 0.16, 1.0), "base": (0.15, 0.35, 0.85, 1.0)}
X_RANGE, Y_RANGE = (0.10, 0.30), (-0.15, 0.15)  # |x| and y of the block centres
MIN_DISTANCE = 0.10  # m between the block centres
MAX_YAW = 0.4  # rad
GRIPPER_CLEARANCE = 0.07  # m around a block centre: the open fingers' reach plus a margin
# Success: the top block sits flat on the base block, centred, off the table, released.
MAX_OFFSET = 0.015  # m, horizontal distance between the centres
HEIGHT_TOLERANCE = 0.003  # m around 2 * HALF for the vertical distance between the centres
MAX_TILT = 0.1  # rad
MIN_OPENING = 0.5  # of the finger travel, for both grippers
# Expert.
APPROACH_HEIGHT = 0.09  # m above a grasp or release point
LIFT = 0.10  # m
RELEASE_GAP = 0.004  # m between the top block's bottom and the base block's top at release
CARRY_SPEED = 0.2  # m/s, mean


def _yaw(data: mujoco.MjData, body: int) -> float:
    """Yaw of a body's x axis about world z."""
    rot = data.xmat[body].reshape(3, 3)
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def _quarter_turn_wrap(angle: float) -> float:
    """``angle`` modulo a quarter turn (a cube's symmetry), in [-pi/4, pi/4)."""
    return (angle + np.pi / 4) % (np.pi / 2) - np.pi / 4


class StackBlocksTwo(Task):
    """Progress: reach 0.2 (the nearer arm's tool centre from home to the top block's centre),
    lift 0.2 (the top block's bottom height over ``LIFT``), carry 0.3 (the horizontal distance
    between the centres, from ``MIN_DISTANCE`` down to ``MAX_OFFSET``), lower 0.2 (once
    centred, the top block's height above the stacked pose, from ``LIFT`` down to
    ``HEIGHT_TOLERANCE``), success 0.1; lift, carry and lower count while the top block is off
    the table."""

    name = "stack_blocks_two"
    state_parts = (FreeBody("block_top"), FreeBody("block_base"))
    max_steps = 600

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        for index, role in enumerate(("top", "base")):
            body = spec.worldbody.add_body(name=f"block_{role}", pos=[0.1 * index, 0, 0.5])
            body.add_freejoint()
            body.add_geom(
                name=f"block_{role}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[HALF] * 3,
                rgba=COLORS[role],
                mass=MASSES[role],
                **OBJECT_CONTACT,
            )

    def bind(self, model: mujoco.MjModel) -> None:
        self.bind_arms(model)
        self.top = model.body("block_top").id
        self.base = model.body("block_base").id
        self.base_geom = model.geom("block_base").id

    def place_objects(self, model, data, rng, table_z) -> list[Footprint]:
        top_xy, base_xy = sample_pair_on_one_side(
            rng, X_RANGE, Y_RANGE, MIN_DISTANCE / 2, MIN_DISTANCE / 2, margin=0.0
        )
        for body, xy in ((self.top, top_xy), (self.base, base_xy)):
            set_free_body(
                model, data, body, [*xy, table_z + HALF], yaw=rng.uniform(-MAX_YAW, MAX_YAW)
            )
        return [Footprint(top_xy, GRIPPER_CLEARANCE), Footprint(base_xy, GRIPPER_CLEARANCE)]

    def is_success(self, model, data) -> bool:
        top, base = data.xpos[self.top], data.xpos[self.base]
        centred = np.linalg.norm(top[:2] - base[:2]) <= MAX_OFFSET
        stacked = abs(top[2] - base[2] - 2 * HALF) <= HEIGHT_TOLERANCE
        flat = tilt(model, data, self.top) <= MAX_TILT and tilt(model, data, self.base) <= MAX_TILT
        touching = contacts.touching_geoms(model, data, self.top)
        resting = self.base_geom in touching and self.table_geom not in touching
        fingers = self.arms["left"].finger_geoms | self.arms["right"].finger_geoms
        released = not (
            contacts.touches_any(model, data, self.top, fingers)
            or contacts.touches_any(model, data, self.base, fingers)
        )
        opened = all(
            data.qpos[arm.finger_qpos].mean() / robot.FINGER_TRAVEL > MIN_OPENING
            for arm in self.arms.values()
        )
        return bool(centred and stacked and flat and resting and released and opened)

    def progress(self, model, data) -> float:
        top, base = data.xpos[self.top], data.xpos[self.base]
        reach = max(self.reach(data, side, top) for side in robot.SIDES)
        lift = carry = lower = 0.0
        if self.off_table(model, data, self.top):
            lift = fraction(top[2] - HALF - self.table_z(model), LIFT)
            offset = np.linalg.norm(top[:2] - base[:2])
            carry = closeness(offset, MIN_DISTANCE, MAX_OFFSET)
            if offset <= MAX_OFFSET:
                lower = closeness(top[2] - base[2] - 2 * HALF, LIFT, HEIGHT_TOLERANCE)
        stages = [(0.2, reach), (0.2, lift), (0.3, carry), (0.2, lower)]
        return staged_progress(self.is_success(model, data), stages)

    def expert_phases(self, model, data) -> Iterator[Phase]:
        grasp = data.xpos[self.top].copy()
        side = "right" if grasp[0] > 0 else "left"
        grip_yaw = _yaw(data, self.top) + np.pi / 2  # fingers close across the block's y faces

        def arm(target: ArmTarget) -> dict[str, ArmTarget]:
            return {side: target}

        yield Phase(1.2, **arm(ArmTarget(grasp + [0, 0, APPROACH_HEIGHT], grip_yaw, 1.0)))
        yield Phase(0.2)
        yield Phase(0.8, **arm(ArmTarget(grasp)))
        yield Phase(0.2)
        yield Phase(0.5, **arm(ArmTarget(gripper=0.0)))
        yield Phase(0.3)
        lifted = grasp + [0, 0, LIFT]
        yield Phase(1.0, **arm(ArmTarget(lifted)))
        # Turn the held block to the base block's yaw (modulo a quarter turn) while carrying it.
        base = data.xpos[self.base].copy()
        carry_yaw = grip_yaw + _quarter_turn_wrap(_yaw(data, self.base) - _yaw(data, self.top))
        carried = np.array([*base[:2], lifted[2]])
        yield Phase(
            max(1.0, np.linalg.norm(carried - lifted) / CARRY_SPEED),
            **arm(ArmTarget(carried, carry_yaw)),
        )
        yield Phase(0.3)
        # Correct for where the block really hangs below the commanded tool centre.
        block_offset = data.xpos[self.top] - carried
        release = base + [0, 0, 2 * HALF + RELEASE_GAP] - block_offset
        yield Phase(0.5, **arm(ArmTarget(release + [0, 0, 0.03])))
        yield Phase(0.5, **arm(ArmTarget(release)))
        yield Phase(0.3)
        yield Phase(0.4, **arm(ArmTarget(gripper=1.0)))
        yield Phase(0.3)
        yield Phase(0.8, **arm(ArmTarget(release + [0, 0, APPROACH_HEIGHT])))
