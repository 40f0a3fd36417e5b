"""Success predicate of lift_tray_dual on hand-built simulator states."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from envs import robot
from envs.env import TabletopEnv
from envs.ik import ArmIK, top_down_rotation
from envs.tasks.base import free_body_pose
from envs.tasks.lift_tray_dual import BAR_HALF, PLATE_HALF

SQUEEZE = 0.0005  # m the closed pads press into the bar, so the contacts exist


@pytest.fixture(scope="module")
def env():
    env = TabletopEnv("lift_tray_dual", cameras=())
    env.reset(seed=0)
    return env.unwrapped


def build_state(env, lift: float, roll: float = 0.0, holders=robot.SIDES) -> bool:
    """Tray ``lift`` m above its rest, rolled about x; each arm in ``holders`` grips its handle."""
    model, data, task = env.model, env.data, env.task
    rest = np.array([0.0, 0.0, task.table_z(model) + PLATE_HALF[2]])
    free_body_pose(model, data, task.tray)[:] = [
        *(rest + [0, 0, lift]),
        np.cos(roll / 2),
        np.sin(roll / 2),
        0.0,
        0.0,
    ]
    for side in robot.SIDES:
        arm = task.arms[side]
        data.qpos[arm.qpos] = robot.HOME
        data.qpos[arm.finger_qpos] = robot.FINGER_TRAVEL
    mujoco.mj_forward(model, data)
    for side in holders:
        arm = task.arms[side]
        q, residual = ArmIK(model, arm).solve(
            data.xpos[task.handles[side]], top_down_rotation(0.0), robot.HOME, iterations=100
        )
        assert residual < 1e-4
        data.qpos[arm.qpos] = q
        data.qpos[arm.finger_qpos] = BAR_HALF[0] - SQUEEZE
    mujoco.mj_forward(model, data)
    return task.is_success(model, data)


def test_lifted_level_and_held_by_both_arms_succeeds(env):
    assert build_state(env, lift=0.12)


def test_tilted_tray_fails(env):
    assert not build_state(env, lift=0.12, roll=0.3)


def test_lifted_by_one_arm_only_fails(env):
    assert not build_state(env, lift=0.12, holders=("left",))
    assert not build_state(env, lift=0.12, holders=("right",))


def test_level_but_not_high_enough_fails(env):
    assert not build_state(env, lift=0.05)


def test_resting_on_the_table_fails(env):
    assert not build_state(env, lift=0.0)
