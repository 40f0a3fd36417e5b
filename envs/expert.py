"""Scripted experts: end-effector waypoint phases followed with inverse kinematics.

A task's expert is a generator of :class:`Phase` objects; it is resumed at the start of each
phase, so it can read where objects really are after the previous phase. The executor
interpolates each arm's tool-centre target with a smoothstep profile and converts it to
joint-position targets with warm-started IK, one solve per 50 Hz control step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from envs import robot
from envs.ik import ArmIK, top_down_rotation


@dataclass(frozen=True)
class ArmTarget:
    """Where one arm's tool centre should be at the end of a phase; None keeps the last value."""

    pos: np.ndarray | None = None  # (3,) world position of the tool centre point
    yaw: float | None = None  # top-down gripper yaw: fingers close along (cos, sin, 0)
    gripper: float | None = None  # 0 closed .. 1 open


@dataclass(frozen=True)
class Phase:
    duration: float  # seconds
    left: ArmTarget | None = None
    right: ArmTarget | None = None


@dataclass
class _ArmState:
    pos: np.ndarray
    yaw: float
    gripper: float
    q: np.ndarray


def _smoothstep(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def _nearest_equivalent_yaw(yaw: float, current: float) -> float:
    """Parallel grippers are symmetric under a half turn: pick the yaw closest to ``current``."""
    return current + (yaw - current + np.pi / 2) % np.pi - np.pi / 2


class ScriptedExpert:
    """Acts in a :class:`envs.env.TabletopEnv` by running its task's phase generator."""

    def __init__(self, env) -> None:
        self.env = env.unwrapped
        model = self.env.model
        self.ids = {side: robot.arm_ids(model, side) for side in robot.SIDES}
        self.ik = {side: ArmIK(model, self.ids[side]) for side in robot.SIDES}
        self.control_dt = self.env.control_dt
        self.max_ik_residual = 0.0

    def reset(self) -> None:
        """Start the plan for the episode the env has just reset to."""
        data = self.env.data
        self.arms: dict[str, _ArmState] = {}
        for side in robot.SIDES:
            q = data.qpos[self.ids[side].qpos].copy()
            pos, rot = self.ik[side].tcp_pose(q)
            yaw = float(np.arctan2(rot[1, 1], rot[0, 1]))
            gripper = float(data.qpos[self.ids[side].finger_qpos].mean() / robot.FINGER_TRAVEL)
            self.arms[side] = _ArmState(pos, yaw, gripper, q)
        self.plan: Iterator[Phase] = self.env.task.expert_phases(self.env.model, self.env.data)
        self.phase: Phase | None = None
        self.step_in_phase = 0
        self.phase_steps = 0
        self.max_ik_residual = 0.0
        self._start: dict[str, _ArmState] = {}

    @property
    def finished(self) -> bool:
        return self.plan is None

    def act(self) -> np.ndarray:
        """The next 14-dim joint-target action: [left 6, left gripper, right 6, right gripper]."""
        if self.plan is not None and (self.phase is None or self.step_in_phase >= self.phase_steps):
            self._start_next_phase()
        if self.phase is not None:
            self.step_in_phase += 1
            blend = _smoothstep(min(1.0, self.step_in_phase / self.phase_steps))
            for side in robot.SIDES:
                self._interpolate(side, getattr(self.phase, side), blend)
        action = []
        for side in robot.SIDES:
            arm = self.arms[side]
            arm.q, residual = self.ik[side].solve(
                arm.pos, top_down_rotation(arm.yaw), arm.q, iterations=3
            )
            self.max_ik_residual = max(self.max_ik_residual, residual)
            action.extend([*arm.q, np.clip(arm.gripper, 0.0, 1.0)])
        return np.asarray(action, dtype=np.float32)

    def _start_next_phase(self) -> None:
        try:
            self.phase = next(self.plan)
        except StopIteration:
            self.plan, self.phase = None, None
            return
        self.step_in_phase = 0
        self.phase_steps = max(1, round(self.phase.duration / self.control_dt))
        self._start = {
            side: _ArmState(a.pos.copy(), a.yaw, a.gripper, a.q) for side, a in self.arms.items()
        }

    def _interpolate(self, side: str, target: ArmTarget | None, blend: float) -> None:
        if target is None:
            return
        start, arm = self._start[side], self.arms[side]
        if target.pos is not None:
            arm.pos = start.pos + blend * (np.asarray(target.pos) - start.pos)
        if target.yaw is not None:
            goal = _nearest_equivalent_yaw(target.yaw, start.yaw)
            arm.yaw = start.yaw + blend * (goal - start.yaw)
        if target.gripper is not None:
            arm.gripper = start.gripper + blend * (target.gripper - start.gripper)
