"""The training loop: any model with the contract ``forward(batch, generator) -> (loss, metrics)``.

Determinism and exact resume: nothing in a step depends on state that is not in the
checkpoint. Each step's window draw, chunk size and noise come from generators seeded by
``(seed, step, stream)``; the global batch is split into ``shards = processes x grad_accum``
equal shards, and shard ``j`` draws its noise from stream ``NOISE_STREAM + j``. So a run
killed at any point and resumed from its last checkpoint logs the same numbers as an
uninterrupted one, and 2 processes with ``grad_accum=1`` train exactly like 1 process with
``grad_accum=2`` (same windows, same noise, gradients averaged over the same shards).

Per step ``s`` (1-based): train, log (every ``log_every``), evaluate (every ``eval_every``),
then checkpoint (every ``checkpoint_every`` and at the end). Evaluating before checkpointing
means a checkpoint at ``s`` implies that step ``s``'s evaluation is in ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from worldmodel import atomic
from worldmodel.model.world_model import StepShape
from worldmodel.training.checkpoint import (
    LAST_CHECKPOINT,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from worldmodel.training.config import TrainLoopConfig
from worldmodel.training.distributed import DistInfo, mean_over_processes
from worldmodel.training.optim import lr_factor, make_optimizer, make_scheduler
from worldmodel.training.resume import good_checkpoint, resume_from_hint
from worldmodel.training.run_logger import RunLogger
from worldmodel.training.stop_signals import Interrupted, StopRequests, stop_requests
from worldmodel.training.windows import WindowSet

DATA_STREAM, CHUNK_STREAM, FLOPS_STREAM, NOISE_STREAM = 0, 1, 2, 1000
Evaluate = Callable[[nn.Module, int], Mapping[str, Any]]


class TrainingError(Exception):
    """A run that cannot go on; the message says why and what to do."""


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, step, stream)."""
    state = np.random.SeedSequence([seed, step, stream]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass
class Progress:
    """Counters that continue across resumes."""

    step: int = 0
    samples: int = 0
    flops: float = 0.0
    wall_seconds: float = 0.0
    # metrics summed since the last train/ log line, and how many steps they cover
    pending: dict[str, float] = field(default_factory=dict)
    pending_steps: int = 0


class Trainer:
    """Trains ``model`` on windows of ``train_set``; ``evaluate(model, step)`` returns metrics
    to log (rank 0 only). ``checkpoint_extra`` (config, build info, git) goes into every
    checkpoint."""

    def __init__(
        self,
        model: nn.Module,
        train_set: WindowSet,
        config: TrainLoopConfig,
        *,
        run_dir: str | os.PathLike,
        logger: RunLogger,
        dist: DistInfo,
        seed: int,
        checkpoint_extra: Mapping[str, Any],
        evaluate: Evaluate | None = None,
        eval_every: int = 0,
        progress_bar: bool = True,
    ) -> None:
        self.config = config
        self.dist = dist
        self.shards = dist.world_size * config.grad_accum
        if config.batch_size % self.shards:
            raise TrainingError(
                f"train.batch_size={config.batch_size} is not divisible into {self.shards} "
                f"shards ({dist.world_size} processes x train.grad_accum={config.grad_accum})"
            )
        self.shard_size = config.batch_size // self.shards
        self.module = model.to(dist.device)
        self.model = (
            DistributedDataParallel(
                model, device_ids=[dist.device] if dist.device.type == "cuda" else None
            )
            if dist.distributed
            else model
        )
        self.train_set = train_set
        self.run_dir = Path(run_dir)
        self.logger = logger
        self.seed = seed
        self.checkpoint_extra = dict(checkpoint_extra)
        self.evaluate = evaluate
        self.eval_every = eval_every
        self.progress_bar = progress_bar and dist.is_main
        self.optimizer = make_optimizer(self.module, config)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.progress = Progress()
        self.autocast_dtype = self._autocast_dtype()
        self.flops_per_sample = self._measure_flops_per_sample()

    # ------------------------------------------------------------------ setup
    def _autocast_dtype(self) -> torch.dtype | None:
        precision, device = self.config.precision, self.dist.device
        if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
            return torch.bfloat16
        return None

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.autocast_dtype)

    def _batch(self, ids: Tensor, shape: StepShape) -> dict[str, Any]:
        batch = {k: v.to(self.dist.device) for k, v in self.train_set.batch(ids).items()}
        batch["step_shape"] = shape
        return batch

    def _measure_flops_per_sample(self) -> float:
        """Forward + backward FLOPs of one window (an estimate: counted once, at the inference
        chunk size K and attention window).

        Runs before any RNG is seeded or restored, and leaves no gradients behind."""
        batch = self._batch(torch.zeros(1, dtype=torch.long), self.module.inference_shape)
        with FlopCounterMode(display=False) as counter, self._autocast():
            loss, _ = self.module(batch, generator=step_generator(self.seed, 0, FLOPS_STREAM))
            loss.backward()
        self.module.zero_grad(set_to_none=True)
        return float(counter.get_total_flops())

    # ------------------------------------------------------------------ checkpoints
    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / LAST_CHECKPOINT

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Continue from a checkpoint dict (``load_checkpoint``) with this trainer's learning
        rate schedule, betas and weight decay: a fork may change them, a resume does not."""
        self.module.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
        self.progress = Progress(**payload["progress"])
        configured = make_optimizer(self.module, self.config).param_groups
        lr = self.config.lr * lr_factor(self.scheduler.last_epoch, self.config)
        for group, fresh in zip(self.optimizer.param_groups, configured, strict=True):
            group.update(weight_decay=fresh["weight_decay"], betas=fresh["betas"])
            group.update(initial_lr=self.config.lr, lr=lr)
        self.scheduler.base_lrs = [self.config.lr] * len(configured)
        self.scheduler._last_lr = [lr] * len(configured)  # what get_last_lr() reports

    def save(self) -> Path:
        payload = {
            **self.checkpoint_extra,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "step": self.progress.step,
            "progress": asdict(self.progress),
        }
        path = save_checkpoint(self.last_checkpoint, payload)
        if self.config.keep_checkpoints:
            kept = self.run_dir / f"step_{self.progress.step:07d}.pt"
            atomic.copy(path, kept)  # a file of its own: damaging one leaves the other
        return path

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> dict[str, float]:
        """Optimizer step ``step`` (1-based); returns the step's metrics (mean over shards)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        ids = self.train_set.sample(
            self.config.batch_size, step_generator(self.seed, step, DATA_STREAM)
        )
        shape = self.module.draw_step_shape(step_generator(self.seed, step, CHUNK_STREAM))
        accum = self.config.grad_accum
        totals: dict[str, float] = {}
        for a in range(accum):
            shard = self.dist.rank * accum + a
            batch = self._batch(ids[shard * self.shard_size : (shard + 1) * self.shard_size], shape)
            sync = a == accum - 1 or not self.dist.distributed
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with self._autocast():
                    loss, metrics = self.model(
                        batch, generator=step_generator(self.seed, step, NOISE_STREAM + shard)
                    )
                (loss / accum).backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value / accum
        keys = sorted(totals)
        means = mean_over_processes(
            torch.tensor([totals[k] for k in keys], dtype=torch.float64, device=self.dist.device),
            self.dist,
        ).tolist()
        metrics = dict(zip(keys, means, strict=True))
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip))
        metrics["grad_norm"] = grad_norm
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        if not all(math.isfinite(v) for v in metrics.values()):
            bad = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not math.isfinite(v))
            raise TrainingError(
                f"non-finite training values at step {step} ({bad}); {self._after_divergence(step)}"
            )
        self.optimizer.step()
        self.scheduler.step()
        return metrics

    def _after_divergence(self, step: int) -> str:
        """What to do after non-finite values at ``step``: fork the last good checkpoint with a
        lower learning rate (into a new folder: Hydra names it after the changed key)."""
        lower = f"train.lr={self.config.lr / 10:.3g}"
        forked = self.checkpoint_extra.get("forked_from")
        good = good_checkpoint(self.run_dir, step, Path(forked["checkpoint"]) if forked else None)
        if good is None:
            return f"no good checkpoint yet: start again with {lower} or more train.warmup_steps"
        path, good_step = good
        return (
            f"the last good checkpoint is {path} (step {good_step}); continue from it with a "
            f"lower learning rate: the same command with {lower} {resume_from_hint(path)}"
        )

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Progress:
        """Train to ``config.steps`` from wherever ``progress`` stands. SIGTERM or SIGINT
        (preemption, ``kill``, Ctrl-C) ends the loop after the step in progress, with a
        checkpoint of it: ``Interrupted``."""
        config, progress = self.config, self.progress
        if progress.step == 0:
            self._maybe_evaluate(0)
        bar = tqdm(
            total=config.steps,
            initial=progress.step,
            desc="train",
            unit="step",
            disable=not self.progress_bar,
            dynamic_ncols=True,
        )
        last_log_time, last_log_samples = time.perf_counter(), progress.samples
        with stop_requests() as stop:
            while progress.step < config.steps:
                started = time.perf_counter()
                step = progress.step + 1
                metrics = self.train_step(step)
                progress.step = step
                progress.samples += config.batch_size
                progress.flops += self.flops_per_sample * config.batch_size
                progress.wall_seconds += time.perf_counter() - started
                for key, value in metrics.items():
                    progress.pending[key] = progress.pending.get(key, 0.0) + value
                progress.pending_steps += 1
                bar.update(1)
                if step % config.log_every == 0 or step == config.steps:
                    now = time.perf_counter()
                    rate = (progress.samples - last_log_samples) / max(now - last_log_time, 1e-9)
                    last_log_time, last_log_samples = now, progress.samples
                    self._log_train(rate)
                    bar.set_postfix(
                        loss=f"{metrics['loss/total']:.4f}",
                        samples_per_s=f"{rate:.0f}",
                        refresh=False,
                    )
                if (self.eval_every and step % self.eval_every == 0) or step == config.steps:
                    self._maybe_evaluate(step)
                saved = step % config.checkpoint_every == 0 or step == config.steps
                if saved and self.dist.is_main:
                    self.save()
                if stop.received:
                    bar.close()
                    self._stop(stop, saved)
        bar.close()
        return progress

    def _stop(self, stop: StopRequests, saved: bool) -> None:
        """Checkpoint the step just finished (unless ``saved``) and raise ``Interrupted``."""
        if not saved and self.dist.is_main:
            self.save()
        number = stop.received[0]
        handed_over = stop.owner(number) is not None
        then = (
            "handed to the job scheduler's handler, which requeues the job to resume from it"
            if handed_over
            else "run the same command again to resume"
        )
        raise Interrupted(
            f"stopped by {number.name} after step {self.progress.step} of {self.config.steps}: "
            f"checkpoint {self.last_checkpoint} written; {then}",
            number,
            handed_over,
        )

    def _axes(self) -> dict[str, float]:
        p = self.progress
        return {
            "perf/samples": p.samples,
            "perf/flops": p.flops,
            "perf/wall_seconds": p.wall_seconds,
        }

    def _log_train(self, samples_per_second: float) -> None:
        p = self.progress
        row = {f"train/{k}": v / p.pending_steps for k, v in sorted(p.pending.items())}
        row["perf/samples_per_second"] = samples_per_second
        self.logger.log({**row, **self._axes()}, p.step)
        p.pending, p.pending_steps = {}, 0

    def _maybe_evaluate(self, step: int) -> None:
        if self.evaluate is not None and self.dist.is_main:
            started = time.perf_counter()
            results = dict(self.evaluate(self.module, step))
            results["perf/eval_seconds"] = time.perf_counter() - started
            self.logger.log({**results, **self._axes()}, step)
