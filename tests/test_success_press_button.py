"""press_button success predicate on hand-built simulator states."""

import mujoco
import numpy as np
import pytest

from envs import robot
from envs.env import TabletopEnv
from envs.ik import ArmIK, top_down_rotation
from envs.tasks.press_button import CAP_HALF_HEIGHT

RIGHT_SEED, LEFT_SEED = 0, 1  # clean setting: the button lands on the right / left half


@pytest.fixture(scope="module")
def env():
    env = TabletopEnv("press_button", cameras=())
    yield env
    env.close()


def _build(env, seed: int, depth: float, fingertip_gap: float | None) -> bool:
    """Reset to ``seed``, push the cap ``depth`` down and put the pressing arm's closed
    fingertips ``fingertip_gap`` above the cap's top (negative: into it; None: arm stays home).
    Returns the success predicate's verdict."""
    env.reset(seed=seed)
    model, data, task = env.model, env.data, env.unwrapped.task
    data.qpos[task.press_qpos] = -depth
    mujoco.mj_forward(model, data)
    if fingertip_gap is not None:
        arm = task.arms[task.cap_side(model)]
        cap_top = data.xpos[task.cap] + [0, 0, CAP_HALF_HEIGHT]
        target = cap_top + [0, 0, task.tip_below_tcp + fingertip_gap]
        q, residual = ArmIK(model, arm).solve(
            target, top_down_rotation(np.pi / 2), robot.HOME, iterations=50
        )
        assert residual < 1e-4
        data.qpos[arm.qpos] = q
        data.qpos[arm.finger_qpos] = 0.0
        mujoco.mj_forward(model, data)
    return env.unwrapped.task.is_success(model, data)


def test_seeds_cover_both_sides(env):
    sides = []
    for seed in (RIGHT_SEED, LEFT_SEED):
        env.reset(seed=seed)
        sides.append(env.unwrapped.task.cap_side(env.model))
    assert sides == ["right", "left"]


@pytest.mark.parametrize("setting", ["clean", "randomized"])
def test_fresh_reset_is_not_pressed(setting):
    env = TabletopEnv("press_button", setting=setting, cameras=())
    for seed in range(10):
        env.reset(seed=seed)
        assert abs(env.unwrapped.task.press_depth(env.data)) < 0.001
        assert not env.unwrapped.task.is_success(env.model, env.data)


@pytest.mark.parametrize("seed", [RIGHT_SEED, LEFT_SEED])
def test_pressed_by_fingertips_is_success(env, seed):
    assert _build(env, seed, depth=0.010, fingertip_gap=-0.001)


@pytest.mark.parametrize("seed", [RIGHT_SEED, LEFT_SEED])
def test_not_pressed_deep_enough(env, seed):
    assert not _build(env, seed, depth=0.005, fingertip_gap=-0.001)


def test_fingertips_resting_on_cap_is_not_success(env):
    assert not _build(env, RIGHT_SEED, depth=0.0, fingertip_gap=-0.001)


def test_cap_down_without_finger_contact_is_not_success(env):
    assert not _build(env, RIGHT_SEED, depth=0.012, fingertip_gap=None)
    assert not _build(env, RIGHT_SEED, depth=0.012, fingertip_gap=0.01)
