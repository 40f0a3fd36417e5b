"""The main job until training lands: watch every task, then collect and inspect a dataset.

``python -m experiments.preview`` writes ``outputs/preview/<task>.mp4`` (expert episode, clean
setting on top, randomized below, one column per camera) and collects ``data/<task>_clean.h5``
with its contact sheet and video.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from envs.scene import CAMERA_ALIASES, SETTINGS
from experiments.cli import exit_on_user_error, to_config
from experiments.collect import job_from_config
from experiments.config.collect import PreviewConfig
from experiments.config.registry import register_configs
from experiments.inspect import previews, summary
from worldmodel.data.collection import run_collection
from worldmodel.data.episodes import EpisodeFile
from worldmodel.media import tile_cameras, write_video

register_configs()


def expert_frames(task: str, setting: str, seed: int, size: tuple[int, int]) -> list[np.ndarray]:
    """One expert episode, every camera tiled per step, held for 1 s after it ends."""
    env = TabletopEnv(task, setting, cameras=tuple(CAMERA_ALIASES), image_size=size)
    expert = ScriptedExpert(env)
    observation, _ = env.reset(seed=seed)
    expert.reset()
    frames = [tile_cameras(observation["images"])]
    done = False
    while not done:
        observation, _, terminated, truncated, _ = env.step(expert.act())
        frames.append(tile_cameras(observation["images"]))
        done = terminated or truncated
    env.close()
    return frames + [frames[-1]] * 50


def task_video(task: str, seed: int, size: tuple[int, int], out_dir: Path) -> Path:
    clean, randomized = (expert_frames(task, s, seed, size) for s in SETTINGS)
    length = max(len(clean), len(randomized))
    pad = lambda frames: frames + [frames[-1]] * (length - len(frames))  # noqa: E731
    stacked = (
        np.concatenate(pair, axis=0) for pair in zip(pad(clean), pad(randomized), strict=True)
    )
    return write_video(out_dir / f"{task}.mp4", stacked, fps=50)


@exit_on_user_error
def preview(cfg: DictConfig) -> None:
    config = to_config(cfg, PreviewConfig)
    out_dir = Path(config.out_dir)
    for task in tqdm(config.tasks, desc="expert videos", unit="task"):
        path = out_dir / f"{task}.mp4"
        if not path.exists():
            task_video(task, config.seed, tuple(config.image_size), out_dir)
    result = run_collection(job_from_config(config.dataset, OmegaConf.to_yaml(cfg.dataset)))
    with EpisodeFile(result.out_path) as dataset:
        print(summary(dataset))
        sheet, movie = previews(dataset, out_dir, episodes=4)
    print(f"expert videos  {out_dir}/<task>.mp4 for {', '.join(config.tasks)}")
    print(f"dataset        {result.out_path}\ncontact sheet  {sheet}\nvideo          {movie}")


@hydra.main(config_path="../conf/apps", config_name="preview", version_base="1.3")
def main(cfg: DictConfig) -> None:
    preview(cfg)


if __name__ == "__main__":
    main()
