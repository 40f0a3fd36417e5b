"""Success predicate of place_cup_coaster on hand-built simulator states."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from envs import robot
from envs.env import TabletopEnv
from envs.ik import ArmIK, top_down_rotation
from envs.tasks.base import free_body_pose
from envs.tasks.place_cup_coaster import (
    COASTER_RADIUS,
    CUP_HALF_HEIGHT,
    CUP_RADIUS,
    GRASP_ABOVE_CENTRE,
)


@pytest.fixture(scope="module")
def env():
    env = TabletopEnv("place_cup_coaster", cameras=())
    yield env
    env.close()


@pytest.fixture
def state(env):
    """The seed-0 episode start, with the cup's pose and velocity left to each test."""
    env.reset(seed=0)
    return env.model, env.data, env.task


def put_cup(model, data, task, offset, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
    """Cup centre at the coaster top's centre plus ``offset``, at rest, then mj_forward."""
    free_body_pose(model, data, task.cup)[:] = [*(task.coaster_top(data) + offset), *quat]
    data.qvel[task.cup_dof : task.cup_dof + 6] = 0.0
    mujoco.mj_forward(model, data)


STANDING = np.array([0.0, 0.0, CUP_HALF_HEIGHT])


def test_cup_released_upright_on_coaster_succeeds(state):
    model, data, task = state
    put_cup(model, data, task, STANDING + [0.01, -0.01, 0.0])
    assert task.is_success(model, data)


def test_cup_still_held_fails(state):
    model, data, task = state
    put_cup(model, data, task, STANDING)
    side = "right" if data.xpos[task.coaster][0] > 0 else "left"
    ids = robot.arm_ids(model, side)
    grasp = data.xpos[task.cup] + [0, 0, GRASP_ABOVE_CENTRE]
    q, residual = ArmIK(model, ids).solve(
        grasp, top_down_rotation(np.pi / 2), robot.HOME, iterations=100
    )
    assert residual < 1e-3
    data.qpos[ids.qpos] = q
    data.qpos[ids.finger_qpos] = CUP_RADIUS - 0.001  # pads pressing 1 mm into the cup
    mujoco.mj_forward(model, data)
    assert not task.is_success(model, data)
    data.qpos[ids.finger_qpos] = robot.FINGER_TRAVEL  # the same pose, fingers opened
    mujoco.mj_forward(model, data)
    assert task.is_success(model, data)


def test_cup_beside_coaster_fails(state):
    model, data, task = state
    put_cup(model, data, task, STANDING + [0.0, COASTER_RADIUS + CUP_RADIUS + 0.01, 0.0])
    assert not task.is_success(model, data)


def test_cup_off_centre_on_coaster_fails(state):
    model, data, task = state
    put_cup(model, data, task, STANDING + [COASTER_RADIUS - 0.01, 0.0, 0.0])
    assert not task.is_success(model, data)


def test_cup_lying_on_its_side_fails(state):
    model, data, task = state
    half_angle = np.pi / 4  # a quarter turn about x
    put_cup(
        model,
        data,
        task,
        [0.0, 0.0, CUP_RADIUS],
        quat=(np.cos(half_angle), np.sin(half_angle), 0.0, 0.0),
    )
    assert not task.is_success(model, data)


def test_cup_hovering_above_coaster_fails(state):
    model, data, task = state
    put_cup(model, data, task, STANDING + [0.0, 0.0, 0.02])
    assert not task.is_success(model, data)


def test_cup_still_falling_fails(state):
    model, data, task = state
    put_cup(model, data, task, STANDING)
    data.qvel[task.cup_dof + 2] = -0.3
    assert not task.is_success(model, data)
