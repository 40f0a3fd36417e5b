"""Collection throughput: control steps per second of the collect harness (expert, rendering,
HDF5 writing) with 1 and 2 workers, against a bare loop of ``mj_step`` plus
``Renderer.render`` on the same scene, cameras and controls; and the cost of the files'
fletcher32 checksums (1 worker with and without, interleaved, best of two each)."""

from __future__ import annotations

import platform
import subprocess
import tempfile
import time
from pathlib import Path

import mujoco

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from envs.rendering import make_renderer
from envs.scene import CAMERA_ALIASES
from worldmodel.data.collection import CollectionJob, run_collection
from worldmodel.data.episodes import EpisodeFile


def bare_loop_steps_per_second(
    task: str, setting: str, cameras: tuple[str, ...], size: tuple[int, int], seeds: range
) -> float:
    """mj_step x substeps + one render per camera per control step, replaying expert controls."""
    env = TabletopEnv(task, setting, cameras=())
    expert = ScriptedExpert(env)
    renderer = make_renderer(env.model, *size)
    controls, starts = [], []
    for seed in seeds:  # record the expert's controls once, physics only
        env.reset(seed=seed)
        expert.reset()
        starts.append(mujoco.MjData(env.model))
        mujoco.mj_copyData(starts[-1], env.model, env.data)
        episode = []
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(expert.act())
            episode.append(env.data.ctrl.copy())
            done = terminated or truncated
        controls.append(episode)
    steps, elapsed = 0, 0.0
    for start, episode in zip(starts, controls, strict=True):
        data = start
        begin = time.perf_counter()
        for ctrl in episode:
            data.ctrl[:] = ctrl
            mujoco.mj_step(env.model, data, nstep=env.substeps)
            for camera in cameras:
                renderer.update_scene(data, camera=CAMERA_ALIASES[camera])
                renderer.render()
        elapsed += time.perf_counter() - begin
        steps += len(episode)
    return steps / elapsed


def harness_steps_per_second(
    task: str,
    setting: str,
    cameras: tuple[str, ...],
    size: tuple[int, int],
    episodes: int,
    workers: int,
    checksums: bool = True,
) -> float:
    """Wall-clock control steps per second of a whole collection run (start-up included)."""
    with tempfile.TemporaryDirectory() as data_dir:
        job = CollectionJob(
            task=task,
            setting=setting,
            episodes=episodes,
            cameras=cameras,
            image_size=size,
            data_dir=Path(data_dir),
            eval_episodes=0,
            workers=workers,
            checksums=checksums,
        )
        begin = time.perf_counter()
        result = run_collection(job)
        elapsed = time.perf_counter() - begin
        with EpisodeFile(result.out_path) as dataset:
            steps = int(dataset.lengths.sum())
    return steps / elapsed


def collect_table(
    task: str, setting: str, cameras: tuple[str, ...], size: int, episodes: int
) -> str:
    """The markdown table: the bare loop, the harness with 1 worker and with 2 (``episodes``
    per worker), measured in one run."""
    shape = (size, size)
    bare = bare_loop_steps_per_second(task, setting, cameras, shape, range(episodes))
    one, plain = 0.0, 0.0
    for _ in range(2):  # interleaved, so a load swing on the box hits both alike
        plain = max(
            plain, harness_steps_per_second(task, setting, cameras, shape, episodes, 1, False)
        )
        one = max(one, harness_steps_per_second(task, setting, cameras, shape, episodes, 1))
    two = harness_steps_per_second(task, setting, cameras, shape, 2 * episodes, 2)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return "\n".join(
        [
            f"task {task}/{setting}, cameras {','.join(cameras)} "
            f"at {size}x{size}, "
            f"{episodes} episodes per worker; {platform.processor() or platform.machine()}, "
            f"mujoco {mujoco.__version__}, commit {commit}",
            "",
            "| loop | control steps/s | vs bare loop | vs 1 worker |",
            "|---|---:|---:|---:|",
            f"| bare mj_step + Renderer.render | {bare:.0f} | 1.00 | |",
            f"| harness, 1 worker | {one:.0f} | {one / bare:.2f} | 1.00 |",
            f"| harness, 1 worker, no checksums | {plain:.0f} | {plain / bare:.2f} | "
            f"{plain / one:.2f} |",
            f"| harness, 2 workers | {two:.0f} | {two / bare:.2f} | {two / one:.2f} |",
        ]
    )
