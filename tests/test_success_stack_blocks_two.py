"""stack_blocks_two success predicate on hand-built simulator states."""

import mujoco
import numpy as np
import pytest

from envs import contacts, robot
from envs.env import TabletopEnv
from envs.ik import ArmIK, top_down_rotation
from envs.tasks.base import free_body_pose, set_free_body
from envs.tasks.stack_blocks_two import HALF

BASE_XY = np.array([0.22, 0.03])  # on the right arm's side
BASE_YAW = 0.3
AXIS = np.array([np.cos(BASE_YAW), np.sin(BASE_YAW), 0.0])  # the fingers close along this


@pytest.fixture(scope="module")
def env():
    env = TabletopEnv("stack_blocks_two", cameras=())
    yield env
    env.close()


def _build(
    env,
    top_offset=(0.0, 0.0, 0.0),
    top_yaw: float = BASE_YAW,
    top_roll: float = 0.0,
    reach=None,
    openings=(1.0, 1.0),
) -> bool:
    """Reset, put the base block at BASE_XY and the top block on it shifted by ``top_offset``
    (m), turned to ``top_yaw`` and rolled by ``top_roll`` (rad). ``reach`` = (side, point,
    shift along the closing axis) moves that arm's tool centre there with fingers closing along
    the base block's yaw; ``openings`` sets the (left, right) finger slides as fractions of
    their travel. Returns the success predicate's verdict."""
    env.reset(seed=0)
    model, data, task = env.model, env.data, env.unwrapped.task
    table_z = task.table_z(model)
    base = np.array([*BASE_XY, table_z + HALF])
    top = base + [0, 0, 2 * HALF] + top_offset
    set_free_body(model, data, task.base, base, yaw=BASE_YAW)
    set_free_body(model, data, task.top, top, yaw=top_yaw)
    if top_roll:
        free_body_pose(model, data, task.top)[3:] = [
            np.cos(top_roll / 2),
            np.sin(top_roll / 2),
            0,
            0,
        ]
    for side, opening in zip(robot.SIDES, openings, strict=True):
        data.qpos[task.arms[side].finger_qpos] = opening * robot.FINGER_TRAVEL
    if reach is not None:
        side, point, shift = reach
        arm = task.arms[side]
        q, residual = ArmIK(model, arm).solve(
            point + shift * AXIS, top_down_rotation(BASE_YAW), robot.HOME, iterations=100
        )
        assert residual < 1e-3
        data.qpos[arm.qpos] = q
    mujoco.mj_forward(model, data)
    return task.is_success(model, data)


def _fingers_touch(env, body: int) -> bool:
    task = env.unwrapped.task
    fingers = task.arms["left"].finger_geoms | task.arms["right"].finger_geoms
    return contacts.touches_any(env.model, env.data, body, fingers)


def _top_centre(env) -> np.ndarray:
    return env.data.xpos[env.unwrapped.task.top].copy()


@pytest.mark.parametrize("setting", ["clean", "randomized"])
def test_fresh_reset_is_not_success(setting):
    env = TabletopEnv("stack_blocks_two", setting=setting, cameras=())
    for seed in range(5):
        env.reset(seed=seed)
        assert not env.unwrapped.task.is_success(env.model, env.data)
    env.close()


def test_released_stack_is_success(env):
    assert _build(env)
    assert _build(env, top_offset=(0.01, -0.008, 0.0), top_yaw=BASE_YAW + 0.5)


def test_still_gripped_is_not_success(env):
    _build(env)
    grip = (HALF - 0.001) / robot.FINGER_TRAVEL  # pads pressed 1 mm into the block
    assert not _build(env, reach=("right", _top_centre(env), 0.0), openings=(1.0, grip))
    assert contacts.touches_both(
        env.model, env.data, env.unwrapped.task.top, env.unwrapped.task.arms["right"].finger_geoms
    )


def test_open_finger_touching_a_block_is_not_success(env):
    """Fully open gripper, shifted sideways so one pad rests 1 mm inside a block's face (the top
    block, or the base block's face that the top block, shifted the other way, leaves free)."""
    task = env.unwrapped.task
    shift = robot.FINGER_TRAVEL - HALF + 0.001
    _build(env)
    assert not _build(env, reach=("right", _top_centre(env), -shift))
    assert _fingers_touch(env, task.top)
    top_offset = 0.012 * AXIS
    assert _build(env, top_offset=top_offset)
    base = _top_centre(env) - top_offset - [0, 0, 2 * HALF]
    assert not _build(env, top_offset=top_offset, reach=("right", base, shift))
    assert _fingers_touch(env, task.base) and not _fingers_touch(env, task.top)


@pytest.mark.parametrize("openings", [(1.0, 0.0), (0.0, 1.0), (1.0, 0.45)])
def test_closed_gripper_away_from_stack_is_not_success(env, openings):
    assert not _build(env, openings=openings)
    assert not _fingers_touch(env, env.unwrapped.task.top)


def test_side_by_side_is_not_success(env):
    assert not _build(env, top_offset=(0.0, 0.05, -2 * HALF))


def test_hanging_half_off_is_not_success(env):
    assert not _build(env, top_offset=(HALF, 0.0, 0.0))


def test_floating_or_tilted_is_not_success(env):
    assert not _build(env, top_offset=(0.0, 0.0, 0.01))
    assert not _build(env, top_roll=0.3)
