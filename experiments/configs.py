"""Typed configs of the Hydra apps, registered with Hydra's ConfigStore.

Values are checked in ``__post_init__``, which runs when an app turns the composed config
into its dataclass (``OmegaConf.to_object``): a bad value fails before any work, with one
line naming the key and the valid choices. Unknown keys are rejected by Hydra itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from envs.scene import CAMERA_ALIASES, SETTINGS
from envs.tasks import TASKS
from worldmodel.data.collection import EVAL_SEED_BASE


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and the valid choices."""


def check_choice(key: str, value: object, valid) -> None:
    if value not in valid:
        raise ConfigError(
            f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}"
        )


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


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="collect_schema", node=CollectConfig)
    store.store(name="preview_schema", node=PreviewConfig)
    # these modules import this one: register them late
    from experiments.evaluate_configs import EvaluateConfig
    from experiments.reproduce_configs import ReproduceConfig
    from experiments.train_configs import TrainConfig

    store.store(name="train_schema", node=TrainConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="reproduce_schema", node=ReproduceConfig)
