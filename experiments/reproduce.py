"""Reproduce a paper: ``python -m experiments.reproduce paper=next_forcing scale=tiny``.

One command: collect the missing datasets, train every run of the scale's sweep (variants x
tasks x settings x fps x seeds, each with periodic closed-loop evaluation: the convergence
curve), evaluate each final checkpoint, aggregate over seeds and tasks, and write
``REPORT.md``, opening with the paper's headline claims beside our measurements and a verdict.
Finished runs and evaluations are skipped and unfinished runs resume from their last
checkpoint, so the command continues after a kill. A run that fails is reported as missing;
the others go on.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from experiments.cli import (
    APPS_CONF_DIR,
    CONF_DIR,
    USER_ERRORS,
    check_overrides,
    exit_on_user_error,
    to_config,
)
from experiments.collect import collect_command, collect_config, ensure_dataset
from experiments.config.base import ConfigError
from experiments.config.registry import register_configs
from experiments.config.reproduce import ReproduceConfig, ScalePreset, scale_preset
from experiments.evaluate import evaluate_checkpoint, evaluate_config_from
from experiments.results.aggregate import aggregate_sweep
from experiments.results.claims import claims_table, next_forcing_claims
from experiments.results.entries import RunValues
from experiments.results.eval_file import EVAL_FILE
from experiments.results.fidelity import fidelity_rows, fidelity_table
from experiments.results.report import write_report
from experiments.results.run_folders import read_run_config
from experiments.runs import RESUMABLE_KEYS, RESUME_RULES
from experiments.train import run_training, train_config_from
from worldmodel import atomic
from worldmodel.command_line import hydra_override
from worldmodel.data.collection import dataset_path
from worldmodel.timing import FRAMES_PER_LATENT
from worldmodel.tokenizer.training import train_conv_ae
from worldmodel.training.checkpoint import LAST_CHECKPOINT, load_checkpoint
from worldmodel.training.distributed import init_distributed
from worldmodel.training.resume import RunConfigChanged
from worldmodel.training.stop_signals import STOP_SIGNALS, Interrupted, stop_requests
from worldmodel.worker_processes import start_pool_worker

register_configs()


@dataclass(frozen=True)
class RunSpec:
    """One training run of a reproduction sweep."""

    variant: str
    task: str
    setting: str
    fps: float
    seed: int
    heads: str  # the heads preset
    extra: tuple[str, ...] = ()  # the variant's own train overrides

    @property
    def folder(self) -> str:
        return f"{self.variant}/{self.task}_{self.setting}/fps{self.fps:g}/seed{self.seed}"

    def overrides(self, preset: ScalePreset, name: str, data_dir: Path, wandb: str) -> list[str]:
        """The ``experiments.train`` overrides of this run (the same as on a command line)."""
        return [
            *preset.train,
            f"heads={self.heads}",
            *self.extra,
            f"task={self.task}",
            f"task.setting={self.setting}",
            f"fps={self.fps:g}",
            f"seed={self.seed}",
            f"name={name}",
            f"variant={self.variant}",
            f"train.steps={preset.steps}",
            f"eval.every={preset.eval_every}",
            "eval.closed_loop=true",
            f"eval.episodes={preset.curve_episodes}",
            f"data.episodes={preset.data_episodes}",
            f"data.eval_episodes={preset.eval_episodes}",
            hydra_override("data.dir", data_dir),
            hydra_override("data.cache_dir", f"{data_dir}/latents"),
            "data.auto_collect=true",
            f"logger={wandb}",
            "logger.progress=false",
        ]


def run_specs(preset: ScalePreset) -> list[RunSpec]:
    """The main runs (variants x tasks x settings x fps x seeds), then the depth curve's."""
    specs = [
        RunSpec(
            variant,
            task,
            setting,
            float(fps),
            int(seed),
            variant,
            tuple(preset.overrides_at(fps) + preset.variant_overrides.get(variant, [])),
        )
        for task in preset.tasks
        for setting in preset.settings
        for fps in preset.fps
        for variant in preset.variants
        for seed in preset.seeds
    ]
    curve = preset.depth_curve
    if curve is None:
        return specs
    own = [o for o in preset.variant_overrides.get(curve.heads, []) if "heads.mcp_depth=" not in o]
    return specs + [
        RunSpec(
            curve.variant(depth),
            curve.task,
            curve.setting,
            float(curve.fps),
            int(seed),
            curve.heads,
            (*preset.overrides_at(curve.fps), *own, f"heads.mcp_depth={depth}"),
        )
        for depth in curve.depths
        for seed in curve.seeds
    ]


def tokenizer_frame_fps(preset: ScalePreset) -> float:
    """Frames per second the conv_ae tokenizer trains on: the densest latent frames the world
    models see (the highest fps over the reference's 4 video frames per latent frame)."""
    return max(preset.fps) / FRAMES_PER_LATENT


def run_order(preset: ScalePreset, spec: RunSpec) -> tuple[bool, int, int]:
    """Sort key of the runs: the main comparison before the depth curve, seed by seed, so a
    stopped command (or one made in pieces) has whole pairs of every slice first; within a
    seed the costlier variants first (the heads variants, the deepest heads), which keeps the
    last wave of parallel jobs short."""
    if spec.variant in preset.variants:
        return False, spec.seed, -preset.variants.index(spec.variant)
    curve = preset.depth_curve
    return True, spec.seed, -[curve.variant(d) for d in curve.depths].index(spec.variant)


def compose_app(conf_dir: Path, name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(name, overrides=overrides)


def finished_step(run_dir: Path) -> int | None:
    """The step the run folder's training reached: its last checkpoint's, else its final
    evaluation's (a run kept without its checkpoints, e.g. its small files committed or copied
    to another machine, counts as trained), or None."""
    path = run_dir / LAST_CHECKPOINT
    if path.is_file():
        return int(load_checkpoint(path)["step"])
    evaluation = run_dir / EVAL_FILE
    return json.loads(evaluation.read_text()).get("step") if evaluation.is_file() else None


def check_same_run(run_dir: Path, resolved: dict) -> None:
    """``RunConfigChanged`` unless the finished run in ``run_dir`` was trained with
    ``resolved`` (its ``config.yaml``; the keys a resume may change aside)."""
    changed = RESUME_RULES.differences(read_run_config(run_dir), resolved, RESUMABLE_KEYS)
    if changed:
        raise RunConfigChanged(run_dir, changed)


def tokenizer_checkpoint(dataset: Path) -> Path:
    """Where the reproduction keeps the conv_ae tokenizer trained on ``dataset``."""
    return dataset.parent / "tokenizers" / f"{dataset.stem}_conv_ae.pt"


def with_tokenizer(overrides: list[str], checkpoint: Path) -> list[str]:
    return [*overrides, "tokenizer=conv_ae", hydra_override("tokenizer.checkpoint", checkpoint)]


def ensure_tokenizer(preset: ScalePreset, overrides: list[str]) -> list[str]:
    """Collect the run's dataset when missing (here, so that parallel runs never collect the
    same file at once), then return the overrides with the run's conv_ae tokenizer (trained
    once per dataset when the scale asks for one: ``conv_ae_steps``), or unchanged."""
    config = train_config_from(compose_app(CONF_DIR, "train", overrides))
    dataset = ensure_dataset(config, init_distributed("cpu"))
    if not preset.conv_ae_steps:
        return overrides
    checkpoint = tokenizer_checkpoint(dataset)
    if not checkpoint.is_file():
        train_conv_ae(
            [dataset],
            config.data.cameras,
            config.data.image_size,
            steps=preset.conv_ae_steps,
            out_path=checkpoint,
            frame_fps=tokenizer_frame_fps(preset),  # one tokenizer serves every fps
            held_out_last=config.data.val_episodes,  # the world model's validation episodes
            device="cpu",
        )
    return with_tokenizer(overrides, checkpoint)


def train_run(spec: RunSpec, run_dir: Path, overrides: list[str], steps: int) -> None:
    cfg = compose_app(CONF_DIR, "train", overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        if finished_step(run_dir) == steps:
            check_same_run(run_dir, resolved)
            return
        run_training(train_config_from(cfg), run_dir, resolved, spec.heads, overrides)
    except RunConfigChanged as exc:
        raise ConfigError(
            f"{run_dir} holds a run of another version of this scale's preset "
            f"({', '.join(exc.changed[:5])}); pass out_dir=<new folder> to reproduce the current "
            "preset, or delete that folder"
        ) from exc


def evaluate_run(run_dir: Path, preset: ScalePreset, wandb: str, threads: int) -> None:
    if (run_dir / EVAL_FILE).is_file():
        return
    overrides = [hydra_override("checkpoint", run_dir / LAST_CHECKPOINT), *preset.evaluate]
    overrides += [f"episodes={preset.eval_episodes}", f"logger.mode={wandb}", f"threads={threads}"]
    evaluate_checkpoint(evaluate_config_from(compose_app(APPS_CONF_DIR, "evaluate", overrides)))


@dataclass(frozen=True)
class RunJob:
    """One run to train and evaluate, as a worker process receives it."""

    spec: RunSpec
    run_dir: Path
    overrides: list[str]
    preset: ScalePreset
    wandb: str
    threads: int  # torch threads of the run's training and evaluation


@dataclass(frozen=True)
class JobOutcome:
    """How one run's job ended, as a worker process reports it."""

    error: str | None = None  # the one-line error of a failed run
    checkpointed: bool = False  # a stop signal ended its training at a checkpoint
    stop_signal: str | None = None  # the stop signal received during the job, if any


def train_and_evaluate(job: RunJob) -> JobOutcome:
    """Train (or resume) and evaluate one run. A stop signal during training ends it at a
    checkpoint of the step in progress; during evaluation, the evaluation finishes first."""
    with stop_requests() as stop:
        try:
            train_run(job.spec, job.run_dir, job.overrides, job.preset.steps)
            if not stop.received:
                evaluate_run(job.run_dir, job.preset, job.wandb, job.threads)
        except USER_ERRORS as exc:
            return JobOutcome(error=str(exc))
        except Interrupted as stopped:
            return JobOutcome(checkpointed=True, stop_signal=stopped.number.name)
    return JobOutcome(stop_signal=stop.received[0].name if stop.received else None)


def jobs_and_threads(requested: int, preset: ScalePreset) -> tuple[int, int]:
    """Runs at once and torch threads per run: the scale's ``train.threads`` (else all cores
    shared by the jobs); ``requested`` 0 = as many runs as the cores hold at those threads."""
    cores = os.cpu_count() or 1
    if requested:
        return requested, preset.threads or max(1, cores // requested)
    threads = preset.threads or cores
    return max(1, cores // threads), threads


def start_worker(threads: int) -> None:
    """A worker between jobs ignores stop signals (its jobs catch them), so a signal never
    kills a worker and breaks the pool."""
    torch.set_num_threads(threads)
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def run_jobs(todo: list[RunJob], jobs: int, threads: int, desc: str) -> dict[str, str]:
    """Every job, ``jobs`` at a time in spawned processes (1: in this process); returns the
    failed runs' folders and their errors. Runs are seeded, so their numbers do not depend
    on ``jobs``. SIGTERM or SIGINT stops the runs in progress at a checkpoint (workers get
    the SIGTERM too), starts no new one and raises ``Interrupted``."""
    failures: dict[str, str] = {}
    outcomes: list[JobOutcome] = []
    progress = tqdm(total=len(todo), desc=desc, unit="run")

    def record(job: RunJob, outcome: JobOutcome) -> None:
        outcomes.append(outcome)
        if outcome.error is not None:
            failures[job.spec.folder] = outcome.error
            print(f"error: {job.spec.folder}: {outcome.error}", file=sys.stderr)
        if not outcome.checkpointed:
            progress.update()

    with stop_requests() as stop:
        if jobs == 1:
            for job in todo:
                record(job, train_and_evaluate(job))
                if stop.received or outcome_signal(outcomes):
                    break
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process holding GL
            with ProcessPoolExecutor(
                jobs,
                mp_context=context,
                initializer=start_pool_worker,
                initargs=(start_worker, threads),
            ) as pool:
                pending = {pool.submit(train_and_evaluate, job): job for job in todo}
                forwarded = False
                while pending:
                    done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(pending.pop(future), future.result())
                    if stop.received or outcome_signal(outcomes):
                        for future in [f for f in pending if f.cancel()]:
                            del pending[future]
                        if stop.received and not forwarded:
                            for child in multiprocessing.active_children():
                                os.kill(child.pid, signal.SIGTERM)
                            forwarded = True
    progress.close()
    name = stop.received[0].name if stop.received else outcome_signal(outcomes)
    if name is not None:
        checkpointed = sum(outcome.checkpointed for outcome in outcomes)
        raise Interrupted(
            f"stopped by {name}: {checkpointed} runs checkpointed in training, "
            f"{len(outcomes) - checkpointed} of {len(todo)} finished or failed; run the same "
            "command again to resume",
            signal.Signals[name],
            handed_over=False,
        )
    return failures


def outcome_signal(outcomes: list[JobOutcome]) -> str | None:
    """The first stop signal a job received (a worker can be signalled directly, as SLURM
    signals every process of a job)."""
    return next((o.stop_signal for o in outcomes if o.stop_signal), None)


def run_sweep(config: ReproduceConfig, preset: ScalePreset, out_dir: Path) -> dict[str, str]:
    """Collect the datasets and train the tokenizers (here, once each), then train and evaluate
    every run (``jobs_and_threads``); returns the failed runs' folders and their errors."""
    data_dir = Path(config.data_dir) if config.data_dir else out_dir / "data"
    name = f"reproduce_{config.paper}_{config.scale}"
    failures: dict[str, str] = {}
    jobs, threads = jobs_and_threads(config.jobs, preset)
    todo: list[RunJob] = []
    for spec in run_specs(preset):
        try:
            overrides = spec.overrides(preset, name, data_dir, config.wandb)
            overrides = ensure_tokenizer(preset, [*overrides, f"train.threads={threads}"])
        except USER_ERRORS as exc:
            failures[spec.folder] = str(exc)
            print(f"error: {spec.folder}: {exc}", file=sys.stderr)
            continue
        run_dir = out_dir / "runs" / spec.folder
        todo.append(RunJob(spec, run_dir, overrides, preset, config.wandb, threads))
    todo.sort(key=lambda job: run_order(preset, job.spec))
    desc = f"reproduce {config.paper} {config.scale}"
    return failures | run_jobs(todo, jobs, threads, desc)


def train_commands(config: ReproduceConfig, preset: ScalePreset, out_dir: Path) -> Path:
    """``<out_dir>/train_commands.sh``: the unfinished runs as torchrun command lines."""
    data_dir = Path(config.data_dir) if config.data_dir else out_dir / "data"
    name = f"reproduce_{config.paper}_{config.scale}"
    lines = [
        "#!/usr/bin/env bash",
        f"# Training runs of: python -m experiments.reproduce paper={config.paper} "
        f"scale={config.scale}. Run them anywhere (GPUS=8 bash train_commands.sh, or one line",
        "# per cluster job), then re-run the reproduce command: it evaluates and reports.",
        "set -euo pipefail",
        "# 1. the datasets, once (the runs would otherwise all collect them at the same time)",
    ]
    first = {}
    for spec in run_specs(preset):
        first.setdefault((spec.task, spec.setting), spec)
    for spec in first.values():
        cfg = compose_app(CONF_DIR, "train", spec.overrides(preset, name, data_dir, config.wandb))
        train_config = train_config_from(cfg)
        lines.append(collect_command(collect_config(train_config)))
        if preset.conv_ae_steps:
            dataset = dataset_path(data_dir, spec.task, spec.setting)
            lines.append(
                f"python -m experiments.train_tokenizer --data {dataset} "
                f"--out {tokenizer_checkpoint(dataset)} "
                f"--steps {preset.conv_ae_steps} --frame-fps {tokenizer_frame_fps(preset):g} "
                f"--held-out-last {train_config.data.val_episodes}"
            )
    lines.append("# 2. the training runs")
    for spec in run_specs(preset):
        run_dir = out_dir / "runs" / spec.folder
        if finished_step(run_dir) == preset.steps:
            continue
        overrides = spec.overrides(preset, name, data_dir, config.wandb)
        if preset.conv_ae_steps:
            dataset = dataset_path(data_dir, spec.task, spec.setting)
            overrides = with_tokenizer(overrides, tokenizer_checkpoint(dataset))
        run = hydra_override("hydra.run.dir", run_dir)
        args = " ".join(shlex.quote(o) for o in [*overrides, run])
        lines.append(f"torchrun --nproc_per_node=${{GPUS:-1}} -m experiments.train {args}")
    return atomic.write_text(out_dir / "train_commands.sh", "\n".join(lines) + "\n")


def reproduce(config: ReproduceConfig) -> Path:
    """Run the whole pipeline; returns the path of ``REPORT.md`` (or of the training
    commands with ``commands_only``)."""
    preset = scale_preset(config.paper, config.scale)
    out_dir = Path(config.out_dir or f"outputs/reproduce/{config.paper}_{config.scale}")
    if config.commands_only:
        return train_commands(config, preset, out_dir)
    started = time.perf_counter()
    failures = run_sweep(config, preset, out_dir)
    summary = aggregate_sweep(out_dir, baseline=preset.baseline, late_step=preset.late)
    runs = summary.run_values
    claims = next_forcing_claims(
        runs, preset.baseline, preset.variants[1], preset.fps, preset.early, preset.late
    )
    seconds = time.perf_counter() - started
    header = claims_header(config, preset, runs, failures, seconds, summary.settings.frame_rates)
    table = f"{header}\n\n{claims_table(claims, config.scale)}\n"
    variant_run = next(
        (
            out_dir / "runs" / spec.folder
            for spec in run_specs(preset)
            if spec.variant == preset.variants[1]
            and (out_dir / "runs" / spec.folder / "config.yaml").is_file()
        ),
        None,
    )
    if variant_run is not None:
        rows = fidelity_rows(
            read_run_config(variant_run),
            preset.steps,
            preset.early,
            preset.late,
            runs,
            preset.baseline,
            preset.variants[1],
        )
        table += f"\n{fidelity_table(rows)}\n"
    return write_report(out_dir, summary, table, wandb_mode=config.wandb)


def claims_header(
    config: ReproduceConfig,
    preset: ScalePreset,
    runs: list[RunValues],
    failures: dict[str, str],
    seconds: float,
    frame_rates: dict[str, str] | None,
) -> str:
    """What was run, how long this invocation took, what failed, the claim steps and what
    each frame rate means (``frame_rates``: the summary's, fps label -> meaning)."""
    jobs, threads = jobs_and_threads(config.jobs, preset)
    lines = [
        f"## Paper claims: {config.paper}, scale `{config.scale}`",
        "",
        f"Command: `{config.command}`; "
        f"this invocation took {seconds / 60:.1f} min, {jobs} run(s) at a time with {threads} "
        "torch thread(s) each (finished runs are reused, so a resumed invocation is shorter). "
        f"Runs used: {len(runs)} of {len(run_specs(preset))} "
        f"({', '.join(preset.variants)} x tasks {', '.join(preset.tasks)} x settings "
        f"{', '.join(preset.settings)} x fps {', '.join(f'{f:g}' for f in preset.fps)} x seeds "
        f"{', '.join(map(str, preset.seeds))}; {preset.steps} steps each). Success in %, "
        "intervals are 95% bootstraps over task-seed pairs; "
        "verdict rules: experiments/results/claims.py. Claim steps as the paper's 5k and 45k "
        f"of 50k: early step {preset.early}, late step {preset.late} of {preset.steps}. "
        f"Frame rates in the paper's units (video fps, {FRAMES_PER_LATENT} video frames per "
        "latent frame): " + "; ".join(frame_rates.values()) + ".",
    ]
    curve = preset.depth_curve
    if curve is not None:
        lines[-1] += (
            f" The depth curve adds {curve.heads} at D = {', '.join(map(str, curve.depths))} on "
            f"{curve.task} {curve.setting} fps {curve.fps:g} x seeds "
            f"{', '.join(map(str, curve.seeds))}."
        )
    lines += [f"- failed: `{folder}`: {error}" for folder, error in failures.items()]
    return "\n".join(lines)


def reproduce_config_from(cfg: DictConfig) -> ReproduceConfig:
    return to_config(cfg, ReproduceConfig)


@exit_on_user_error
def reproduce_app(cfg: DictConfig) -> Path:
    config = reproduce_config_from(cfg)
    written = reproduce(config)
    print(f"{'commands' if config.commands_only else 'report'}: {written}")
    return written


def main(argv: list[str] | None = None) -> None:
    """Not a ``hydra.main`` app: it composes the train and evaluate configs of every run
    itself, which Hydra allows only outside a running app."""
    argv = sys.argv[1:] if argv is None else argv
    check_overrides("reproduce", argv, reproduce_config_from, conf_dir=APPS_CONF_DIR)
    reproduce_app(compose_app(APPS_CONF_DIR, "reproduce", argv))


if __name__ == "__main__":
    main()
