"""The gymnasium environment shared by every task: two arms, cameras, 50 Hz joint control."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs import robot, scene
from envs.rendering import make_renderer
from envs.state import SceneState
from envs.tasks import make_task

CONTROL_HZ = 50
PHYSICS_DT = 0.002
SETTLE_SECONDS = 0.4
SETTLE_SPEED = 0.02  # m/s or rad/s: objects count as settled below this
ACTION_DIM = 14  # per arm: 6 joint targets (rad) + gripper opening in [0, 1]; left arm first
GRIPPER_ACTION_DIMS = (6, 13)  # the gripper openings among the ACTION_DIM targets


def _joint_bounds() -> tuple[np.ndarray, np.ndarray]:
    low = [robot.JOINT_RANGES[j][0] for j in robot.ARM_JOINTS] + [0.0]
    high = [robot.JOINT_RANGES[j][1] for j in robot.ARM_JOINTS] + [1.0]
    return np.array(low * 2, dtype=np.float32), np.array(high * 2, dtype=np.float32)


class TabletopEnv(gym.Env):
    """A RoboTwin-like dual-arm task; ``reset(seed=...)`` fully determines the episode."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(
        self,
        task: str,
        setting: str = "clean",
        cameras: tuple[str, ...] = ("head",),
        image_size: tuple[int, int] = (64, 64),
        render_mode: str | None = None,
        max_steps: int | None = None,
    ) -> None:
        if setting not in scene.SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; valid: {', '.join(scene.SETTINGS)}")
        unknown = [c for c in cameras if c not in scene.CAMERA_ALIASES]
        if unknown:
            raise ValueError(
                f"unknown camera(s) {unknown}; valid: {', '.join(scene.CAMERA_ALIASES)}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} not supported; use 'rgb_array'")
        self.task = make_task(task)
        self.setting = setting
        self.cameras = tuple(cameras)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.render_mode = render_mode
        self.max_steps = max_steps or self.task.max_steps

        spec = scene.build_scene_spec(self.image_size)
        self.task.add_objects(spec)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.task.bind(self.model)
        self.randomizer = scene.SceneRandomizer(self.model)
        self.arms = {side: robot.arm_ids(self.model, side) for side in robot.SIDES}
        self.scene_state = SceneState(self.task.state_parts, self.arms)
        self.control_hz = float(CONTROL_HZ)  # control steps per second (actions executed)
        self.control_dt = 1.0 / self.control_hz
        self.substeps = round(self.control_dt / self.model.opt.timestep)
        robot_dofs = np.concatenate([np.r_[a.dof, a.finger_dof] for a in self.arms.values()])
        self.object_dofs = np.setdiff1d(np.arange(self.model.nv), robot_dofs)
        self._renderer = None
        self._view_renderers: dict[tuple[int, int], mujoco.Renderer] = {}  # (H, W) -> renderer
        self._view_data = mujoco.MjData(self.model)  # scratch copy that render_camera poses

        low, high = _joint_bounds()
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)
        observation = {
            "joint_pos": gym.spaces.Box(low, high, dtype=np.float32),
            "joint_vel": gym.spaces.Box(-np.inf, np.inf, shape=(ACTION_DIM,), dtype=np.float32),
            "state": gym.spaces.Box(
                -np.inf, np.inf, shape=(self.scene_state.dim,), dtype=np.float32
            ),
        }
        if self.cameras:
            observation["images"] = gym.spaces.Dict(
                {
                    camera: gym.spaces.Box(0, 255, (*self.image_size, 3), dtype=np.uint8)
                    for camera in self.cameras
                }
            )
        self.observation_space = gym.spaces.Dict(observation)
        self.steps = 0
        self.first_success_step = -1

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        model, data = self.model, self.data
        self.randomizer.apply_table_and_light(model, self.setting, rng)
        table_z = self.randomizer.table_top_z(model)
        for _ in range(20):  # resample (deterministically) until the objects come to rest
            mujoco.mj_resetData(model, data)
            self._hold_home()
            footprints = self.task.place_objects(model, data, rng, table_z)
            self.randomizer.place_distractors(model, data, self.setting, rng, footprints)
            mujoco.mj_forward(model, data)
            mujoco.mj_step(model, data, nstep=round(SETTLE_SECONDS / model.opt.timestep))
            if np.abs(data.qvel[self.object_dofs]).max(initial=0.0) < SETTLE_SPEED:
                break
        else:
            raise RuntimeError(f"{self.task.name}: objects did not settle for seed {seed}")
        data.time = 0.0
        self.steps = 0
        self.first_success_step = -1
        return self._observation(), self._info(False)

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {action.shape}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        for index, side in enumerate(robot.SIDES):
            arm = self.arms[side]
            self.data.ctrl[arm.actuators] = action[7 * index : 7 * index + 6]
            self.data.ctrl[arm.finger_actuators] = action[7 * index + 6]
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self.steps += 1
        success_now = self.task.is_success(self.model, self.data)
        if success_now and self.first_success_step < 0:
            self.first_success_step = self.steps
        succeeded = self.first_success_step >= 0
        truncated = self.steps >= self.max_steps and not succeeded
        return (
            self._observation(),
            float(success_now),
            succeeded,
            truncated,
            self._info(success_now),
        )

    def render(self) -> np.ndarray | None:
        """All configured cameras side by side (head camera alone if none is configured)."""
        if self.render_mode != "rgb_array":
            return None
        cameras = self.cameras or ("head",)
        return np.concatenate([self._render_camera(c) for c in cameras], axis=1)

    def render_camera(
        self,
        camera: str = "view",
        size: tuple[int, int] = scene.VIEW_SIZE,
        state: np.ndarray | None = None,
    ) -> np.ndarray:
        """(H, W, 3) uint8 of ``camera`` at ``size`` (H, W) showing the scene state ``state``
        (S,) (None: the env's current one, as its observation has it), with a renderer of its
        own; the simulation and the observations are untouched.

        The state is written (``SceneState.write``) over a scratch copy of the current physics
        (what a state leaves out: light, table, distractors), so the env that produced a state
        and a twin reset to the same seed render it exactly alike (the imagined states of the
        state track); the rounding to float32 and the grippers' mean opening are invisible."""
        if camera not in scene.CAMERA_ALIASES:
            raise ValueError(f"unknown camera {camera!r}; valid: {', '.join(scene.CAMERA_ALIASES)}")
        size = (int(size[0]), int(size[1]))
        most = (self.model.vis.global_.offheight, self.model.vis.global_.offwidth)
        if not 0 < size[0] <= most[0] or not 0 < size[1] <= most[1]:
            raise ValueError(
                f"render size {list(size)} is not valid; the scene's offscreen buffer holds at "
                f"most {list(most)} (envs/scene.py build_scene_spec)"
            )
        if state is None:
            state = self._observation_state()
        if size not in self._view_renderers:
            self._view_renderers[size] = make_renderer(self.model, *size)
        pose = self._view_data
        pose.qpos[:], pose.mocap_pos[:], pose.mocap_quat[:] = (
            self.data.qpos,
            self.data.mocap_pos,
            self.data.mocap_quat,
        )
        placed = self.model.body_pos.copy()  # SceneState.write moves placed bodies in the model
        try:
            self.scene_state.write(self.model, pose, state)
            renderer = self._view_renderers[size]
            renderer.update_scene(pose, camera=scene.CAMERA_ALIASES[camera])
        finally:
            self.model.body_pos[:] = placed
        return renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        for renderer in self._view_renderers.values():
            renderer.close()
        self._view_renderers.clear()

    # ------------------------------------------------------------------ helpers
    def _hold_home(self) -> None:
        for arm in self.arms.values():
            self.data.qpos[arm.qpos] = robot.HOME
            self.data.ctrl[arm.actuators] = robot.HOME
            self.data.qpos[arm.finger_qpos] = robot.FINGER_TRAVEL
            self.data.ctrl[arm.finger_actuators] = 1.0

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Robot joint positions and velocities, 14 each (gripper opening normalised to [0, 1])."""
        pos, vel = [], []
        for side in robot.SIDES:
            arm = self.arms[side]
            pos.extend(
                [
                    *self.data.qpos[arm.qpos],
                    self.data.qpos[arm.finger_qpos].mean() / robot.FINGER_TRAVEL,
                ]
            )
            vel.extend(
                [
                    *self.data.qvel[arm.dof],
                    self.data.qvel[arm.finger_dof].mean() / robot.FINGER_TRAVEL,
                ]
            )
        return np.asarray(pos, dtype=np.float32), np.asarray(vel, dtype=np.float32)

    def _render_camera(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            self._renderer = make_renderer(self.model, *self.image_size)
        self._renderer.update_scene(self.data, camera=scene.CAMERA_ALIASES[camera])
        return self._renderer.render()

    def _clipped_joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (clipped to the observation's bounds) and velocities."""
        joint_pos, joint_vel = self.joint_state()
        space = self.observation_space["joint_pos"]
        return np.clip(joint_pos, space.low, space.high), joint_vel

    def _observation_state(self) -> np.ndarray:
        """(S,) the scene state as the observation has it."""
        return self.scene_state.read(self.model, self.data, self._clipped_joint_state()[0])

    def _observation(self) -> dict[str, Any]:
        joint_pos, joint_vel = self._clipped_joint_state()
        observation: dict[str, Any] = {
            "joint_pos": joint_pos,
            "joint_vel": joint_vel,
            "state": self.scene_state.read(self.model, self.data, joint_pos),
        }
        if self.cameras:
            observation["images"] = {c: self._render_camera(c) for c in self.cameras}
        return observation

    def _info(self, success_now: bool) -> dict[str, Any]:
        """``progress``: the task's dense progress in [0, 1] in the current state."""
        return {
            "is_success": success_now,
            "success": self.first_success_step >= 0,
            "first_success_step": self.first_success_step,
            "progress": self.task.progress(self.model, self.data),
        }
