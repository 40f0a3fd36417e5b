"""Closed-loop task success: a policy acts in the MuJoCo env on seeds; count the successes.

Each episode: ``env.reset(seed=seed)``, ``policy.reset(obs, seed)``, then act / execute /
observe chunks (protocol in ``worldmodel/evaluation/policies.py``) until the task succeeds
(the env terminates at the first success) or the step limit truncates it. ``batch_size``
episodes run in lockstep (``run_batch``), one env each: a policy with ``act_batch`` (the
world model) serves them all with one batched pass, other policies are built once per env.
Batches run in this process (``workers=1``) or in spawned worker processes, each building its
own envs and policy with ``policy_factory(env)``; a policy seeds its randomness from the
episode seed, so per-seed outcomes do not depend on the number of workers or the batch.

Recording (``record_seeds``): a recorded episode keeps, per control step, the viewing camera
(``envs/scene.py``, rendered at ``video_size`` by the env, on the state track too), the
policy's camera input when the env has cameras, the control steps at which its chunks started
and, for a world-model policy, every chunk's imagined latent frames with their control-step
times (``WorldModelPolicy.imagined_frames``). Unrecorded episodes render nothing extra.

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
from envs.scene import VIEW_SIZE
from worldmodel.data.episodes import DatasetError, EpisodeFile
from worldmodel.evaluation.policies import BatchPolicy, EpisodePolicies, Policy
from worldmodel.evaluation.statistics import wilson_interval
from worldmodel.media import tile_cameras
from worldmodel.worker_processes import start_pool_worker

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
    # Recorded episodes only (record_seeds), never in to_dict:
    view: np.ndarray | None = None  # (steps + 1, Hv, Wv, 3) uint8 viewing camera per step
    frames: np.ndarray | None = None  # (steps + 1, H, W * cameras, 3) uint8 policy input, if any
    chunk_starts: list[int] | None = None  # control step at which each chunk started
    imagined: np.ndarray | None = None  # (F, N, C) imagined latent frames (world models only)
    imagined_steps: np.ndarray | None = None  # (F,) int, the control step of each of them

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (without the recordings)."""
        return {k: v for k, v in asdict(self).items() if k not in RECORDINGS}


RECORDINGS = ("view", "frames", "chunk_starts", "imagined", "imagined_steps")


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


def run_batch(
    envs: Sequence[TabletopEnv],
    policy: BatchPolicy,
    seeds: Sequence[int],
    record: Sequence[bool] = (),
    video_size: tuple[int, int] = VIEW_SIZE,
) -> list[EpisodeResult]:
    """Episodes ``seeds`` (one per env, ``env.reset(seed=...)``) in lockstep until each ends
    by success or its step limit; ``record[b]`` keeps episode b's recordings (module
    docstring), the viewing camera at ``video_size`` (H, W).

    Policy time is shared equally among the episodes still running when it is spent."""
    B = len(seeds)
    record = list(record) or [False] * B
    start = time.perf_counter()
    resets = [env.reset(seed=int(seed)) for env, seed in zip(envs, seeds, strict=False)]
    obs = [o for o, _ in resets]
    infos = [i for _, i in resets]
    progress = [i["progress"] for i in infos]
    recordings = [
        _Recording(env, video_size) if r else None for env, r in zip(envs, record, strict=False)
    ]
    for recording, first in zip(recordings, obs, strict=True):
        if recording is not None:
            recording.add_step(first)
    policy.reset_batch(obs, [int(s) for s in seeds])
    running = [True] * B
    policy_seconds, chunks = [0.0] * B, [0] * B
    wall, passes = [0.0] * B, [{} for _ in range(B)]

    def timed(call, *args):
        tic = time.perf_counter()
        result = call(*args)
        share = (time.perf_counter() - tic) / sum(running)
        for b in range(B):
            policy_seconds[b] += share if running[b] else 0.0
        return result

    while any(running):
        acting = [o if r else None for o, r in zip(obs, running, strict=True)]
        planned = timed(policy.act_batch, acting)
        for b in range(B):
            if running[b] and recordings[b] is not None:
                recordings[b].chunk_starts.append(envs[b].steps)
        seen: list[list[dict] | None] = [None] * B
        for b in [b for b in range(B) if running[b]]:
            chunk = np.asarray(planned[b])
            if chunk.ndim != 2 or chunk.shape[0] < 1 or chunk.shape[1] != ACTION_DIM:
                raise ValueError(
                    f"policy.act returned shape {chunk.shape}; expected (n >= 1, {ACTION_DIM})"
                )
            seen[b], done = [obs[b]], False
            for action in chunk:
                obs[b], _, terminated, truncated, infos[b] = envs[b].step(action)
                progress[b] = max(progress[b], infos[b]["progress"])
                seen[b].append(obs[b])
                if recordings[b] is not None:
                    recordings[b].add_step(obs[b])
                done = terminated or truncated
                if done:
                    break
            chunks[b] += 1
            if done:
                running[b], seen[b] = False, None
                wall[b], passes[b] = time.perf_counter() - start, policy.batch_passes[b]
                if recordings[b] is not None:
                    recordings[b].add_imagination(policy, b, envs[b].steps)
        if any(running):
            timed(policy.observe_batch, seen)
    return [
        EpisodeResult(
            seed=int(seed),
            success=bool(infos[b]["success"]),
            first_success_step=int(infos[b]["first_success_step"]),
            progress=float(progress[b]),
            steps=envs[b].steps,
            chunks=chunks[b],
            wall_seconds=wall[b],
            policy_seconds=policy_seconds[b],
            passes=passes[b],
            **(recordings[b].fields() if recordings[b] is not None else {}),
        )
        for b, seed in enumerate(seeds)
    ]


class _Recording:
    """What a recorded episode keeps while it runs (module docstring)."""

    def __init__(self, env: TabletopEnv, video_size: tuple[int, int]) -> None:
        self.env, self.video_size = env, video_size
        self.view: list[np.ndarray] = []  # (Hv, Wv, 3) per control step
        self.frames: list[np.ndarray] = []  # (H, W * cameras, 3) per control step
        self.chunk_starts: list[int] = []
        self.imagined: tuple[np.ndarray, np.ndarray] | None = None  # (F, N, C), (F,)

    def add_step(self, obs: dict) -> None:
        self.view.append(self.env.render_camera("view", self.video_size))
        if "images" in obs:
            self.frames.append(tile_cameras(obs["images"]))

    def add_imagination(self, policy: BatchPolicy, row: int, last_step: int) -> None:
        """Row ``row``'s imagined frames up to control step ``last_step``, if it imagines."""
        if not hasattr(policy, "imagined_frames"):
            return
        latents, steps = policy.imagined_frames(row)  # (F, N, C), (F,)
        shown = steps <= last_step
        self.imagined = latents[shown], steps[shown]

    def fields(self) -> dict[str, Any]:
        latents, steps = self.imagined if self.imagined is not None else (None, None)
        return {
            "view": np.stack(self.view),
            "frames": np.stack(self.frames) if self.frames else None,
            "chunk_starts": self.chunk_starts,
            "imagined": latents,
            "imagined_steps": steps,
        }


def batch_policy(policy_factory: PolicyFactory, envs: Sequence[TabletopEnv]) -> BatchPolicy:
    """``policy_factory``'s policy for ``len(envs)`` episodes at once: the policy itself when
    it acts in batches (``act_batch``), else one policy per env."""
    first = policy_factory(envs[0])
    if hasattr(first, "act_batch"):
        return first
    return EpisodePolicies([first, *(policy_factory(env) for env in envs[1:])])


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
    video_size: tuple[int, int]  # (H, W) of the recorded viewing camera
    batch_size: int  # episodes in lockstep per policy
    torch_threads: int | None  # set in spawned workers, so they do not oversubscribe the cores


_WORKER: dict[str, Any] = {}


def _init_worker(job: _Job) -> None:
    if job.torch_threads is not None:
        torch.set_num_threads(job.torch_threads)
    envs = [
        TabletopEnv(job.task, job.setting, job.cameras, job.image_size, max_steps=job.max_steps)
        for _ in range(job.batch_size)
    ]
    _WORKER.update(job=job, envs=envs, policy=batch_policy(job.policy_factory, envs))


def _run_seeds(seeds: tuple[int, ...]) -> list[EpisodeResult]:
    job = _WORKER["job"]
    record = [seed in job.record_seeds for seed in seeds]
    return run_batch(_WORKER["envs"], _WORKER["policy"], seeds, record, job.video_size)


@contextmanager
def _episode_runner(job: _Job, workers: int) -> Iterator[Callable[[Iterable[int]], Iterator]]:
    """An unordered ``imap`` of ``_run_seeds`` over worker processes, or in this process."""
    if workers == 1:
        _init_worker(job)
        try:
            yield lambda batches: map(_run_seeds, batches)
        finally:
            for env in _WORKER.pop("envs"):
                env.close()
            _WORKER.clear()
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding GL state
    with context.Pool(workers, initializer=start_pool_worker, initargs=(_init_worker, job)) as pool:
        yield lambda batches: pool.imap_unordered(_run_seeds, batches)


def _check_args(
    policy_factory: PolicyFactory,
    seeds: list[int],
    workers: int,
    max_steps: int | None,
    record_seeds: set[int],
    batch_size: int,
) -> None:
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds={seeds} is not valid; pass distinct integers >= 0")
    if workers < 1:
        raise ValueError(f"workers={workers} is not valid; must be >= 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is not valid; must be >= 1 episode")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps={max_steps} is not valid; must be >= 1 or None")
    if record_seeds - set(seeds):
        raise ValueError(
            f"record_seeds {sorted(record_seeds - set(seeds))} are not in seeds; "
            "record only seeds that are evaluated"
        )
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
    batch_size: int = 1,
    video_size: tuple[int, int] = VIEW_SIZE,
) -> ClosedLoopResult:
    """Success of ``policy_factory(env)``'s policy on ``seeds`` of (task, setting).

    ``max_steps`` None: the task's own limit. ``cameras``/``image_size``: what the env
    renders (``()`` for physics only when the policy needs no images). ``record_seeds``:
    episodes whose recordings are kept in their ``EpisodeResult`` (module docstring; the
    viewing camera at ``video_size`` (H, W)), for videos.
    ``workers > 1`` needs a picklable ``policy_factory`` (module-level function or
    ``functools.partial``); each spawned worker then uses cpu_count / workers torch threads.
    ``batch_size``: episodes run in lockstep by one policy (``run_batch``); a world-model
    policy serves them with one batched pass, with the per-seed numbers of batch one.
    """
    seeds = [int(s) for s in seeds]
    record = {int(s) for s in record_seeds}
    cameras = tuple(cameras)
    _check_args(policy_factory, seeds, workers, max_steps, record, batch_size)
    job = _Job(
        policy_factory=policy_factory,
        task=task,
        setting=setting,
        cameras=cameras,
        image_size=(int(image_size[0]), int(image_size[1])),
        max_steps=max_steps,
        record_seeds=frozenset(record),
        video_size=(int(video_size[0]), int(video_size[1])),
        batch_size=min(batch_size, len(seeds)),
        torch_threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None,
    )
    episodes: list[EpisodeResult] = []
    with (
        _episode_runner(job, workers) as imap,
        tqdm(total=len(seeds), desc=f"eval {task}/{setting}", unit="ep") as progress,
    ):
        size = job.batch_size
        batches = [tuple(seeds[i : i + size]) for i in range(0, len(seeds), size)]
        for batch in imap(batches):
            episodes.extend(batch)
            progress.update(len(batch))
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
