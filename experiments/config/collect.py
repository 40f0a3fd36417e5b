"""Typed configs of ``python -m experiments.collect`` and ``python -m experiments.preview``."""

from __future__ import annotations

from dataclasses import dataclass, field

from envs.scene import CAMERA_ALIASES, SETTINGS
from envs.tasks import TASKS
from experiments.config.base import ConfigError, check_choice
from worldmodel.data.collection import EVAL_SEED_BASE


@dataclass
class CollectConfig:
    """``python -m experiments.collect``: expert datasets, one HDF5 file per task and setting."""

    task: str = "handover_block"  # one of envs.tasks.TASKS
    setting: str = "clean"  # clean | randomized
    episodes: int = 50  # solved episodes to keep (failed seeds are skipped and recorded)
    workers: int = 1  # worker processes
    cameras: list[str] = field(default_factory=lambda: ["head", "left_wrist", "right_wrist"])
    image_size: list[int] = field(default_factory=lambda: [64, 64])  # [height, width]
    seed_start: int = 0  # training seeds are seed_start, seed_start + 1, ...
    eval_episodes: int = 20  # expert-checked evaluation seeds stored from 100000 upwards
    data_dir: str = "data"

    def __post_init__(self) -> None:
        check_choice("task", self.task, sorted(TASKS))
        check_choice("setting", self.setting, SETTINGS)
        for camera in self.cameras:  # none: no rendering, the state track's datasets
            check_choice("cameras", camera, list(CAMERA_ALIASES))
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ConfigError(
                f"image_size={self.image_size} is not valid; give [height, width], each >= 16"
            )
        for key in ("episodes", "workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)} is not valid; must be >= 1")
        if not 0 <= self.seed_start < EVAL_SEED_BASE - self.episodes * 10:
            raise ConfigError(
                f"seed_start={self.seed_start} is not valid; training seeds must "
                f"stay below the evaluation range (>= {EVAL_SEED_BASE})"
            )
        if self.eval_episodes < 0:
            raise ConfigError(f"eval_episodes={self.eval_episodes} is not valid; must be >= 0")


@dataclass
class PreviewConfig:
    """``python -m experiments.preview``: the main job until training lands (README)."""

    tasks: list[str] = field(default_factory=lambda: sorted(TASKS))
    seed: int = 0
    image_size: list[int] = field(default_factory=lambda: [128, 128])
    out_dir: str = "outputs/preview"
    dataset: CollectConfig = field(default_factory=lambda: CollectConfig(episodes=10, workers=2))

    def __post_init__(self) -> None:
        for task in self.tasks:
            check_choice("tasks", task, sorted(TASKS))
