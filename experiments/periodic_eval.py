"""What a training run evaluates every ``eval.every`` steps (``periodic_evaluation``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.config.train import TrainConfig
from worldmodel.evaluation.closed_loop import eval_seeds
from worldmodel.evaluation.run_eval import (
    closed_loop_metrics,
    drift_episodes,
    model_policy_factory,
    rollout_video,
    run_closed_loop,
    video_twin,
)
from worldmodel.heads.modules import WorldModelWithHeads
from worldmodel.tokenizer.base import Tokenizer
from worldmodel.training.build import RunBuild
from worldmodel.training.run_logger import RunLogger
from worldmodel.training.validation import validation_losses
from worldmodel.training.windows import WindowSet


def periodic_evaluation(
    config: TrainConfig,
    build: RunBuild,
    tokenizer: Tokenizer,
    val_set: WindowSet | None,
    logger: RunLogger,
    run_dir: Path,
) -> Callable[[WorldModelWithHeads, int], dict[str, Any]]:
    """What runs every ``eval.every`` steps: validation losses per horizon, closed-loop
    success on the dataset's evaluation seeds (``eval.closed_loop``) and a rollout video."""
    ev = config.eval
    seeds = eval_seeds(build.dataset)[: ev.episodes] if ev.closed_loop else []
    video_episodes, twin = None, None
    if ev.rollout_video:
        frames = (1 + ev.rollout_horizon) * config.model.K
        try:
            video_episodes = drift_episodes(build, tokenizer, frames, 1, config.data.cache_dir)
            twin = video_twin(tokenizer, build.task, build.setting)
        except ValueError as exc:
            print(f"warning: no rollout video: {exc}", file=sys.stderr)

    def evaluate(module: WorldModelWithHeads, step: int) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if val_set is not None:
            batch = config.train.batch_size
            results |= validation_losses(module, val_set, ev.val_windows, batch, config.seed)
        if seeds:
            factory = model_policy_factory(
                module,
                tokenizer,
                build.latent_fps,
                ev.mode,
                ev.video_steps,
                ev.action_steps,
                ev.context_chunks,
            )
            result = run_closed_loop(
                factory,
                build,
                seeds,
                needs_images=True,
                workers=ev.workers,
                max_steps=ev.max_steps or None,
                batch_size=ev.batch_size,
            )
            results |= closed_loop_metrics(result)
        if video_episodes is not None:
            path = rollout_video(
                module,
                tokenizer,
                video_episodes,
                run_dir / "videos" / f"rollout_step_{step:07d}.mp4",
                context_chunks=1,
                horizon=ev.rollout_horizon,
                steps=ev.video_steps or module.config.video_steps,
                fps=build.latent_fps,
                seed=config.seed,
                twin=twin,
            )
            logger.log_media("rollout/video", path, step)
        return results

    return evaluate
