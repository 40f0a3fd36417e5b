"""Train a world model: ``python -m experiments.train task=handover_block heads=next_forcing``.

Composes ``conf/train.yaml`` (groups task, data, tokenizer, model, heads, train, eval, logger,
experiment; typed by ``experiments.config.train.TrainConfig``), then builds the parts and
hands them to ``worldmodel.training.Trainer``. The run folder (Hydra's output dir, named
after the command's overrides) holds ``config.yaml``, ``run.json`` (git commit, dirty flag,
versions), ``metrics.jsonl``, ``last.pt`` and ``step_<n>.pt`` checkpoints and the wandb
offline run. Re-running the same command continues from ``last.pt``; ``resume_from=<checkpoint>``
rewinds the folder or forks another run (``worldmodel.training.resume``).

``torchrun --nproc_per_node=N -m experiments.train ...`` trains with DDP (gloo on CPU,
nccl on GPU); ``train.batch_size`` stays the global batch.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments.cli import check_overrides, exit_on_user_error, to_config
from experiments.collect import ensure_dataset, run_collect_command
from experiments.config.base import ConfigError
from experiments.config.registry import register_configs
from experiments.config.train import TrainConfig, check_train_config
from experiments.periodic_eval import periodic_evaluation
from experiments.results.run_folders import write_run_files
from experiments.runs import RESUME_RULES, variant_label
from worldmodel import atomic
from worldmodel.data.episodes import EpisodeFile
from worldmodel.folder_lock import RUN_LOCK, exclusive
from worldmodel.heads.modules import WorldModelWithHeads
from worldmodel.model.config import ModelConfig
from worldmodel.timing import FrameRate
from worldmodel.tokenizer.base import Tokenizer
from worldmodel.training.build import RunBuild, derive_model_config
from worldmodel.training.distributed import DistInfo, init_distributed, shutdown
from worldmodel.training.provenance import git_state, versions
from worldmodel.training.resume import fork_record, start_history, start_point
from worldmodel.training.run_logger import RunLogger
from worldmodel.training.trainer import Progress, Trainer
from worldmodel.training.windows import WindowSet, fit_action_codec, load_episode_latents

register_configs()


def model_config_for(config: TrainConfig, dataset: Path, tokenizer: Tokenizer) -> ModelConfig:
    """The run's model config with the keys derived from the tokenizer, frame rate and
    dataset."""
    frame_rate = run_frame_rate(config, dataset)
    with EpisodeFile(dataset) as episodes:
        action_dim = int(episodes.actions_at_fps(0, frame_rate.latent_fps).shape[-1])
    return derive_model_config(
        config.model, tokenizer, frame_rate, action_dim, config.data.window_frames
    )


def run_frame_rate(config: TrainConfig, dataset: Path) -> FrameRate:
    """The run's frame rate at the dataset's recorded control rate."""
    with EpisodeFile(dataset) as episodes:
        control_hz = episodes.control_hz
    return replace(config.frame_rate, control_hz=control_hz)


def run_training(
    config: TrainConfig,
    run_dir: Path,
    resolved: dict,
    heads_name: str = "custom",
    overrides: list[str] | None = None,
    hydra_files: dict[str, str] | None = None,
) -> Progress:
    """Train one run into ``run_dir`` (continuing its checkpoint when there is one);
    ``hydra_files``: what Hydra would keep in ``.hydra/``, written only by the process that
    holds the folder (a refused second process writes nothing into it)."""
    check_train_config(config)
    dist = init_distributed(config.train.device)
    lock = (
        exclusive(Path(run_dir) / RUN_LOCK, f"run folder {run_dir}")
        if dist.is_main
        else contextlib.nullcontext()
    )
    try:
        with lock:
            if dist.is_main:
                for path in atomic.remove_stale_temps(run_dir):
                    print(f"removed {path}, left by a killed write", file=sys.stderr)
            with run_collect_command(config):
                overrides = list(overrides or [])
                return _train(config, run_dir, resolved, heads_name, overrides, hydra_files, dist)
    finally:
        shutdown(dist)


def _train(
    config: TrainConfig,
    run_dir: Path,
    resolved: dict,
    heads_name: str,
    overrides: list[str],
    hydra_files: dict[str, str] | None,
    dist: DistInfo,
) -> Progress:
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    path = ensure_dataset(config, dist)
    start = start_point(run_dir, resolved, config.resume, config.resume_from, RESUME_RULES)
    parts = build_parts(config, path, dist)
    git = git_state()
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if start is not None:
            print(start_history(start, run_dir), file=sys.stderr)
        variant = config.variant or variant_label(heads_name, overrides)
        run_info = {"git": git, "versions": versions(), "argv": sys.argv, "heads": heads_name}
        for name, text in (hydra_files or {}).items():
            atomic.write_text(run_dir / ".hydra" / name, text)
        write_run_files(run_dir, resolved, {**run_info, "variant": variant, "overrides": overrides})
    logger = RunLogger(
        run_dir,
        mode=config.logger.mode,
        project=config.logger.project,
        entity=config.logger.entity,
        group=config.name,
        job_type=heads_name,
        tags=[config.task.name, f"fps={config.fps:g}", f"seed={config.seed}", git["commit"][:12]],
        config={**resolved, "git": git, "versions": versions()},
        init=config.logger.init,
        resume_step=None if start is None else start.step,
        active=dist.is_main,
    )
    evaluate = periodic_evaluation(
        config, parts.build, parts.tokenizer, parts.val_set, logger, run_dir
    )
    trainer = Trainer(
        parts.model,
        parts.train_set,
        config.train,
        run_dir=run_dir,
        logger=logger,
        dist=dist,
        seed=config.seed,
        checkpoint_extra={
            "config": resolved,
            "build": parts.build.to_dict(),
            "git": git,
            **fork_record(start),
        },
        evaluate=evaluate,
        eval_every=config.eval.every,
        progress_bar=config.logger.progress,
    )
    if start is not None:
        trainer.restore(start.payload)
    try:
        return trainer.fit()
    finally:
        logger.close()


@dataclass
class RunParts:
    """What a run trains: the model (action codec fitted), its windows and how to rebuild it."""

    build: RunBuild
    tokenizer: Tokenizer  # the run's fitted tokenizer (encodes the windows, evaluates)
    model: WorldModelWithHeads
    train_set: WindowSet
    val_set: WindowSet | None  # the held-out episodes' windows; None without any


def build_parts(config: TrainConfig, path: Path, dist: DistInfo) -> RunParts:
    """The tokenizer fitted on the training episodes, the episodes encoded into windows, and
    the model built at ``config.seed`` with its action codec fitted to those episodes."""
    data = config.data
    with EpisodeFile(path) as dataset:
        total = dataset.num_episodes
    train_count = total - data.val_episodes
    try:
        tokenizer_config = config.tokenizer.fitted(path, train_count)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    tokenizer = tokenizer_config.build(data.cameras, data.image_size)
    frame_rate = run_frame_rate(config, path)
    latents = load_episode_latents(
        path,
        tokenizer,
        frame_rate.latent_fps,
        list(range(total)),
        data.cache_dir,
        data.max_memory_gb * 2**30,
        progress=config.logger.progress and dist.is_main,
    )
    model_config = model_config_for(config, path, tokenizer)
    if model_config.latent_dim >= model_config.dim and dist.is_main:
        print(
            f"warning: tokens of latent_dim={model_config.latent_dim} channels do not fit "
            f"model.dim={model_config.dim}: the model cannot predict their per-channel noise "
            "and imagined video stays noise; use tokenizer=conv_ae or a larger model",
            file=sys.stderr,
        )
    train_set = WindowSet(
        latents[:train_count], data.window_frames, model_config.K, data.episode_start_prob
    )
    val_set = (
        WindowSet(latents[train_count:], data.window_frames, model_config.K)
        if data.val_episodes
        else None
    )
    torch.manual_seed(config.seed)
    model = WorldModelWithHeads(model_config, config.heads)
    fit_action_codec(model.action_codec, latents[:train_count], model_config.K)
    build = RunBuild(
        model=model_config,
        heads=config.heads,
        tokenizer=tokenizer_config,
        cameras=list(data.cameras),
        image_size=list(data.image_size),
        fps=config.fps,
        task=config.task.name,
        setting=config.task.setting,
        dataset=str(path),
        train_episodes=train_count,
        frames_per_latent=frame_rate.frames_per_latent,
        control_hz=frame_rate.control_hz,
    )
    return RunParts(build, tokenizer, model, train_set, val_set)


def train_config_from(cfg: DictConfig) -> TrainConfig:
    config = to_config(cfg, TrainConfig)
    check_train_config(config)
    return config


@exit_on_user_error
def train(cfg: DictConfig) -> Progress:
    config = train_config_from(cfg)
    hydra_cfg = HydraConfig.get()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    heads_name = hydra_cfg.runtime.choices.get("heads", "custom")
    overrides = list(hydra_cfg.overrides.task)
    hydra_files = {  # what Hydra keeps in .hydra/ (conf/train.yaml turns its own copy off)
        "config.yaml": OmegaConf.to_yaml(cfg),
        "hydra.yaml": OmegaConf.to_yaml({"hydra": hydra_cfg}),
        "overrides.yaml": OmegaConf.to_yaml(overrides),
    }
    run_dir = Path(hydra_cfg.runtime.output_dir)
    return run_training(config, run_dir, resolved, heads_name, overrides, hydra_files)


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    train(cfg)


def main() -> None:
    check_overrides("train", sys.argv[1:], train_config_from)
    hydra_main()


if __name__ == "__main__":
    main()
