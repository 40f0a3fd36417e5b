"""Expert data collection: run scripted experts on seeds, keep the solved ones, resume after a kill.

The dataset for (task, setting) holds the first ``episodes`` seeds from ``seed_start`` that
the expert solves, whatever the number of workers. Each finished episode is its own part
file (or a ``.skipped`` marker when the expert failed), so a killed run loses at most the
episodes in flight; the parts are consolidated into one HDF5 file at the end.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
from tqdm import tqdm

from envs.env import CONTROL_HZ, PHYSICS_DT, TabletopEnv
from envs.expert import ScriptedExpert
from envs.state import state_names
from envs.tasks import make_task
from worldmodel import atomic
from worldmodel.data.episodes import (
    DatasetError,
    EpisodeFile,
    EpisodeRecord,
    consolidate,
    finished_parts,
    remove_parts,
    write_episode_part,
)
from worldmodel.folder_lock import exclusive
from worldmodel.worker_processes import start_pool_worker

EVAL_SEED_BASE = 100_000  # evaluation seeds live in their own range, above every training seed


def dataset_path(data_dir: str | Path, task: str, setting: str) -> Path:
    """The consolidated dataset of (task, setting): ``<data_dir>/<task>_<setting>.h5``."""
    return Path(data_dir) / f"{task}_{setting}.h5"


@dataclass(frozen=True)
class CollectionJob:
    """What to collect; the fields workers need to rebuild the env."""

    task: str
    setting: str
    episodes: int
    cameras: tuple[str, ...]
    image_size: tuple[int, int]
    data_dir: Path
    seed_start: int = 0
    eval_episodes: int = 20
    workers: int = 1
    config_yaml: str = ""
    checksums: bool = True  # fletcher32 on every dataset (False: as before, for the benchmark)

    @property
    def out_path(self) -> Path:
        return dataset_path(self.data_dir, self.task, self.setting)

    @property
    def parts_dir(self) -> Path:
        return self.out_path.with_suffix(".parts")


@dataclass
class CollectionResult:
    out_path: Path
    seeds: list[int]
    skipped_seeds: list[int]
    eval_seeds: list[int]
    newly_collected: int = 0  # episodes run in this call
    resumed: int = 0  # finished episodes of a killed run, taken over from its part files
    notes: list[str] = field(default_factory=list)


def record_expert_episode(env: TabletopEnv, expert: ScriptedExpert, seed: int) -> EpisodeRecord:
    """Run the expert from ``env.reset(seed)`` until success or the step limit, recording all."""
    observation, info = env.reset(seed=seed)
    expert.reset()
    frames = {camera: [observation["images"][camera]] for camera in env.cameras}
    joint_pos, joint_vel = [observation["joint_pos"]], [observation["joint_vel"]]
    states = [observation["state"]]
    qpos, qvel, actions = [env.data.qpos.copy()], [env.data.qvel.copy()], []
    done = False
    while not done:
        action = expert.act()
        observation, _, terminated, truncated, info = env.step(action)
        actions.append(action)
        for camera in env.cameras:
            frames[camera].append(observation["images"][camera])
        joint_pos.append(observation["joint_pos"])
        joint_vel.append(observation["joint_vel"])
        states.append(observation["state"])
        qpos.append(env.data.qpos.copy())
        qvel.append(env.data.qvel.copy())
        done = terminated or truncated
    return EpisodeRecord(
        seed=seed,
        setting=env.setting,
        images={camera: np.stack(f) for camera, f in frames.items()},
        joint_pos=np.stack(joint_pos),
        joint_vel=np.stack(joint_vel),
        qpos=np.stack(qpos),
        qvel=np.stack(qvel),
        state=np.stack(states),
        action=np.stack(actions),
        success=bool(info["success"]),
        first_success_step=int(info["first_success_step"]),
    )


def expert_solves(env: TabletopEnv, expert: ScriptedExpert, seed: int) -> bool:
    """Physics-only check (pass an env without cameras): does the expert solve this seed?"""
    env.reset(seed=seed)
    expert.reset()
    while True:
        _, _, terminated, truncated, info = env.step(expert.act())
        if terminated or truncated:
            return bool(info["success"])


# ---------------------------------------------------------------- worker processes
_WORKER: dict[str, object] = {}


def _init_worker(job: CollectionJob) -> None:
    _WORKER["job"] = job
    _WORKER["env"] = env = TabletopEnv(job.task, job.setting, job.cameras, job.image_size)
    _WORKER["expert"] = ScriptedExpert(env)
    _WORKER["physics_env"] = physics_env = TabletopEnv(job.task, job.setting, cameras=())
    _WORKER["physics_expert"] = ScriptedExpert(physics_env)


def _collect_seed(seed: int) -> tuple[int, bool]:
    job = _WORKER["job"]
    record = record_expert_episode(_WORKER["env"], _WORKER["expert"], seed)
    if record.success:
        write_episode_part(job.parts_dir, seed, record, job.checksums)
    else:
        (job.parts_dir / f"seed_{seed:06d}.skipped").touch()
    return seed, record.success


def _check_eval_seed(seed: int) -> tuple[int, bool]:
    return seed, expert_solves(_WORKER["physics_env"], _WORKER["physics_expert"], seed)


@contextmanager
def _worker_pool(job: CollectionJob) -> Iterator[Callable]:
    """An ordered ``imap`` over worker processes, or in this process when ``workers == 1``."""
    if job.workers == 1:
        _init_worker(job)
        yield map
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding GL state
    with context.Pool(
        job.workers, initializer=start_pool_worker, initargs=(_init_worker, job)
    ) as pool:
        yield pool.imap


def _solved_seeds(
    imap: Callable,
    solve: Callable[[int], tuple[int, bool]],
    candidates: Iterator[int],
    wanted: int,
    have: int,
    workers: int,
    desc: str,
    unit: str,
) -> tuple[list[int], list[int]]:
    """Run ``solve`` on candidate seeds in ordered batches over the workers until ``wanted -
    have`` succeed, with a progress bar from ``have``; (first successes, failures)."""
    needed = wanted - have
    successes: list[int] = []
    failures: list[int] = []
    with tqdm(total=wanted, initial=have, desc=desc, unit=unit) as progress:
        while len(successes) < needed:
            seeds = [next(candidates) for _ in range(2 * workers)]
            for seed, solved in imap(solve, seeds):
                (successes if solved else failures).append(seed)
                progress.update(int(solved))
                progress.set_postfix(skipped=len(failures))
                if len(successes) >= needed:
                    break
    return successes, failures


def _skipped_markers(parts_dir: Path) -> set[int]:
    return {int(p.stem.split("_")[1]) for p in parts_dir.glob("seed_*.skipped")}


def run_collection(job: CollectionJob) -> CollectionResult:
    """Collect (or finish collecting) the dataset described by ``job``; one process at a time
    per dataset (a second one stops with ``FolderInUse``)."""
    lock = job.out_path.parent / f".{job.out_path.stem}.lock"
    with exclusive(lock, f"dataset {job.out_path}"):
        atomic.remove_stale_temps(job.out_path.parent, stem=job.out_path.stem)  # a killed run's
        if job.parts_dir.is_dir():  # and its half-written episodes (they may fill a disk)
            atomic.remove_stale_temps(job.parts_dir)
        return _collect(job)


def _collect(job: CollectionJob) -> CollectionResult:
    out_path, parts_dir = job.out_path, job.parts_dir
    have_seeds: list[int] = []
    skipped: set[int] = set()
    eval_seeds: list[int] = []
    if out_path.exists():
        with EpisodeFile(out_path) as existing:
            _check_compatible(existing, job)
            have_seeds = [int(s) for s in existing.seeds]
            skipped = {int(s) for s in existing.attrs["skipped_seeds"]}
            eval_seeds = [int(s) for s in existing.attrs["eval_seeds"]]
    needed = job.episodes - len(have_seeds)
    if needed <= 0 and len(eval_seeds) >= job.eval_episodes:
        return CollectionResult(
            out_path,
            have_seeds,
            sorted(skipped),
            eval_seeds,
            notes=[f"{out_path} already has {len(have_seeds)} episodes"],
        )
    parts_dir.mkdir(parents=True, exist_ok=True)
    done_parts = finished_parts(parts_dir)
    skipped |= _skipped_markers(parts_dir)
    known = set(have_seeds) | skipped | set(done_parts)
    resumed = [s for s in done_parts if s not in have_seeds]

    with _worker_pool(job) as imap:
        new_seeds: list[int] = []
        if needed > len(resumed):
            new_seeds, failures = _solved_seeds(
                imap,
                _collect_seed,
                (s for s in _count(job.seed_start) if s not in known),
                needed,
                len(resumed),
                job.workers,
                f"collect {job.task}/{job.setting}",
                "ep",
            )
            skipped |= set(failures)
        if len(eval_seeds) < job.eval_episodes:
            checked, _ = _solved_seeds(
                imap,
                _check_eval_seed,
                (s for s in _count(EVAL_SEED_BASE) if s not in set(eval_seeds)),
                job.eval_episodes,
                len(eval_seeds),
                job.workers,
                "check eval seeds",
                "seed",
            )
            eval_seeds = sorted(eval_seeds + checked)

    keep = sorted(resumed + new_seeds)[: max(needed, 0)]
    parts = finished_parts(parts_dir)
    consolidate([parts[s] for s in keep], out_path, _file_attrs(job, skipped, eval_seeds))
    remove_parts(parts_dir)
    for marker in parts_dir.glob("seed_*.skipped"):
        marker.unlink()
    if parts_dir.exists() and not any(parts_dir.iterdir()):
        parts_dir.rmdir()
    return CollectionResult(
        out_path,
        sorted(have_seeds + keep),
        sorted(skipped),
        eval_seeds,
        newly_collected=len(set(keep) - set(resumed)),
        resumed=len(set(keep) & set(resumed)),
    )


def _count(start: int) -> Iterator[int]:
    seed = start
    while True:
        yield seed
        seed += 1


def _check_compatible(existing: EpisodeFile, job: CollectionJob) -> None:
    resized = job.cameras and tuple(existing.image_size) != job.image_size
    if list(existing.cameras) != list(job.cameras) or resized:
        raise DatasetError(
            existing.path,
            f"was collected with cameras={list(existing.cameras)} "
            f"image_size={list(existing.image_size)}, not {list(job.cameras)} "
            f"{list(job.image_size)}",
            "collect into another data_dir, or delete the file to re-collect",
        )


def _file_attrs(job: CollectionJob, skipped: set[int], eval_seeds: list[int]) -> dict:
    return {
        "task": job.task,
        "setting": job.setting,
        "control_hz": CONTROL_HZ,
        "physics_dt": PHYSICS_DT,
        "mujoco_version": mujoco.__version__,
        "config": job.config_yaml,
        "cameras": list(job.cameras),
        "image_size": list(job.image_size),
        "state_names": list(state_names(make_task(job.task).state_parts)),
        "skipped_seeds": np.array(sorted(skipped), np.int64),
        "eval_seeds": np.array(eval_seeds, np.int64),
    }
