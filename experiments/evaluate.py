"""Evaluate a checkpoint: ``python -m experiments.evaluate checkpoint=<run>/last.pt``.

Suites (``suites=[...]``, all by default):
- ``closed_loop``: the model as a policy on the dataset's expert-checked evaluation seeds, in
  every inference mode (``standard``; ``mcp_parallel`` too for MCP heads), success rate with
  its Wilson 95% interval and per-episode outcomes.
- ``baselines``: the scripted expert (ceiling), hold-still and random policies (floors) on
  the same seeds.
- ``speed``: chunks/s, control steps/s and network passes per chunk of each mode, from the
  closed-loop runs of this one invocation (same machine), and mcp_parallel / standard.
- ``drift``: open-loop drift per horizon on held-out episodes in three context regimes, for
  each mode and with the heads dropped; figures ``figures/drift_<metric>_<regime>.png``.
- ``videos``: real | imagined | difference rollouts of held-out episodes and closed-loop
  episode videos at control rate, the real view beside the imagined one, marked SUCCESS/FAIL
  (``videos/``; both tracks: the state track's states are rendered by the viewing camera).
- ``diagnose`` (only when named): why the policy fails. Teacher-forced action skill on
  held-out episodes by chunk index and frame within the chunk, on real and on imagined
  video (with MCP heads also on mcp_parallel's depth-1 drafts), beside the hold-last-action
  and data-mean predictors (``worldmodel/evaluation/diagnose.py``; figures
  ``figures/diagnose_actions_<group>.png``; the drafts' latent error against the backbone's
  own denoising per chunk and per Euler step, ``figures/diagnose_draft.png``), and the
  oracle-video closed loop: the expert's real frames of the same seed and control
  step replace imagination (``OracleVideoPolicy``), on the same seeds.

Writes ``eval.json`` (schema ``EVAL_SCHEMA_VERSION``) and the files into ``out_dir``
(default ``<run folder>/eval/step_<n>``); the evaluation of a run's final checkpoint is also
copied to ``<run folder>/eval.json``, which the aggregation reads, when the run has none
(``replace_run_eval=true``: also when it has one). Logged to wandb when
``logger.mode`` is not ``disabled``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from envs.env import CONTROL_HZ
from experiments.cli import APPS_CONF_DIR, check_overrides, exit_on_user_error, to_config
from experiments.config.base import ConfigError
from experiments.config.evaluate import EvaluateConfig
from experiments.config.registry import register_configs
from experiments.results.eval_file import EVAL_FILE, EVAL_SCHEMA_VERSION, MODE_POLICIES
from worldmodel import atomic
from worldmodel.data.collection import dataset_path
from worldmodel.data.episodes import EpisodeFile
from worldmodel.evaluation.closed_loop import ClosedLoopResult, eval_seeds
from worldmodel.evaluation.diagnose import action_skill, mean_raw_action
from worldmodel.evaluation.drift import DriftConfig, DriftResult, measure_drift
from worldmodel.evaluation.figures import plot_action_skill, plot_draft_error, plot_drift
from worldmodel.evaluation.run_eval import (
    BASELINE_POLICIES,
    check_held_out_frames,
    closed_loop_episode_video,
    closed_loop_metrics,
    drift_episodes,
    held_out_indices,
    model_policy_factory,
    rollout_video,
    run_closed_loop,
    video_twin,
)
from worldmodel.inference.session import check_context, check_mode, chunks_per_step
from worldmodel.training.build import TrainedRun, load_trained
from worldmodel.training.run_logger import RunLogger
from worldmodel.training.windows import load_episode_latents

register_configs()

DRIFT_FIGURES = (("latent_mse", "open_loop"), ("latent_mse", "autoregressive"))
DRIFT_FIGURES += (("psnr", "open_loop"), ("ssim", "open_loop"))  # the pixel track
DRIFT_FIGURES += (("object_position_mm", "open_loop"), ("object_position_mm", "autoregressive"))
DRIFT_FIGURES += (("object_rotation_deg", "open_loop"),)  # the state track (with free bodies)


def run_info(trained: TrainedRun) -> dict[str, Any]:
    """Who was evaluated: the run's identity from its checkpoint and ``run.json``."""
    config, build = trained.checkpoint["config"], trained.build
    run_json = Path(trained.checkpoint_path).parent / "run.json"
    meta = json.loads(run_json.read_text()) if run_json.is_file() else {}
    return {
        "name": config.get("name"),
        "task": build.task,
        "setting": build.setting,
        "heads": meta.get("heads", build.heads.kind),
        "variant": meta.get("variant", meta.get("heads", build.heads.kind)),
        "fps": build.fps,
        "frames_per_latent": build.frames_per_latent,
        "seed": config.get("seed"),
        "git": trained.checkpoint.get("git"),
    }


def inference_modes(config: EvaluateConfig, trained: TrainedRun) -> list[str]:
    if config.modes:
        return list(config.modes)
    return ["standard", "mcp_parallel"] if trained.model.drafts_next_chunk else ["standard"]


def check_inference(config: EvaluateConfig, trained: TrainedRun) -> None:
    """ConfigError (one line) for a mode the model cannot run, more context than training saw
    or a drift rollout longer than every held-out episode, before any episode runs."""
    for mode in inference_modes(config, trained):
        try:
            check_mode(trained.model, mode)
            per_step = chunks_per_step(mode)
            check_context(trained.model.config.trained_chunks, per_step, config.context_chunks)
        except ValueError as exc:
            raise ConfigError(f"{config.checkpoint}: {exc}") from None
    if {"drift", "videos"} & set(config.suites):
        suite = config.drift
        frames = (suite.context_chunks + suite.horizon) * trained.model.config.K
        what = f"drift.horizon={suite.horizon} or drift.context_chunks={suite.context_chunks}"
        try:
            check_held_out_frames(trained.build, frames, what)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def closed_loop_suite(
    config: EvaluateConfig, trained: TrainedRun, out_dir: Path, results: dict
) -> dict[str, ClosedLoopResult]:
    """The model in each mode (and the baselines) on the evaluation seeds."""
    build = trained.build
    setting = config.setting or build.setting
    seeds = eval_seeds(dataset_path(Path(build.dataset).parent, build.task, setting))
    seeds = seeds[: config.episodes]
    record = seeds[: config.videos] if "videos" in config.suites else []
    common = dict(
        workers=config.workers,
        batch_size=config.batch_size,
        max_steps=config.max_steps or None,
        setting=setting,
    )
    outcomes: dict[str, ClosedLoopResult] = {}
    if {"closed_loop", "speed"} & set(config.suites):
        for mode in inference_modes(config, trained):
            factory = model_policy_factory(
                trained.model,
                trained.tokenizer,
                build.latent_fps,
                mode,
                config.video_steps,
                config.action_steps,
                config.context_chunks,
            )
            key = "model" if mode == "standard" else f"model_{mode}"
            outcomes[key] = run_closed_loop(
                factory, build, seeds, needs_images=True, record_seeds=record, **common
            )
            twin = video_twin(trained.tokenizer, build.task, setting)
            for episode in outcomes[key].episodes:
                if episode.view is not None:
                    path = out_dir / "videos" / f"closed_loop_{key}_seed{episode.seed}.mp4"
                    closed_loop_episode_video(episode, trained.tokenizer, path, twin, CONTROL_HZ)
                    results["files"]["videos"].append(str(path))
    if "baselines" in config.suites:
        for name, factory in BASELINE_POLICIES.items():
            outcomes[name] = run_closed_loop(factory, build, seeds, needs_images=False, **common)
    results["closed_loop"] = {key: result.to_dict() for key, result in outcomes.items()}
    return outcomes


def speed_suite(outcomes: dict[str, ClosedLoopResult]) -> dict[str, Any]:
    """Per mode speeds of this invocation's closed-loop runs, and their ratio."""
    speed: dict[str, Any] = {
        mode: {
            "chunks_per_second": outcomes[key].chunks_per_second,
            "control_steps_per_second": outcomes[key].steps_per_second,
            "passes_per_chunk": outcomes[key].passes_per_chunk,
        }
        for mode, key in MODE_POLICIES.items()
        if key in outcomes
    }
    both = "standard" in speed and "mcp_parallel" in speed
    speed["mcp_parallel_speedup"] = (
        speed["mcp_parallel"]["control_steps_per_second"]
        / speed["standard"]["control_steps_per_second"]
        if both
        else None
    )
    return speed


def drift_suite(
    config: EvaluateConfig, trained: TrainedRun, out_dir: Path, results: dict
) -> dict[str, DriftResult]:
    """Drift per mode (and heads dropped), its figures and the rollout videos."""
    model, tokenizer, build = trained.model, trained.tokenizer, trained.build
    suite = config.drift
    frames = (suite.context_chunks + suite.horizon) * model.config.K
    cache_dir = trained.checkpoint["config"]["data"]["cache_dir"]
    episodes = drift_episodes(build, tokenizer, frames, suite.episodes, cache_dir)
    models = {mode: model for mode in inference_modes(config, trained)}
    if model.heads is not None:
        dropped = copy.deepcopy(model)
        dropped.drop_heads()
        models["heads_dropped"] = dropped
    drift: dict[str, DriftResult] = {}
    if "drift" in config.suites:
        for name, candidate in models.items():
            mode = name if name in ("standard", "mcp_parallel") else "standard"
            drift_config = DriftConfig(
                context_chunks=suite.context_chunks,
                horizon=suite.horizon,
                steps=suite.steps,
                mode=mode,
                seed=config.seed,
            )
            drift[name] = measure_drift(candidate, episodes, drift_config, tokenizer)
        results["drift"] = {name: result.to_dict() for name, result in drift.items()}
        measured = set(next(iter(drift.values())).curves["open_loop"])
        for metric, regime in DRIFT_FIGURES:
            if metric not in measured:
                continue
            path = out_dir / "figures" / f"drift_{metric}_{regime}.png"
            results["files"]["figures"].append(str(plot_drift(drift, metric, regime, path)))
    if "videos" in config.suites:
        twin = video_twin(tokenizer, build.task, build.setting)
        for episode in range(min(config.videos, len(episodes.latents))):
            path = rollout_video(
                model,
                tokenizer,
                episodes,
                out_dir / "videos" / f"rollout_episode{episode}.mp4",
                context_chunks=max(suite.context_chunks, 1),
                horizon=suite.horizon if suite.context_chunks else suite.horizon - 1,
                steps=suite.steps,
                fps=build.latent_fps,
                episode=episode,
                seed=config.seed,
                twin=twin,
            )
            results["files"]["videos"].append(str(path))
    return drift


def diagnose_suite(config: EvaluateConfig, trained: TrainedRun, out_dir: Path) -> dict:
    """Action skill (with its figures; with MCP heads also on mcp_parallel's drafts and the
    drafts' latent error, ``figures/diagnose_draft.png``) and the oracle-video closed loop."""
    model, build = trained.model, trained.build
    cache_dir = trained.checkpoint["config"]["data"]["cache_dir"]
    with EpisodeFile(build.dataset) as dataset:
        total = dataset.num_episodes
    train, held_out = list(range(build.train_episodes)), held_out_indices(build)
    load = functools.partial(
        load_episode_latents,
        build.dataset,
        trained.tokenizer,
        build.latent_fps,
        cache_dir=cache_dir,
        max_bytes=8 * 2**30,
        progress=False,
    )
    skill = action_skill(
        model,
        load(indices=held_out),
        mean_raw_action(load(indices=train or list(range(total)))),
        config.video_steps or model.config.video_steps,
        config.action_steps or model.config.action_steps,
        config.seed,
    )
    figures = [
        str(plot_action_skill(skill, out_dir / "figures" / f"diagnose_actions_{group}.png", group))
        for group in ("arm", "gripper")
    ]
    if skill.draft is not None:
        figures.append(
            str(plot_draft_error(skill.draft, out_dir / "figures" / "diagnose_draft.png"))
        )
    setting = config.setting or build.setting
    seeds = eval_seeds(dataset_path(Path(build.dataset).parent, build.task, setting))
    factory = model_policy_factory(
        model,
        trained.tokenizer,
        build.latent_fps,
        "standard",
        config.video_steps,
        config.action_steps,
        config.context_chunks,
        oracle_video=True,
    )
    oracle = run_closed_loop(
        factory,
        build,
        seeds[: config.episodes],
        needs_images=True,
        workers=config.workers,
        batch_size=config.batch_size,
        max_steps=config.max_steps or None,
        setting=setting,
    )
    return {
        "action_skill": skill.to_dict(),
        "oracle_closed_loop": oracle.to_dict(),
        "figures": figures,
    }


def evaluate_checkpoint(config: EvaluateConfig) -> dict[str, Any]:
    """Run the configured suites; returns what ``eval.json`` holds."""
    if config.threads:
        torch.set_num_threads(config.threads)
    trained = load_trained(config.checkpoint)
    check_inference(config, trained)
    run_dir = Path(config.checkpoint).resolve().parent
    out_dir = (
        Path(config.out_dir) if config.out_dir else run_dir / "eval" / f"step_{trained.step:07d}"
    )
    check_writable(out_dir)
    results: dict[str, Any] = {
        "schema_version": EVAL_SCHEMA_VERSION,
        "checkpoint": str(Path(config.checkpoint).resolve()),
        "step": trained.step,
        "run": run_info(trained),
        "torch_threads": torch.get_num_threads(),
        "closed_loop": {},
        "drift": {},
        "speed": {},
        "files": {"figures": [], "videos": []},
    }
    outcomes: dict[str, ClosedLoopResult] = {}
    if {"closed_loop", "baselines", "speed"} & set(config.suites):
        outcomes = closed_loop_suite(config, trained, out_dir, results)
    if "speed" in config.suites:
        results["speed"] = speed_suite(outcomes)
    if {"drift", "videos"} & set(config.suites):
        drift_suite(config, trained, out_dir, results)
    if "diagnose" in config.suites:
        results["diagnose"] = diagnose_suite(config, trained, out_dir)
        results["files"]["figures"] += results["diagnose"]["figures"]
    atomic.write_json(out_dir / EVAL_FILE, results)
    if trained.step == trained.checkpoint["config"]["train"]["steps"]:
        record_run_evaluation(
            run_dir / EVAL_FILE, out_dir / EVAL_FILE, results, config.replace_run_eval
        )
    log_evaluation(config, results, outcomes, out_dir)
    return results


def check_writable(out_dir: Path) -> None:
    """One line naming ``out_dir=`` before any episode runs when the evaluation's folder
    cannot be made or written (a read-only mount, say)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{out_dir}: {exc.strerror}; the evaluation cannot be written there: pass "
            "out_dir=<a writable folder>"
        ) from None


def record_run_evaluation(
    path: Path, written: Path, results: dict[str, Any], replace: bool
) -> None:
    """The final checkpoint's evaluation becomes the run's ``eval.json`` unless the run has one
    already: an evaluation with other suites or episodes never silently replaces the one a
    sweep or reproduction made (``replace_run_eval=true`` does)."""
    if not os.access(path.parent, os.W_OK):
        print(
            f"the run folder {path.parent} is read-only: the evaluation is {written}",
            file=sys.stderr,
        )
        return
    if path.is_file() and not replace:
        print(
            f"kept {path} (the run's evaluation, which the aggregation reads); this one is "
            f"{written}; pass replace_run_eval=true to make it the run's",
            file=sys.stderr,
        )
        return
    atomic.write_json(path, results)


def log_evaluation(
    config: EvaluateConfig, results: dict, outcomes: dict[str, ClosedLoopResult], out_dir: Path
) -> None:
    """Scalars, figures and videos to ``out_dir/metrics.jsonl`` and wandb (job evaluate)."""
    run = results["run"]
    logger = RunLogger(
        out_dir,
        mode=config.logger.mode,
        project=config.logger.project,
        entity=config.logger.entity,
        group=run["name"],
        job_type="evaluate",
        tags=[run["task"], f"fps={run['fps']:g}", f"seed={run['seed']}", run["variant"]],
        config={"evaluate": results["checkpoint"], "run": run},
        init=config.logger.init,
    )
    step = results["step"]
    scalars: dict[str, Any] = {}
    for key, outcome in outcomes.items():
        scalars |= closed_loop_metrics(outcome, prefix=f"eval/{key}/")
    if results["speed"].get("mcp_parallel_speedup") is not None:
        scalars["eval/mcp_parallel_speedup"] = results["speed"]["mcp_parallel_speedup"]
    for name, drift in results["drift"].items():
        for regime, metrics in drift["summary"].items():
            for metric, summary in metrics.items():
                scalars[f"eval/drift/{name}/{regime}/{metric}_auc"] = summary["auc"]
    logger.log(scalars, step)
    for path in results["files"]["figures"] + results["files"]["videos"]:
        logger.log_media(f"eval/{Path(path).stem}", path, step)
    logger.close()


def summary_lines(results: dict) -> list[str]:
    lines = [f"evaluated {results['checkpoint']} (step {results['step']})"]
    outcomes = dict(results["closed_loop"])
    if "diagnose" in results:
        outcomes["model_oracle_video"] = results["diagnose"]["oracle_closed_loop"]
    for key, outcome in outcomes.items():
        lines.append(
            f"  {key:>20}: success {outcome['successes']}/{outcome['n']} = "
            f"{outcome['success_rate']:.2f} [{outcome['wilson_low']:.2f}, "
            f"{outcome['wilson_high']:.2f}], progress {outcome['mean_progress']:.2f}"
        )
    if "diagnose" in results:
        skill = results["diagnose"]["action_skill"]["skill_by_chunk"]
        for source, by_group in skill.items():
            scores = ", ".join("n/a" if v is None else f"{v:.2f}" for v in by_group["arm"])
            lines.append(f"  arm action skill by chunk ({source} video): {scores}")
    if results["speed"].get("mcp_parallel_speedup") is not None:
        lines.append(f"  mcp_parallel speedup: {results['speed']['mcp_parallel_speedup']:.2f}x")
    return lines


def evaluate_config_from(cfg: DictConfig) -> EvaluateConfig:
    return to_config(cfg, EvaluateConfig)


@exit_on_user_error
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    results = evaluate_checkpoint(evaluate_config_from(cfg))
    print("\n".join(summary_lines(results)))
    return results


@hydra.main(config_path="../conf/apps", config_name="evaluate", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    evaluate(cfg)


def main() -> None:
    check_overrides("evaluate", sys.argv[1:], evaluate_config_from, conf_dir=APPS_CONF_DIR)
    hydra_main()


if __name__ == "__main__":
    main()
