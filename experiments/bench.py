"""Benchmarks: ``python -m experiments.bench collect`` and ``python -m experiments.bench model``.

``collect``: control steps per second of the collect harness (expert, rendering, HDF5 writing)
with 1 and 2 workers, against a bare loop of ``mj_step`` plus ``Renderer.render`` on the same
scene, cameras and controls. Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import mujoco
import torch

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from envs.rendering import make_renderer
from envs.scene import CAMERA_ALIASES
from experiments.bench_model import VARIANTS, BenchShape, markdown_table, run_model_bench
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
        )
        begin = time.perf_counter()
        result = run_collection(job)
        elapsed = time.perf_counter() - begin
        with EpisodeFile(result.out_path) as dataset:
            steps = int(dataset.lengths.sum())
    return steps / elapsed


def bench_collect(args: argparse.Namespace) -> str:
    cameras, size = tuple(args.cameras.split(",")), (args.size, args.size)
    bare = bare_loop_steps_per_second(args.task, args.setting, cameras, size, range(args.episodes))
    one = harness_steps_per_second(args.task, args.setting, cameras, size, args.episodes, 1)
    two = harness_steps_per_second(args.task, args.setting, cameras, size, 2 * args.episodes, 2)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return "\n".join(
        [
            f"task {args.task}/{args.setting}, cameras {','.join(cameras)} "
            f"at {args.size}x{args.size}, "
            f"{args.episodes} episodes per worker; {platform.processor() or platform.machine()}, "
            f"mujoco {mujoco.__version__}, commit {commit}",
            "",
            "| loop | control steps/s | vs bare loop | vs 1 worker |",
            "|---|---:|---:|---:|",
            f"| bare mj_step + Renderer.render | {bare:.0f} | 1.00 | |",
            f"| harness, 1 worker | {one:.0f} | {one / bare:.2f} | 1.00 |",
            f"| harness, 2 workers | {two:.0f} | {two / bare:.2f} | {two / one:.2f} |",
        ]
    )


def bench_model(args: argparse.Namespace) -> str:
    shape = BenchShape(
        size=args.size, batch=args.batch, horizon=args.horizon, denoise_steps=args.denoise_steps
    )
    variants = args.variants.split(",")
    results = run_model_bench(shape, args.device, args.steps, variants, args.threads)
    return markdown_table(results, shape, args.device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    suites = parser.add_subparsers(dest="suite", required=True)
    collect = suites.add_parser("collect", help="collection throughput vs a bare loop")
    collect.add_argument("--task", default="handover_block")
    collect.add_argument("--setting", default="clean")
    collect.add_argument("--cameras", default="head,left_wrist,right_wrist")
    collect.add_argument("--size", type=int, default=64)
    collect.add_argument("--episodes", type=int, default=6, help="episodes per worker")
    collect.set_defaults(run=bench_collect)
    model = suites.add_parser(
        "model",
        help="train-step time/memory per heads variant, "
        "inference chunks/s standard vs mcp_parallel",
    )
    model.add_argument("--size", default="tiny", help="model preset: tiny, small, base")
    model.add_argument("--batch", type=int, default=8)
    model.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    model.add_argument("--horizon", type=int, default=8, help="imagined chunks per rollout")
    model.add_argument("--denoise-steps", type=int, default=10)
    model.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    model.add_argument("--threads", type=int, default=None)
    model.add_argument("--variants", default=",".join(VARIANTS))
    model.set_defaults(run=bench_model)
    args = parser.parse_args(argv)
    print(args.run(args))


if __name__ == "__main__":
    main()
