"""Collect expert datasets: ``python -m experiments.collect task=handover_block setting=clean``.

Also the training side's view of its dataset: the collection a run's config asks for, the
command that makes it, and ``ensure_dataset`` (collects a missing one, checks a present one).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from experiments.cli import APPS_CONF_DIR, check_overrides, exit_on_user_error, to_config
from experiments.config.base import ConfigError
from experiments.config.collect import CollectConfig
from experiments.config.registry import register_configs
from experiments.config.train import TrainConfig
from worldmodel.command_line import override
from worldmodel.data.collection import CollectionJob, dataset_path, run_collection
from worldmodel.data.episodes import COLLECT_COMMAND, DatasetError, EpisodeFile
from worldmodel.training.distributed import DistInfo

register_configs()


def job_from_config(config: CollectConfig, config_yaml: str = "") -> CollectionJob:
    return CollectionJob(
        task=config.task,
        setting=config.setting,
        episodes=config.episodes,
        cameras=tuple(config.cameras),
        image_size=tuple(config.image_size),
        data_dir=Path(config.data_dir),
        seed_start=config.seed_start,
        eval_episodes=config.eval_episodes,
        workers=config.workers,
        config_yaml=config_yaml,
    )


def collect_config(config: TrainConfig) -> CollectConfig:
    """What ``python -m experiments.collect`` would need to make this run's dataset."""
    data = config.data
    return CollectConfig(
        task=config.task.name,
        setting=config.task.setting,
        episodes=data.episodes,
        workers=data.collect_workers,
        cameras=list(data.cameras),
        image_size=list(data.image_size),
        eval_episodes=data.eval_episodes,
        data_dir=data.dir,
    )


def collect_command(config: CollectConfig) -> str:
    return (
        f"{COLLECT_COMMAND} task={config.task} setting={config.setting} "
        f"episodes={config.episodes} eval_episodes={config.eval_episodes} "
        f"cameras=[{','.join(config.cameras)}] "
        f"image_size=[{config.image_size[0]},{config.image_size[1]}] "
        f"{override('data_dir', config.data_dir)}"
    )


@contextmanager
def run_collect_command(config: TrainConfig) -> Iterator[None]:
    """A dataset error inside the block names the collect command of this run's own dataset:
    its cameras, image size and episodes, which a damaged file cannot tell."""
    try:
        yield
    except DatasetError as exc:
        raise exc.with_command(collect_command(collect_config(config))) from exc


def ensure_dataset(config: TrainConfig, dist: DistInfo) -> Path:
    """The dataset path; collected first when missing and ``data.auto_collect`` (rank 0)."""
    data, collect = config.data, collect_config(config)
    path = dataset_path(data.dir, config.task.name, config.task.setting)
    if not path.exists():
        if not data.auto_collect:
            fix = f"collect it with: {collect_command(collect)} (or data.auto_collect=true)"
            raise DatasetError(path, "not found", fix)
        if dist.is_main:
            run_collection(job_from_config(collect))
        if dist.distributed:
            torch.distributed.barrier()
    with EpisodeFile(path) as dataset:
        missing = [c for c in data.cameras if c not in dataset.cameras]
        resized = data.cameras and list(dataset.image_size) != list(data.image_size)
        if missing or resized:
            height, width = dataset.image_size
            raise DatasetError(
                path,
                f"has cameras {dataset.cameras} at {list(dataset.image_size)}, the run wants "
                f"{data.cameras} at {data.image_size}",
                f"train on it with data.cameras=[{','.join(dataset.cameras)}] "
                f"data.image_size=[{height},{width}], or move it aside "
                f"({shlex.join(['mv', str(path), f'{path}.bak'])}) and re-run",
                collect_command(collect),
            )
        if dataset.num_episodes - data.val_episodes < 1:
            raise ConfigError(
                f"data.val_episodes={data.val_episodes} leaves no training episode of the "
                f"{dataset.num_episodes} in {path}"
            )
    return path


def collect_config_from(cfg: DictConfig) -> CollectConfig:
    return to_config(cfg, CollectConfig)


@exit_on_user_error
def collect(cfg: DictConfig) -> None:
    config = collect_config_from(cfg)
    result = run_collection(job_from_config(config, OmegaConf.to_yaml(cfg)))
    for note in result.notes:
        print(note)
    print(
        f"{result.out_path}: {len(result.seeds)} episodes ({result.newly_collected} new, "
        f"{result.resumed} resumed), "
        f"{len(result.skipped_seeds)} seeds skipped (expert failed), "
        f"{len(result.eval_seeds)} evaluation seeds"
    )


@hydra.main(config_path="../conf/apps", config_name="collect", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    collect(cfg)


def main() -> None:
    """A bad key or value stops with one line before Hydra starts (and makes its folder)."""
    check_overrides("collect", sys.argv[1:], collect_config_from, conf_dir=APPS_CONF_DIR)
    hydra_main()


if __name__ == "__main__":
    main()
