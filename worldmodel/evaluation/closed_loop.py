"""Closed-loop task success: a policy acts in the MuJoCo env on seeds; count the successes.

Each episode: ``env.reset(seed=seed)``, ``policy.reset(obs, seed)``, then act / execute /
observe chunks (protocol in ``worldmodel/evaluation/policies.py``) until the task succeeds
(the env terminates at the first success) or the step limit truncates it. Episodes run in
this process (``workers=1``) or in spawned worker processes, each building its own env and
policy with ``policy_factory(env)``; a policy seeds its randomness from the episode seed, so
per-seed outcomes do not depend on the number of workers.

Speed: ``steps_per_second`` and ``chunks_per_second`` are the control steps (chunks) of all
episodes divided by the time spent inside ``policy.act`` and ``policy.observe``, summed over
episodes: the policy's own speed, without physics and rendering (``wall_seconds`` has all).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from envs.env import ACTION_DIM, TabletopEnv
from worldmodel.data.episodes import DatasetError, EpisodeFile
from worldmodel.evaluation.policies import Policy
from worldmodel.evaluation.statistics import wilson_interval
from worldmodel.media import tile_cameras

CONFIDENCE = 0.95  # of the Wilson interval of the success rate

PolicyFactory = Callable[[TabletopEnv], Policy]


@dataclass
class EpisodeResult:
    """One closed-loop episode."""

    seed: int
    success: bool
    first_success_step: int  # control steps until the first success; -1 if never
    progress: float  # the highest info["progress"] of the episode, reset state included
    steps: int  # control steps executed
    chunks: int  # calls of policy.act
    wall_seconds: float  # the whole episode: physics, rendering and policy
    policy_seconds: float  # inside policy.act and policy.observe
    passes: dict[str, int] = field(default_factory=dict)  # the policy's pass totals, if any
    frames: np.ndarray | None = None  # (steps + 1, H, W * cameras, 3) uint8, record_seeds only

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (without the frames)."""
        return {k: v for k, v in asdict(self).items() if k != "frames"}


@dataclass
class ClosedLoopResult:
    """Episodes of one (task, setting) sorted by seed, and their summary statistics."""

    task: str
    setting: str
    episodes: list[EpisodeResult]

    @property
    def n(self) -> int:
        return len(self.episodes)

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return self.successes / self.n

    @property
    def mean_progress(self) -> float:
        """Mean over episodes of the highest task progress each reached (1 for a success)."""
        return sum(e.progress for e in self.episodes) / self.n

    @property
    def wilson(self) -> tuple[float, float]:
        """Wilson score interval (low, high) of the success rate at ``CONFIDENCE``."""
        return wilson_interval(self.successes, self.n, CONFIDENCE)

    @property
    def steps_per_second(self) -> float:
        return sum(e.steps for e in self.episodes) / self._policy_seconds()

    @property
    def chunks_per_second(self) -> float:
        return sum(e.chunks for e in self.episodes) / self._policy_seconds()

    @property
    def passes_per_chunk(self) -> dict[str, float]:
        """Network passes per chunk by kind, over all episodes (empty if none counted)."""
        chunks = sum(e.chunks for e in self.episodes)
        kinds = sorted({kind for e in self.episodes for kind in e.passes})
        return {k: sum(e.passes.get(k, 0) for e in self.episodes) / chunks for k in kinds}

    def _policy_seconds(self) -> float:
        return sum(e.policy_seconds for e in self.episodes)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.wilson
        return {
            "task": self.task,
            "setting": self.setting,
            "n": self.n,
            "successes": self.successes,
            "success_rate": self.success_rate,
            "wilson_low": low,
            "wilson_high": high,
            "confidence": CONFIDENCE,
            "mean_progress": self.mean_progress,
            "steps_per_second": self.steps_per_second,
            "chunks_per_second": self.chunks_per_second,
            "passes_per_chunk": self.passes_per_chunk,
            "episodes": [e.to_dict() for e in self.episodes],
        }


def run_episode(env: TabletopEnv, policy: Policy, seed: int, record: bool = False) -> EpisodeResult:
    """One episode from ``env.reset(seed=seed)`` until success or the env's step limit."""
    start = time.perf_counter()
    obs, info = env.reset(seed=seed)
    policy.reset(obs, seed)
    progress = info["progress"]
    frames = [tile_cameras(obs["images"])] if record else []
    policy_seconds, chunks, done = 0.0, 0, False
    while not done:
        tic = time.perf_counter()
        chunk = np.asarray(policy.act(obs))
        policy_seconds += time.perf_counter() - tic
        if chunk.ndim != 2 or chunk.shape[0] < 1 or chunk.shape[1] != ACTION_DIM:
            raise ValueError(
                f"policy.act returned shape {chunk.shape}; expected (n >= 1, {ACTION_DIM})"
            )
        seen = [obs]
        for action in chunk:
            obs, _, terminated, truncated, info = env.step(action)
            progress = max(progress, info["progress"])
            seen.append(obs)
            if record:
                frames.append(tile_cameras(obs["images"]))
            done = terminated or truncated
            if done:
                break
        chunks += 1
        if not done:
            tic = time.perf_counter()
            policy.observe(seen)
            policy_seconds += time.perf_counter() - tic
    return EpisodeResult(
        seed=seed,
        success=bool(info["success"]),
        first_success_step=int(info["first_success_step"]),
        progress=float(progress),
        steps=env.steps,
        chunks=chunks,
        wall_seconds=time.perf_counter() - start,
        policy_seconds=policy_seconds,
        passes=dict(getattr(policy, "passes", {})),
        frames=np.stack(frames) if record else None,
    )


# ---------------------------------------------------------------- worker processes
@dataclass(frozen=True)
class _Job:
    """What a worker needs to build its env and policy."""

    policy_factory: PolicyFactory
    task: str
    setting: str
    cameras: tuple[str, ...]
    image_size: tuple[int, int]
    max_steps: int | None
    record_seeds: frozenset[int]
    torch_threads: int | None  # set in spawned workers, so they do not oversubscribe the cores


_WORKER: dict[str, Any] = {}


def _init_worker(job: _Job) -> None:
    if job.torch_threads is not None:
        torch.set_num_threads(job.torch_threads)
    env = TabletopEnv(job.task, job.setting, job.cameras, job.image_size, max_steps=job.max_steps)
    _WORKER.update(job=job, env=env, policy=job.policy_factory(env))


def _run_seed(seed: int) -> EpisodeResult:
    job = _WORKER["job"]
    return run_episode(_WORKER["env"], _WORKER["policy"], seed, seed in job.record_seeds)


@contextmanager
def _episode_runner(job: _Job, workers: int) -> Iterator[Callable[[Iterable[int]], Iterator]]:
    """An unordered ``imap`` of ``_run_seed`` over worker processes, or in this process."""
    if workers == 1:
        _init_worker(job)
        try:
            yield lambda seeds: map(_run_seed, seeds)
        finally:
            _WORKER.pop("env").close()
            _WORKER.clear()
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding GL state
    with context.Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
        yield lambda seeds: pool.imap_unordered(_run_seed, seeds)


def _check_args(
    policy_factory: PolicyFactory,
    seeds: list[int],
    workers: int,
    max_steps: int | None,
    cameras: tuple[str, ...],
    record_seeds: set[int],
) -> None:
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds={seeds} is not valid; pass distinct integers >= 0")
    if workers < 1:
        raise ValueError(f"workers={workers} is not valid; must be >= 1")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps={max_steps} is not valid; must be >= 1 or None")
    if record_seeds - set(seeds):
        raise ValueError(
            f"record_seeds {sorted(record_seeds - set(seeds))} are not in seeds; "
            "record only seeds that are evaluated"
        )
    if record_seeds and not cameras:
        raise ValueError("record_seeds needs at least one camera to record; pass cameras")
    if workers > 1:
        try:
            pickle.dumps(policy_factory)
        except Exception as exc:
            raise ValueError(
                f"policy_factory cannot be pickled for worker processes ({exc}); use a "
                "module-level function or functools.partial, or workers=1"
            ) from exc


def evaluate_closed_loop(
    policy_factory: PolicyFactory,
    task: str,
    setting: str,
    seeds: Sequence[int],
    workers: int = 1,
    max_steps: int | None = None,
    cameras: tuple[str, ...] = ("head",),
    image_size: tuple[int, int] = (64, 64),
    record_seeds: Iterable[int] = (),
) -> ClosedLoopResult:
    """Success of ``policy_factory(env)``'s policy on ``seeds`` of (task, setting).

    ``max_steps`` None: the task's own limit. ``cameras``/``image_size``: what the env
    renders (``()`` for physics only when the policy needs no images). ``record_seeds``:
    episodes whose camera frames are kept in ``EpisodeResult.frames`` (for videos).
    ``workers > 1`` needs a picklable ``policy_factory`` (module-level function or
    ``functools.partial``); each spawned worker then uses cpu_count / workers torch threads.
    """
    seeds = [int(s) for s in seeds]
    record = {int(s) for s in record_seeds}
    cameras = tuple(cameras)
    _check_args(policy_factory, seeds, workers, max_steps, cameras, record)
    job = _Job(
        policy_factory=policy_factory,
        task=task,
        setting=setting,
        cameras=cameras,
        image_size=(int(image_size[0]), int(image_size[1])),
        max_steps=max_steps,
        record_seeds=frozenset(record),
        torch_threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None,
    )
    episodes: list[EpisodeResult] = []
    with (
        _episode_runner(job, workers) as imap,
        tqdm(total=len(seeds), desc=f"eval {task}/{setting}", unit="ep") as progress,
    ):
        for episode in imap(seeds):
            episodes.append(episode)
            progress.update()
            progress.set_postfix(success=f"{sum(e.success for e in episodes)}/{len(episodes)}")
    return ClosedLoopResult(task, setting, sorted(episodes, key=lambda e: e.seed))


def eval_seeds(dataset_path: str | os.PathLike) -> list[int]:
    """The expert-checked evaluation seeds stored in a collected dataset file's attrs."""
    with EpisodeFile(dataset_path) as dataset:
        seeds = [int(s) for s in dataset.attrs["eval_seeds"]]
    if not seeds:
        raise DatasetError(
            Path(dataset_path), "holds no eval seeds", "re-collect it with eval_episodes > 0"
        )
    return seeds
