"""Evaluating a trained run: its model as a policy, its held-out episodes, the baselines.

Shared by the training loop's periodic evaluation and ``python -m experiments.evaluate``.
A run's build (``worldmodel.training.build.RunBuild``) names the dataset it trained on; the
episodes after ``train_episodes`` are held out (drift), and the dataset's stored,
expert-checked evaluation seeds are the closed-loop episodes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from envs.env import TabletopEnv
from envs.scene import VIEW_SIZE
from worldmodel.data.episodes import EpisodeFile
from worldmodel.evaluation.closed_loop import (
    ClosedLoopResult,
    EpisodeResult,
    PolicyFactory,
    evaluate_closed_loop,
)
from worldmodel.evaluation.drift import DriftEpisodes
from worldmodel.evaluation.policies import (
    ExpertPolicy,
    HoldPolicy,
    OracleVideoPolicy,
    RandomPolicy,
    WorldModelPolicy,
)
from worldmodel.evaluation.videos import as_uint8, closed_loop_video, side_by_side_video
from worldmodel.inference import rollout_open_loop
from worldmodel.media import resize_nearest, tile_cameras
from worldmodel.model.world_model import WorldModel
from worldmodel.tokenizer.base import Tokenizer
from worldmodel.training.build import RunBuild
from worldmodel.training.windows import load_episode_latents

# The ceiling and the floors every model is reported beside.
BASELINE_POLICIES: dict[str, PolicyFactory] = {
    "expert": ExpertPolicy,
    "hold": HoldPolicy,
    "random": RandomPolicy,
}


def model_policy_factory(
    model: WorldModel,
    tokenizer: Tokenizer,
    latent_fps: float,
    mode: str,
    video_steps: int | None = None,
    action_steps: int | None = None,
    context_chunks: int | None = None,
    oracle_video: bool = False,
) -> PolicyFactory:
    """A picklable ``env -> WorldModelPolicy`` factory (for worker processes too); None steps
    and context are the model's defaults. ``oracle_video``: the expert's real frames replace
    the imagined video (``OracleVideoPolicy``)."""
    return functools.partial(
        OracleVideoPolicy if oracle_video else WorldModelPolicy,
        model=model,
        tokenizer=tokenizer,
        latent_fps=latent_fps,
        video_steps=video_steps,
        action_steps=action_steps,
        mode=mode,
        context_chunks=context_chunks,
    )


def run_closed_loop(
    policy_factory: PolicyFactory,
    build: RunBuild,
    seeds: Sequence[int],
    *,
    needs_images: bool,
    workers: int = 1,
    max_steps: int | None = None,
    record_seeds: Sequence[int] = (),
    setting: str | None = None,
    batch_size: int = 1,
) -> ClosedLoopResult:
    """``policy_factory``'s success on ``seeds`` of the run's task (and setting by default),
    rendering the run's cameras when the policy needs images; ``record_seeds`` keep their
    recordings (``worldmodel/evaluation/closed_loop.py``) for videos."""
    return evaluate_closed_loop(
        policy_factory,
        build.task,
        setting or build.setting,
        list(seeds),
        workers=workers,
        max_steps=max_steps,
        cameras=tuple(build.cameras) if needs_images else (),
        image_size=tuple(build.image_size),
        record_seeds=record_seeds,
        batch_size=batch_size,
    )


def closed_loop_metrics(result: ClosedLoopResult, prefix: str = "eval/") -> dict[str, float]:
    """The scalars of a closed-loop result for ``metrics.jsonl`` and wandb."""
    low, high = result.wilson
    return {
        f"{prefix}success_rate": result.success_rate,
        f"{prefix}successes": result.successes,
        f"{prefix}episodes": result.n,
        f"{prefix}success_wilson_low": low,
        f"{prefix}success_wilson_high": high,
        f"{prefix}progress": result.mean_progress,
        f"{prefix}control_steps_per_second": result.steps_per_second,
    }


def held_out_indices(build: RunBuild) -> list[int]:
    """Episode indices of the dataset the run did not train on (all of them if none)."""
    with EpisodeFile(build.dataset) as dataset:
        total = dataset.num_episodes
    held_out = list(range(build.train_episodes, total))
    return held_out or list(range(total))


def check_held_out_frames(build: RunBuild, frames: int, what: str = "context or horizon") -> None:
    """ValueError (one line, naming ``what`` to shorten) unless a held-out episode of the run's
    dataset has ``frames`` latent frames; reads only the actions, so it costs no work."""
    with EpisodeFile(build.dataset) as dataset:
        longest = max(
            len(dataset.actions_at_fps(i, build.latent_fps)) + 1 for i in held_out_indices(build)
        )
    if longest < frames:
        raise ValueError(
            f"no held-out episode of {build.dataset} has {frames} latent frames at "
            f"{build.frame_rate.describe()} (the longest has {longest}); shorten the {what}"
        )


@torch.no_grad()
def drift_episodes(
    build: RunBuild,
    tokenizer: Tokenizer,
    frames: int,
    count: int,
    cache_dir: str | Path,
    max_bytes: float = 8 * 2**30,
) -> DriftEpisodes:
    """The first ``frames`` latent frames of up to ``count`` held-out episodes that have them,
    with their actions, real camera frames (for pixel metrics), real scene states and env
    seeds (for state-track videos)."""
    check_held_out_frames(build, frames)
    indices = held_out_indices(build)
    latents = load_episode_latents(
        build.dataset, tokenizer, build.latent_fps, indices, cache_dir, max_bytes, progress=False
    )
    chosen = [(i, e) for i, e in zip(indices, latents, strict=True) if len(e.video) >= frames]
    chosen = chosen[:count]
    with EpisodeFile(build.dataset) as dataset:
        strided = [dataset.episode_at_fps(i, build.latent_fps) for i, _ in chosen]
    images = [episode.images for episode in strided]
    return DriftEpisodes(
        latents=torch.stack([e.video[:frames] for _, e in chosen]),  # (E, F, N, C)
        actions=torch.stack([e.actions[:frames] for _, e in chosen]),  # (E, F, A, d)
        start_joint_pos=torch.stack([e.start_joint_pos[:frames] for _, e in chosen]),
        action_valid=torch.stack([e.action_valid[:frames] for _, e in chosen]),  # (E, F)
        frames={
            cam: torch.from_numpy(np.stack([im[cam][:frames] for im in images]))
            for cam in tokenizer.cameras
        },  # camera -> (E, F, H, W, 3)
        states=torch.from_numpy(np.stack([e.state[:frames] for e in strided])),  # (E, F, S)
        seeds=[e.seed for e in strided],
    )


def state_views(
    twin: TabletopEnv, seed: int, states: np.ndarray, size: tuple[int, int] = VIEW_SIZE
) -> np.ndarray:
    """(F, H, W, 3) uint8: scene states (F, S) shown in episode ``seed``'s reset scene of
    ``twin`` (an env of the episode's task and setting) through the viewing camera at
    ``size`` (``TabletopEnv.render_camera``); what a state leaves out (light, table,
    distractors) is the episode's own."""
    twin.reset(seed=int(seed))
    return np.stack([twin.render_camera("view", size, state) for state in np.asarray(states)])


def video_twin(tokenizer: Tokenizer, task: str, setting: str) -> TabletopEnv | None:
    """On the state track an env of ``task`` and ``setting`` without cameras, to render scene
    states in videos (``state_views``); None on the pixel track, whose tokenizer decodes."""
    return TabletopEnv(task, setting, cameras=()) if tokenizer.observes == "state" else None


def _needs_twin(twin: TabletopEnv | None) -> TabletopEnv:
    if twin is None:
        raise ValueError(
            "the state track renders scene states: pass twin=TabletopEnv(task, setting, "
            "cameras=()) of the episode's task and setting"
        )
    return twin


@torch.no_grad()
def imagined_views(
    tokenizer: Tokenizer,
    latents: np.ndarray | torch.Tensor,
    height: int,
    twin: TabletopEnv | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(F, height, W, 3) uint8 pictures of latent frames (F, N, C): on the state track their
    scene states rendered in ``twin`` (``state_views`` of episode ``seed``), else the
    tokenizer's decoded cameras side by side, upscaled (nearest) to ``height``."""
    latents = torch.as_tensor(latents)
    if tokenizer.observes == "state":
        states = tokenizer.decode_state(latents).double().cpu().numpy()  # (F, S)
        width = height * VIEW_SIZE[1] // VIEW_SIZE[0]
        return state_views(_needs_twin(twin), seed, states, (height, width))
    decoded = tokenizer.decode(latents)  # camera -> (F, h, w, 3) float in [0, 1]
    tiles = tile_cameras({cam: as_uint8(x) for cam, x in decoded.items()})  # (F, h, W, 3)
    return resize_nearest(tiles, height, tiles.shape[2] * height // tiles.shape[1])


def held(frames: np.ndarray, steps: np.ndarray, T: int) -> np.ndarray:
    """(T, ...) per control step 0..T-1 the last of ``frames`` (F, ...) whose control step
    (``steps`` (F,), increasing, the first 0) is not later."""
    return frames[np.searchsorted(steps, np.arange(T), side="right") - 1]


def closed_loop_episode_video(
    episode: EpisodeResult,
    tokenizer: Tokenizer,
    path: str | Path,
    twin: TabletopEnv | None = None,
    fps: float = 50.0,
) -> Path:
    """mp4 of a recorded closed-loop episode (``videos.closed_loop_video``) at control rate:
    the real view beside the imagined one (the policy's imagined latent frames rendered by
    ``imagined_views``, each held until the next), the model's input as an inset."""
    if episode.view is None:
        raise ValueError(f"episode seed {episode.seed} was not recorded; pass it in record_seeds")
    T = len(episode.view)
    panels = {"real": episode.view}
    if episode.imagined is not None:
        pictures = imagined_views(
            tokenizer, episode.imagined, episode.view.shape[1], twin, episode.seed
        )  # (F, Hv, W, 3)
        cameras = "" if tokenizer.observes == "state" else f" ({', '.join(tokenizer.cameras)})"
        panels[f"imagined{cameras}"] = held(pictures, episode.imagined_steps, T)
    state_input = f"input: scene state ({tokenizer.latent_dim} ch)"
    return closed_loop_video(
        panels,
        Path(path),
        fps,
        episode.first_success_step if episode.success else None,
        chunk_starts=episode.chunk_starts or (),
        inset=episode.frames,
        inset_label=state_input if tokenizer.observes == "state" else None,
    )


@torch.no_grad()
def rollout_video(
    model: WorldModel,
    tokenizer: Tokenizer,
    episodes: DriftEpisodes,
    path: str | Path,
    context_chunks: int,
    horizon: int,
    steps: int,
    fps: float,
    episode: int = 0,
    seed: int = 0,
    twin: TabletopEnv | None = None,
) -> Path:
    """mp4 of one held-out episode: real | imagined | difference, the imagined chunks being an
    open-loop rollout (standard mode, true future actions) after ``context_chunks`` real ones;
    the context frames are shown decoded from their real latents. Panels are at least
    ``VIEW_SIZE`` high: the pixel track's cameras upscaled, the state track's real and imagined
    scene states rendered through the viewing camera of ``twin`` (``state_views``)."""
    K = model.config.K
    Fc, Fe = context_chunks * K, (context_chunks + horizon) * K
    one = slice(episode, episode + 1)
    video = episodes.latents[one, :Fe].to(model.device, model.dtype)  # (1, Fe, N, C)
    window = {
        "actions": episodes.actions[one, :Fe],
        "start_joint_pos": episodes.start_joint_pos[one, :Fe],
        "action_valid": episodes.action_valid[one, :Fe],
    }
    actions, _ = model.window_actions(window, K)  # (1, Fe, A, d) model units
    imagined = rollout_open_loop(
        model,
        video[:, :Fc],
        actions[:, :Fc],
        horizon,
        steps,
        future_actions=actions[:, Fc:],
        generator=torch.Generator().manual_seed(seed),
    ).video  # (1, H*K, N, C)
    latents = torch.cat([video[:, :Fc], imagined], dim=1)[0]  # (Fe, N, C)
    starts = [Fc + h * K for h in range(horizon)]
    if tokenizer.observes == "state":
        if episodes.seeds is None or episodes.states is None:
            raise ValueError(
                "rollout_video on the state track needs the episodes' real states and seeds; "
                "build them with drift_episodes"
            )
        episode_seed = episodes.seeds[episode]
        states = episodes.states[episode, :Fe].double().numpy()  # (Fe, S)
        real = {"view": state_views(_needs_twin(twin), episode_seed, states)}
        pictures = imagined_views(tokenizer, latents, VIEW_SIZE[0], twin, episode_seed)
        return side_by_side_video(real, {"view": pictures}, Path(path), fps, starts, scale=1)
    decoded = tokenizer.decode(latents)  # camera -> (Fe, H, W, 3) in [0, 1]
    real = {cam: episodes.frames[cam][episode, :Fe] for cam in tokenizer.cameras}
    scale = math.ceil(VIEW_SIZE[0] / tokenizer.image_size[0])
    return side_by_side_video(
        real, decoded, Path(path), fps, starts, list(tokenizer.cameras), scale=scale
    )
