"""Damped-least-squares inverse kinematics for one arm's tool centre point."""

from __future__ import annotations

import mujoco
import numpy as np

from envs.robot import ArmIds


def top_down_rotation(yaw: float) -> np.ndarray:
    """Gripper orientation pointing straight down, fingers closing along (cos yaw, sin yaw, 0)."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    # columns: approach (0, 0, -1), closing (cos, sin, 0), approach x closing (sin, -cos, 0)
    return np.array([[0.0, cos, sin], [0.0, sin, -cos], [-1.0, 0.0, 0.0]])


class ArmIK:
    """Solves joint angles on a private kinematics-only copy of the simulation data."""

    def __init__(
        self,
        model: mujoco.MjModel,
        ids: ArmIds,
        damping: float = 1e-3,
        rotation_weight: float = 0.3,
    ) -> None:
        self.model = model
        self.ids = ids
        self.data = mujoco.MjData(model)
        self.damping = damping
        self.rotation_weight = rotation_weight
        self.low = model.jnt_range[[model.dof_jntid[d] for d in ids.dof], 0]
        self.high = model.jnt_range[[model.dof_jntid[d] for d in ids.dof], 1]
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def tcp_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics: TCP position (3,) and rotation matrix (3, 3) for joints ``q``."""
        self.data.qpos[self.ids.qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        site = self.ids.tcp_site
        return self.data.site_xpos[site].copy(), self.data.site_xmat[site].reshape(3, 3).copy()

    def solve(
        self,
        target_pos: np.ndarray,
        target_rot: np.ndarray,
        q_init: np.ndarray,
        iterations: int = 5,
    ) -> tuple[np.ndarray, float]:
        """Joint angles reaching the target pose from ``q_init``, and the position residual (m)."""
        q = q_init.copy()
        target_quat = np.zeros(4)
        mujoco.mju_mat2Quat(target_quat, np.ascontiguousarray(target_rot).reshape(9))
        for _ in range(iterations):
            pos, rot = self.tcp_pose(q)
            error = self._pose_error(pos, rot, target_pos, target_quat)
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.ids.tcp_site)
            jac = np.vstack(
                [self._jacp[:, self.ids.dof], self.rotation_weight * self._jacr[:, self.ids.dof]]
            )  # (6, 6)
            step = jac.T @ np.linalg.solve(jac @ jac.T + self.damping * np.eye(6), error)
            q = np.clip(q + step, self.low, self.high)
        pos, _ = self.tcp_pose(q)
        return q, float(np.linalg.norm(target_pos - pos))

    def _pose_error(
        self, pos: np.ndarray, rot: np.ndarray, target_pos: np.ndarray, target_quat: np.ndarray
    ) -> np.ndarray:
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).reshape(9))
        local = np.zeros(3)
        mujoco.mju_subQuat(local, target_quat, quat)  # rotation from current to target, local
        return np.concatenate([target_pos - pos, self.rotation_weight * (rot @ local)])
