"""RoboTwin-like dual-arm MuJoCo tasks with scripted experts, registered with gymnasium."""

from envs.rendering import select_gl_backend

select_gl_backend()  # before anything imports mujoco: MUJOCO_GL is read at import time

import gymnasium  # noqa: E402

from envs.tasks import TASKS, env_id  # noqa: E402

for _name in TASKS:
    if env_id(_name) not in gymnasium.registry:
        gymnasium.register(
            id=env_id(_name), entry_point="envs.env:TabletopEnv", kwargs={"task": _name}
        )
