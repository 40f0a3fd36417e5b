"""Collect expert datasets: ``python -m experiments.collect task=handover_block setting=clean``."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from experiments.cli import exit_on_user_error, to_config
from experiments.configs import CollectConfig, register_configs
from worldmodel.data.collection import CollectionJob, run_collection

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


@exit_on_user_error
def collect(cfg: DictConfig) -> None:
    config = to_config(cfg, CollectConfig)
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
def main(cfg: DictConfig) -> None:
    collect(cfg)


if __name__ == "__main__":
    main()
