"""Synthetic run folders as ``python -m experiments.train`` and ``experiments.evaluate`` write
them (``config.yaml``, ``run.json``, ``metrics.jsonl``, ``last.pt``, ``eval.json``), with the
numbers a test chooses: success and validation-loss curves, final closed-loop successes,
drift level and inference speed. ``eval.json`` is built with the evaluation's own result
classes (``ClosedLoopResult``, ``DriftResult``), so its schema is the real one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from experiments.results.aggregate import aggregate_sweep
from experiments.results.entries import RunValues
from experiments.results.run_folders import AGGREGATE_DIR
from experiments.results.summary import SUMMARY_FILE, Summary
from worldmodel.evaluation.closed_loop import ClosedLoopResult, EpisodeResult
from worldmodel.evaluation.drift import DriftConfig, DriftResult

COMMIT = "3f1c2a9d8b7e6f5a4c3b2a1908f7e6d5c4b3a291"
HORIZON = 4
DRIFT_EPISODES = 3


@dataclass
class RunSpec:
    """One run; the curves hold one value per evaluation step 0, eval_every, ..., steps."""

    variant: str = "single_step"
    task: str = "press_button"
    setting: str = "clean"
    fps: float = 50.0
    seed: int = 0
    steps: int = 400
    eval_every: int = 100
    log_every: int = 20
    episodes: int = 10  # closed-loop episodes, periodic and final
    success: Sequence[float] | None = None  # eval/success_rate per evaluation step (rounded
    # to whole successes of ``episodes``)
    val_loss: Sequence[float] | None = None  # val/loss_video_h1 per evaluation step
    final_successes: int = 5  # of ``episodes`` in eval.json's closed_loop.model
    drift_level: float = 0.1  # latent MSE at horizon h is about drift_level * h
    chunks_per_second: float = 8.0  # standard inference
    mcp_parallel_speedup: float = 1.9
    flops_per_step: float = 1.2e9  # training cost (wall-clock follows it)
    mcp_depth: int = 3  # D of every variant but single_step
    last_step: int | None = None  # last training step logged; None = finished
    with_eval: bool = True
    cut_last_line: bool = False  # a final metrics line cut short by a kill
    commit: str = COMMIT
    dirty: bool = False
    versions: dict[str, str] = field(
        default_factory=lambda: {"python": "3.12.3", "torch": "2.13.0", "mujoco": "3.3.0"}
    )
    extra_overrides: list[str] = field(default_factory=list)
    config_changes: dict[str, object] = field(default_factory=dict)  # dotted key -> value

    @property
    def heads(self) -> str:
        return self.variant.split(",")[0]

    @property
    def heads_mcp_depth(self) -> int:
        return 0 if self.heads == "single_step" else self.mcp_depth

    @property
    def eval_steps(self) -> list[int]:
        return list(range(0, self.steps + 1, self.eval_every))

    @property
    def dirname(self) -> str:
        overrides = [f"fps={self.fps:g}", f"heads={self.heads}", f"seed={self.seed}"]
        overrides += [f"task={self.task}", *self.extra_overrides]
        return ",".join(sorted(overrides))


def write_run(sweep_dir: Path, spec: RunSpec) -> Path:
    """Write the run folder of ``spec`` under ``sweep_dir``; returns its path."""
    folder = Path(sweep_dir) / spec.dirname
    (folder / ".hydra").mkdir(parents=True)
    config = _config(spec)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))  # as Hydra does
    overrides = spec.dirname.split(",") + ["experiment=test_sweep"]
    info = {
        "git": {"commit": spec.commit, "dirty": spec.dirty},
        "versions": spec.versions,
        "argv": ["experiments/train.py", "-m", "experiment=test_sweep"],
        "heads": spec.heads,
        "variant": spec.variant,
        "overrides": overrides,
    }
    (folder / "run.json").write_text(json.dumps(info, indent=2))
    lines = [json.dumps(row) for row in _metrics(spec)]
    if spec.cut_last_line:
        lines.append(lines[-1][: len(lines[-1]) // 2])
    (folder / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines))
    (folder / "last.pt").write_bytes(b"checkpoint placeholder")
    if spec.with_eval and spec.last_step is None:
        (folder / "eval.json").write_text(json.dumps(eval_json(spec, folder), indent=2))
    return folder


def depth_specs(
    successes: dict[int, tuple[int, ...]], heads: str = "next_forcing"
) -> list[RunSpec]:
    """D=0 is the baseline; D >= 1 are runs of chained ``heads`` told apart by
    heads.mcp_depth."""
    return [
        RunSpec(
            variant="single_step" if depth == 0 else f"{heads},d{depth}",
            seed=seed,
            final_successes=count,
            mcp_depth=depth,
            extra_overrides=[] if depth == 0 else [f"heads.mcp_depth={depth}"],
        )
        for depth, counts in successes.items()
        for seed, count in enumerate(counts)
    ]


def claim_runs(sweep_dir: Path) -> list[RunValues]:
    """The sweep aggregated, and its runs as the claims read them: back from summary.json."""
    aggregate_sweep(sweep_dir)
    summary = Summary.load(Path(sweep_dir) / AGGREGATE_DIR / SUMMARY_FILE)
    return summary.run_values


def write_sweep(sweep_dir: Path, specs: Sequence[RunSpec]) -> list[Path]:
    return [write_run(sweep_dir, spec) for spec in specs]


def _config(spec: RunSpec) -> dict:
    config = _base_config(spec)
    for dotted, value in spec.config_changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def _base_config(spec: RunSpec) -> dict:
    return {
        "task": {"name": spec.task, "setting": spec.setting},
        "data": {"dir": "data", "episodes": 50, "val_episodes": 5, "window_frames": 8},
        "tokenizer": {"name": "patch", "patch": 8},
        "model": {
            "dim": 64,
            "num_blocks": 4,
            "heads": 4,
            "K": 2,
            "loss_weighting": "table",
            "noisy_history_max_u": 0.5,
            "noisy_history_shift": None,
        },
        "heads": {
            "kind": "none" if spec.heads_mcp_depth == 0 else "mcp",
            "mcp_depth": spec.heads_mcp_depth,
            "target_positions": True,
            "fusion_spread": "reference",
        },
        "train": {"steps": spec.steps, "batch_size": 8, "lr": 3e-4, "log_every": spec.log_every},
        "eval": {"every": spec.eval_every, "closed_loop": True, "episodes": spec.episodes},
        "logger": {"mode": "offline", "project": "worldmodel-bench"},
        "name": "test_sweep",
        "fps": spec.fps,
        "frames_per_latent": 4,
        "seed": spec.seed,
        "resume": True,
    }


def _metrics(spec: RunSpec) -> list[dict]:
    last = spec.steps if spec.last_step is None else spec.last_step
    evals = spec.eval_steps
    success = spec.success or np.linspace(0.0, 0.5, len(evals)).tolist()
    loss = spec.val_loss or np.linspace(1.0, 0.5, len(evals)).tolist()
    rows = []
    for step in range(0, last + 1):
        if step and step % spec.log_every == 0:
            rows.append(_train_row(spec, step))
        if step in evals:
            i = evals.index(step)
            rows.append(_eval_row(spec, step, success[i], loss[i]))
    return rows


def _train_row(spec: RunSpec, step: int) -> dict:
    video = 1.0 / (1.0 + step / 100)
    row = {"step": step, "train/loss/video": video, "train/loss/action": 0.5 * video}
    mcp = {f"train/loss/mcp{k}": video * (1 + 0.2 * k) for k in range(1, spec.heads_mcp_depth + 1)}
    total = 1.5 * video + sum(w * v for w, v in zip((0.5, 0.2, 0.1), mcp.values(), strict=False))
    return (
        row
        | mcp
        | {
            "train/loss/total": total,
            "train/grad_norm": 0.8,
            "train/lr": 3e-4,
            **_budgets(spec, step),
            "perf/samples_per_second": 160.0,
        }
    )


def _budgets(spec: RunSpec, step: int) -> dict:
    """The running training budgets the trainer logs on train and eval rows alike."""
    return {
        "perf/samples": step * 8,
        "perf/flops": step * spec.flops_per_step,
        "perf/wall_seconds": step * spec.flops_per_step / 2.4e10,
    }


def _eval_row(spec: RunSpec, step: int, success: float, loss: float) -> dict:
    heads = {
        f"val/loss_video_h{k + 1}": loss * (1 + 0.2 * k) for k in range(1, spec.heads_mcp_depth + 1)
    }
    successes = round(success * spec.episodes)
    return {
        "step": step,
        "val/loss_video_h1": loss,
        "val/loss_action": 0.5 * loss,
        "val/loss_total": 1.5 * loss + sum(heads.values()),
        **heads,
        "eval/success_rate": successes / spec.episodes,
        "eval/successes": successes,
        "eval/episodes": spec.episodes,
        **_budgets(spec, step),
    }


def _closed_loop(spec: RunSpec, successes: int, chunks_per_second: float) -> dict:
    episodes = [
        EpisodeResult(
            seed=1000 + i,
            success=i < successes,
            first_success_step=120 + i if i < successes else -1,
            progress=1.0 if i < successes else 0.5,
            steps=120 + i if i < successes else 300,
            chunks=15 if i < successes else 38,
            wall_seconds=4.0,
            policy_seconds=(15 if i < successes else 38) / chunks_per_second,
            passes={"backbone": 22 * 15, "head": 0, "video": 10 * 15},
        )
        for i in range(spec.episodes)
    ]
    return ClosedLoopResult(spec.task, spec.setting, episodes).to_dict()


def _drift(spec: RunSpec, level: float) -> dict:
    h = np.arange(1, HORIZON + 1)
    spread = np.linspace(0.9, 1.1, DRIFT_EPISODES)[:, None]  # (E, 1)
    latent = level * h[None, :] * spread  # (E, H)
    curves = {
        "teacher_forced": {"latent_mse": latent * 0.5, "action_mse": latent * 0.1},
        "open_loop": {"latent_mse": latent, "psnr": 30.0 - 10 * latent},
        "autoregressive": {"latent_mse": latent * 1.5, "action_mse": latent * 0.3},
    }
    return DriftResult(DriftConfig(horizon=HORIZON), curves).to_dict()


def eval_json(spec: RunSpec, folder: Path) -> dict:
    """``eval.json`` of a finished run (schema_version 1)."""
    standard = spec.chunks_per_second
    parallel = standard * spec.mcp_parallel_speedup
    closed_loop = {
        "model": _closed_loop(spec, spec.final_successes, standard),
        "expert": _closed_loop(spec, spec.episodes, 1000.0),
        "hold": _closed_loop(spec, 0, 5000.0),
        "random": _closed_loop(spec, 1, 5000.0),
    }
    drift = {"standard": _drift(spec, spec.drift_level)}
    speed: dict = {
        "standard": {
            "chunks_per_second": standard,
            "control_steps_per_second": standard * 8,
            "passes_per_chunk": {"backbone": 22.0, "head": 0.0, "video": 10.0},
        },
        "mcp_parallel_speedup": None,
    }
    if spec.heads_mcp_depth:
        closed_loop["model_mcp_parallel"] = _closed_loop(spec, spec.final_successes, parallel)
        drift["mcp_parallel"] = _drift(spec, spec.drift_level * 1.2)
        drift["heads_dropped"] = _drift(spec, spec.drift_level)
        speed["mcp_parallel"] = {
            "chunks_per_second": parallel,
            "control_steps_per_second": parallel * 8,
            "passes_per_chunk": {"backbone": 11.0, "head": 11.0, "video": 10.0},
        }
        speed["mcp_parallel_speedup"] = spec.mcp_parallel_speedup
    return {
        "schema_version": 1,
        "checkpoint": str(folder / "last.pt"),
        "step": spec.steps,
        "run": {
            "name": "test_sweep",
            "task": spec.task,
            "setting": spec.setting,
            "heads": spec.heads,
            "variant": spec.variant,
            "fps": spec.fps,
            "seed": spec.seed,
            "git": {"commit": spec.commit, "dirty": spec.dirty},
        },
        "closed_loop": closed_loop,
        "drift": drift,
        "speed": speed,
        "files": {"figures": [], "videos": []},
    }
