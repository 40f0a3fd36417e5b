"""Training throughput: the full train app against a bare loop with the same model and batch.

``python -m experiments.bench train --model tiny --heads single_step`` (through
``experiments.bench``). Per repeat, bare then app, so machine load hits both alike:

- bare loop: the app's model (same ``ModelConfig`` and ``HeadsConfig``, data-derived keys
  included) on one synthetic batch of the app's window shape, already in memory; AdamW
  forward, backward and step, nothing else.
- app: ``experiments.train.run_training`` on a real tiny press_button dataset (``data=tiny``:
  head camera 32x32, patch tokenizer), composed from ``conf/train.yaml`` as
  ``python -m experiments.train`` does: wandb offline plus ``metrics.jsonl``, the default
  log, checkpoint and evaluation cadence, no progress bar. Its rates are read back from its
  own ``metrics.jsonl``; its end-to-end time is the whole ``run_training`` call.

Warm-up, excluded from both, is the app's first log window (``train.log_every`` steps).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.bench.model import BenchShape, bare_train_step, synthetic_batch, timed_steps
from experiments.cli import CONF_DIR
from experiments.collect import ensure_dataset
from experiments.config.train import TrainConfig
from experiments.train import model_config_for, run_training, train_config_from
from worldmodel.command_line import hydra_override
from worldmodel.heads import WorldModelWithHeads
from worldmodel.heads.config import HeadsConfig
from worldmodel.model import ModelConfig
from worldmodel.training.build import RunBuild
from worldmodel.training.checkpoint import LAST_CHECKPOINT, load_checkpoint
from worldmodel.training.distributed import init_distributed
from worldmodel.training.provenance import git_state
from worldmodel.training.run_logger import METRICS_FILE, read_metrics

TARGET = 0.9  # the app's training loop must reach this fraction of the bare loop's samples/s
APP_OVERRIDES = (
    "task=press_button",
    "data=tiny",
    "logger=offline",
    "logger.progress=false",
    "data.auto_collect=true",
)
LOOPS = {  # result key -> table label
    "bare": "bare loop: synthetic batch in memory, AdamW forward/backward/step",
    "app_loop": "app, training loop (`perf/samples_per_second` rows after warm-up)",
    "app_steps": "app, train steps only (`perf/samples` / `perf/wall_seconds` after warm-up)",
    "app_end_to_end": "app, end to end (all samples / whole `run_training` call)",
}


@dataclass(frozen=True)
class TrainBenchSpec:
    """What one ``bench train`` run measures."""

    model: str = "tiny"  # model size preset (worldmodel/presets/model)
    heads: str = "single_step"  # heads preset (worldmodel/presets/heads)
    steps: int = 100  # timed optimizer steps per measurement, after the warm-up
    batch_size: int = 8
    repeats: int = 3  # bare/app pairs, interleaved
    device: str = "cpu"
    threads: int = 0  # torch CPU threads of both loops (train.threads); 0 = torch's default

    def overrides(self, data_dir: Path, steps: int | None = None) -> list[str]:
        """The app's command-line overrides (``train.steps`` only when given)."""
        return [
            *APP_OVERRIDES,
            f"model={self.model}",
            f"heads={self.heads}",
            f"train.batch_size={self.batch_size}",
            f"train.device={self.device}",
            f"train.threads={self.threads}",
            hydra_override("data.dir", data_dir),
            hydra_override("data.cache_dir", data_dir / "latents"),
            *([] if steps is None else [f"train.steps={steps}"]),
        ]


@dataclass
class AppRun:
    """One ``run_training`` call, read back from its ``metrics.jsonl``."""

    rates: dict[str, float]  # samples/s: app_loop, app_steps, app_end_to_end
    wall_seconds: float  # the whole call: start-up, evaluations, checkpoints, wandb
    eval_seconds: float  # all evaluations of the run (step 0 and the last step)


def compose_app(overrides: list[str]) -> tuple[TrainConfig, dict]:
    """The checked config and the resolved dict that ``python -m experiments.train`` passes on."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return train_config_from(cfg), OmegaConf.to_container(cfg, resolve=True)


def bare_samples_per_second(
    model_config: ModelConfig,
    heads: HeadsConfig,
    shape: BenchShape,
    warmup: int,
    steps: int,
    device: torch.device,
) -> float:
    """Samples/s of ``steps`` bare optimizer steps on a fresh model, after ``warmup`` steps."""
    model = WorldModelWithHeads(model_config, heads).to(device)
    train_step = bare_train_step(model, synthetic_batch(shape, device), device)

    for _ in range(warmup):
        train_step()
    return shape.batch * steps / timed_steps(train_step, steps, device)


def loop_rate(rows: list[dict]) -> float:
    """Samples/s over the log windows after ``rows[0]``: row i's window trained
    ``perf/samples`` growth samples at its ``perf/samples_per_second``."""
    samples = [b["perf/samples"] - a["perf/samples"] for a, b in pairwise(rows)]
    seconds = [n / row["perf/samples_per_second"] for n, row in zip(samples, rows[1:], strict=True)]
    return sum(samples) / sum(seconds)


def step_rate(rows: list[dict]) -> float:
    """Samples/s of train-step time alone (``perf/wall_seconds``) from ``rows[0]`` to the end."""
    first, last = rows[0], rows[-1]
    return (last["perf/samples"] - first["perf/samples"]) / (
        last["perf/wall_seconds"] - first["perf/wall_seconds"]
    )


def app_run(
    spec: TrainBenchSpec,
    config: TrainConfig,
    resolved: dict,
    overrides: list[str],
    run_dir: Path,
    warmup: int,
) -> AppRun:
    """Time one ``run_training`` call into ``run_dir``; rates from the log rows after warm-up."""
    begin = time.perf_counter()
    progress = run_training(config, run_dir, resolved, spec.heads, overrides)
    wall = time.perf_counter() - begin
    rows = read_metrics(run_dir / METRICS_FILE)
    timed = [r for r in rows if "perf/samples_per_second" in r and r["step"] >= warmup]
    rates = {
        "app_loop": loop_rate(timed),
        "app_steps": step_rate(timed),
        "app_end_to_end": progress.samples / wall,
    }
    eval_seconds = sum(r["perf/eval_seconds"] for r in rows if "perf/eval_seconds" in r)
    return AppRun(rates, wall, eval_seconds)


def check_same_model(run_dir: Path, model: ModelConfig, heads: HeadsConfig) -> None:
    """Raise unless the app's checkpoint was built from the bare loop's model and heads."""
    build = RunBuild.from_dict(load_checkpoint(run_dir / LAST_CHECKPOINT)["build"])
    if (build.model, build.heads) != (model, heads):
        raise RuntimeError(
            f"the bare loop's model ({model}, {heads}) is not the app's "
            f"({build.model}, {build.heads})"
        )


def machine() -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU, torch version and the code's commit."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpus = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {
        "cpu": cpus[0] if cpus else platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        **git_state(),
    }


def run_train_bench(spec: TrainBenchSpec, data_dir: Path, runs_dir: Path) -> dict[str, Any]:
    """Interleaved bare/app measurements; the dataset is collected into ``data_dir`` when
    missing, each app run writes (and then removes) a folder under ``runs_dir``."""
    load_before = os.getloadavg()
    if spec.threads:
        torch.set_num_threads(spec.threads)  # what run_training does with train.threads
    warmup = compose_app(spec.overrides(data_dir))[0].train.log_every
    overrides = spec.overrides(data_dir, steps=warmup + spec.steps)
    config, resolved = compose_app(overrides)
    dataset = ensure_dataset(config, init_distributed(config.train.device))
    tokenizer = config.tokenizer.build(config.data.cameras, config.data.image_size)
    model = model_config_for(config, dataset, tokenizer)
    shape = BenchShape(
        size=spec.model,
        batch=spec.batch_size,
        num_chunks=config.data.window_frames // model.K,
        K=model.K,
        tokens_per_frame=model.tokens_per_frame,
        latent_dim=model.latent_dim,
        actions_per_frame=model.actions_per_frame,
    )
    device = torch.device(spec.device)
    rates: dict[str, list[float]] = {key: [] for key in LOOPS}
    wall, evals = [], []
    for repeat in range(spec.repeats):
        rates["bare"].append(
            bare_samples_per_second(model, config.heads, shape, warmup, spec.steps, device)
        )
        run_dir = runs_dir / f"run_{repeat}"
        app = app_run(spec, config, resolved, overrides, run_dir, warmup)
        check_same_model(run_dir, model, config.heads)
        shutil.rmtree(run_dir)
        for key, value in app.rates.items():
            rates[key].append(value)
        wall.append(app.wall_seconds)
        evals.append(app.eval_seconds)
    medians = {key: statistics.median(values) for key, values in rates.items()}
    ratio = medians["app_loop"] / medians["bare"]
    return {
        "spec": asdict(spec),
        "warmup_steps": warmup,
        "shape": asdict(shape),
        "model_config": asdict(model),
        "params": sum(p.numel() for p in WorldModelWithHeads(model, config.heads).parameters()),
        "samples_per_second": rates,
        "median_samples_per_second": medians,
        "app_wall_seconds": wall,
        "app_eval_seconds": evals,
        "ratio": ratio,
        "target": TARGET,
        "meets_target": ratio >= TARGET,
        "machine": machine(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def train_table(result: dict[str, Any]) -> str:
    """The result as a markdown table with a header line for BENCHMARKS.md."""
    spec, shape, model = result["spec"], result["shape"], result["model_config"]
    host, load = result["machine"], result["load_average"]
    medians, bare = result["median_samples_per_second"], result["median_samples_per_second"]["bare"]
    rows = [
        f"| {label} | {medians[key]:.3g} | {medians[key] / bare:.2f} | "
        + ", ".join(f"{v:.3g}" for v in result["samples_per_second"][key])
        + " |"
        for key, label in LOOPS.items()
    ]
    verdict = "met" if result["meets_target"] else "NOT met"
    return "\n".join(
        [
            f"model {spec['model']} ({result['params'] / 1e6:.2f}M params), heads {spec['heads']}, "
            f"batch {shape['batch']}, window {shape['num_chunks']} chunks x K={shape['K']} frames "
            f"x N={shape['tokens_per_frame']} tokens x C={shape['latent_dim']}, "
            f"{shape['actions_per_frame']} x {model['action_dim']} actions per frame; "
            f"{spec['steps']} timed steps after {result['warmup_steps']} warm-up, "
            f"median of {spec['repeats']} interleaved repeats, device {spec['device']}, "
            f"{host['torch_threads']} torch threads",
            f"machine: {host['cpu']}, {host['nproc']} cores"
            + (f", {host['gpu']}" if host["gpu"] else "")
            + f", torch {host['torch']}, commit {host['commit'][:7]}"
            + (" (dirty)" if host["dirty"] else "")
            + f"; load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after",
            "",
            "| loop | samples/s | vs bare loop | per repeat |",
            "|---|---:|---:|---|",
            *rows,
            "",
            f"app training loop / bare loop = {result['ratio']:.2f} "
            f"(target >= {result['target']}: {verdict}); app end to end "
            f"{statistics.median(result['app_wall_seconds']):.1f} s for "
            f"{result['warmup_steps'] + spec['steps']} steps, of which evaluation "
            f"{statistics.median(result['app_eval_seconds']):.1f} s (median)",
        ]
    )
