"""handover_block success predicate on hand-built simulator states."""

import mujoco
import numpy as np
import pytest

from envs import contacts, robot
from envs.env import TabletopEnv
from envs.ik import ArmIK, top_down_rotation
from envs.tasks.base import free_body_pose, set_free_body
from envs.tasks.handover_block import BAR_HALF, GRASP_OFFSET, PAD_X

GRIP = BAR_HALF[1] - 0.001  # finger slide opening that presses the pads 1 mm into the bar
GRASP_SIGN = {"left": -1.0, "right": 1.0}  # which end of the bar each hand holds


@pytest.fixture(scope="module")
def env():
    env = TabletopEnv("handover_block", cameras=())
    yield env
    env.close()


def _build(
    env, bar_offset=(0.0, 0.0, 0.0), held_by=(), pitch: float = 0.0, speed: float = 0.0
) -> bool:
    """Reset, put the pad at the table's inner edge of its range (so both arms reach it), the
    bar on the pad's centre shifted by ``bar_offset`` (m) and pitched by ``pitch`` (rad), moving
    along x at ``speed`` (m/s), held at its ends by the arms in ``held_by`` (the others stay
    home with open fingers). Returns the success predicate's verdict."""
    env.reset(seed=0)
    model, data, task = env.model, env.data, env.unwrapped.task
    model.body_pos[task.pad][:2] = [PAD_X[1], 0.0]
    centre = task.pad_top(model) + [0, 0, BAR_HALF[2]] + bar_offset
    set_free_body(model, data, task.bar, centre)
    free_body_pose(model, data, task.bar)[3:] = [np.cos(pitch / 2), 0, np.sin(pitch / 2), 0]
    data.qvel[model.jnt_dofadr[model.body_jntadr[task.bar]]] = speed
    for side in held_by:
        arm = task.arms[side]
        grasp = centre + [GRASP_SIGN[side] * GRASP_OFFSET, 0, 0]
        q, residual = ArmIK(model, arm).solve(
            grasp, top_down_rotation(np.pi / 2), robot.HOME, iterations=100
        )
        assert residual < 1e-3
        data.qpos[arm.qpos] = q
        data.qpos[arm.finger_qpos] = GRIP
    mujoco.mj_forward(model, data)
    for side in held_by:
        assert contacts.touches_both(model, data, task.bar, task.arms[side].finger_geoms)
    return task.is_success(model, data)


@pytest.mark.parametrize("setting", ["clean", "randomized"])
def test_fresh_reset_is_not_success(setting):
    env = TabletopEnv("handover_block", setting=setting, cameras=())
    for seed in range(5):
        env.reset(seed=seed)
        assert not env.unwrapped.task.is_success(env.model, env.data)


def test_released_on_pad_is_success(env):
    assert _build(env)
    assert _build(env, bar_offset=(0.02, -0.02, 0.0))


@pytest.mark.parametrize("held_by", [("right",), ("left", "right"), ("left",)])
def test_still_held_on_pad_is_not_success(env, held_by):
    assert not _build(env, held_by=held_by)


def test_held_by_left_above_pad_is_not_success(env):
    assert not _build(env, bar_offset=(0.0, 0.0, 0.06), held_by=("left",))


def test_on_table_beside_pad_is_not_success(env):
    pad_height = env.unwrapped.task.pad_top(env.model)[2] - env.unwrapped.task.table_z(env.model)
    assert not _build(env, bar_offset=(0.0, 0.11, -pad_height))


def test_off_centre_tilted_or_moving_is_not_success(env):
    assert not _build(env, bar_offset=(0.04, 0.0, 0.0))
    assert not _build(env, pitch=0.2)
    assert not _build(env, speed=0.2)
