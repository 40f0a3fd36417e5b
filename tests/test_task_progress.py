"""Every task's dense progress: 0 at reset, 1 at the expert's success, hand-made states."""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np
import pytest

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from envs.tasks import (
    TASKS,
    handover_block,
    lift_tray_dual,
    pick_dual_cylinders,
    place_cup_coaster,
    press_button,
    stack_blocks_two,
)
from envs.tasks.base import set_free_body
from envs.tasks.progress import SUCCESS_SHARE, closeness, fraction, staged_progress

ALL_TASKS = sorted(TASKS)


def test_stage_arithmetic():
    assert fraction(0.004, 0.008) == 0.5 and fraction(-1.0, 0.008) == 0.0
    assert fraction(0.02, 0.008) == 1.0
    assert closeness(0.3, start=0.2, done=0.0) == 0.0 and closeness(
        0.05, 0.2, 0.0
    ) == pytest.approx(0.75)
    assert closeness(0.01, start=0.2, done=0.03) == 1.0
    assert staged_progress(True, [(0.3, 0.0), (0.6, 0.0)]) == 1.0
    assert staged_progress(False, [(0.3, 1.0), (0.6, 0.0)]) == pytest.approx(0.3)
    # A later stage's fraction carries the earlier ones: 0.3 * 0.5 + 0.6 * 0.5.
    assert staged_progress(False, [(0.3, 0.0), (0.6, 0.5)]) == pytest.approx(0.45)


@pytest.mark.parametrize("setting", ["clean", "randomized"])
@pytest.mark.parametrize("task", ALL_TASKS)
def test_progress_is_zero_at_reset(task, setting):
    env = TabletopEnv(task, setting, cameras=())
    for seed in range(4):
        _, info = env.reset(seed=seed)
        assert info["progress"] == 0.0, f"{task}/{setting} seed {seed}: {info['progress']}"


@pytest.mark.parametrize("task", ALL_TASKS)
def test_expert_progress_rises_to_one_at_success(task):
    env = TabletopEnv(task, "clean", cameras=())
    expert = ScriptedExpert(env)
    _, info = env.reset(seed=0)
    expert.reset()
    before, done = [info["progress"]], False
    while not done:
        _, _, terminated, truncated, info = env.step(expert.act())
        done = terminated or truncated
        if not done:
            before.append(info["progress"])
    assert info["success"] and info["progress"] == 1.0
    before = np.array(before)
    assert before.min() >= 0.0 and before.max() <= 1.0 - SUCCESS_SHARE + 1e-12
    assert ((before > 0.0) & (before < 1.0)).any()
    assert before.max() > 0.8  # every stage but the success check itself is (nearly) done


def _reset(task: str) -> TabletopEnv:
    env = TabletopEnv(task, "clean", cameras=())
    env.reset(seed=0)
    return env


def _float_above(env: TabletopEnv, body: int, goal_xy, bottom_z: float, half: float) -> None:
    """Put a free body upright, at rest, with its bottom at ``bottom_z`` above ``goal_xy``."""
    set_free_body(env.model, env.data, body, [*goal_xy, bottom_z + half])
    env.data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)


def _press_half_depth() -> tuple[TabletopEnv, float]:
    env = _reset("press_button")
    env.data.qpos[env.task.press_qpos] = -press_button.PRESS_DEPTH / 2
    mujoco.mj_forward(env.model, env.data)
    return env, (0.3 + 0.6) * 0.5  # the press stage half done carries the reach stage


def _tray_half_lifted() -> tuple[TabletopEnv, float]:
    env = _reset("lift_tray_dual")
    task, half = env.task, lift_tray_dual.PLATE_HALF[2]
    xy = env.data.xpos[task.tray][:2].copy()
    _float_above(env, task.tray, xy, task.table_z(env.model) + lift_tray_dual.LIFT_HEIGHT / 2, half)
    return env, (0.3 + 0.6) * 0.5


def _one_cylinder_half_lifted() -> tuple[TabletopEnv, float]:
    env = _reset("pick_dual_cylinders")
    task, body = env.task, env.task.cylinders["left"]
    xy = env.data.xpos[body][:2].copy()
    bottom = task.table_z(env.model) + pick_dual_cylinders.LIFT_HEIGHT / 2
    _float_above(env, body, xy, bottom, pick_dual_cylinders.HALF_HEIGHT)
    return env, (0.3 + 0.6) * 0.25  # lift: mean of 0.5 and 0


def _cup_half_lowered() -> tuple[TabletopEnv, float]:
    env = _reset("place_cup_coaster")
    task, top = env.task, env.task.coaster_top(env.data)
    lift, tolerance = place_cup_coaster.LIFT, place_cup_coaster.REST_TOLERANCE
    _float_above(env, task.cup, top[:2], top[2] + lift / 2, place_cup_coaster.CUP_HALF_HEIGHT)
    lower = (lift / 2 - tolerance) / (lift - tolerance)  # still this much of the way to go
    return env, 0.2 + 0.2 + 0.3 + 0.2 * (1 - lower)


def _block_half_lowered() -> tuple[TabletopEnv, float]:
    env = _reset("stack_blocks_two")
    task, half = env.task, stack_blocks_two.HALF
    base = env.data.xpos[task.base].copy()
    lift, tolerance = stack_blocks_two.LIFT, stack_blocks_two.HEIGHT_TOLERANCE
    _float_above(env, task.top, base[:2], base[2] + half + lift / 2, half)
    return env, 0.2 + 0.2 + 0.3 + 0.2 * (1 - (lift / 2 - tolerance) / (lift - tolerance))


def _bar_half_lowered() -> tuple[TabletopEnv, float]:
    env = _reset("handover_block")
    task, pad_top = env.task, env.task.pad_top(env.model)
    lift, tolerance = handover_block.LIFT, handover_block.HEIGHT_TOLERANCE
    _float_above(env, task.bar, pad_top[:2], pad_top[2] + lift / 2, handover_block.BAR_HALF[2])
    return env, 0.15 * 3 + 0.25 + 0.2 * (1 - (lift / 2 - tolerance) / (lift - tolerance))


HAND_MADE: dict[str, Callable[[], tuple[TabletopEnv, float]]] = {
    "press_button": _press_half_depth,
    "lift_tray_dual": _tray_half_lifted,
    "pick_dual_cylinders": _one_cylinder_half_lifted,
    "place_cup_coaster": _cup_half_lowered,
    "stack_blocks_two": _block_half_lowered,
    "handover_block": _bar_half_lowered,
}


def test_every_task_has_a_hand_made_state():
    assert sorted(HAND_MADE) == ALL_TASKS


@pytest.mark.parametrize("task", ALL_TASKS)
def test_progress_of_a_hand_made_state(task):
    env, expected = HAND_MADE[task]()
    assert not env.task.is_success(env.model, env.data)
    assert env.task.progress(env.model, env.data) == pytest.approx(expected, abs=1e-6)
