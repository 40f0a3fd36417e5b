"""Training windows: an episode file's latent frames at the run's fps, held in memory.

Glossary (``worldmodel/model/layout.py``): at ``fps`` a dataset episode of T control steps
has ``M = T // s + 1`` frames (s = control_hz / fps) and ``T // s`` groups of s actions. Latent
frame f carries the s actions leading INTO it (``worldmodel/model/actions.py``); frame 0's
token is padding (``action_valid`` False). Each frame also carries the joint positions
observed when its actions start (``start_joint_pos``: frame f - 1), which relative actions
are taken against. A window is ``window_frames`` consecutive latent frames of one episode;
frames past the episode end are padding (``valid`` False: the last frame repeated, zero
actions) and are masked out of every loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from envs.env import GRIPPER_ACTION_DIMS
from worldmodel.data.episodes import EpisodeFile
from worldmodel.model.actions import ActionCodec, aligned_actions, start_joint_positions
from worldmodel.tokenizer.base import Tokenizer
from worldmodel.tokenizer.cache import LatentCache, encode_dataset

ENCODE_BATCH = 64  # frames per tokenizer call when encoding without a cache


class MemoryBudgetError(ValueError):
    """The run's latents do not fit the configured memory budget."""


@dataclass
class EpisodeLatents:
    seed: int
    video: Tensor  # (M, N, C) latent frames 0..M-1 at the run's fps
    actions: Tensor  # (M, A, d) raw actions leading into each frame (zeros for frame 0)
    action_valid: Tensor  # (M,) bool, False for frame 0's padded token
    start_joint_pos: Tensor  # (M, d) joint positions when each frame's actions start


def load_episode_latents(
    dataset_path: str | os.PathLike,
    tokenizer: Tokenizer,
    fps: float,
    indices: list[int],
    cache_dir: str | os.PathLike,
    max_bytes: float,
    progress: bool = True,
) -> list[EpisodeLatents]:
    """Latents and actions of episodes ``indices`` at ``fps``.

    Tokenizers with weights (``cache_latents``) read the on-disk latent cache (built once by
    ``encode_dataset``); the others encode the kept frames directly.
    """
    tokenizer.eval()
    with EpisodeFile(dataset_path) as dataset:
        frames = [len(dataset.actions_at_fps(i, fps)) + 1 for i in indices]
        frame_bytes = tokenizer.tokens_per_frame * tokenizer.latent_dim * 4
        needed = sum(frames) * frame_bytes
        if needed > max_bytes:
            raise MemoryBudgetError(
                f"the latents of {len(indices)} episodes at fps={fps:g} need "
                f"{needed / 2**30:.1f} GiB, more than data.max_memory_gb={max_bytes / 2**30:g}; "
                "use fewer cameras, a lower fps, a smaller image_size or tokenizer=conv_ae"
            )
        cache = None
        if tokenizer.cache_latents:
            cache = LatentCache(
                encode_dataset(tokenizer, dataset_path, cache_dir, progress=progress)
            )
        try:
            desc = f"latents {Path(dataset_path).name} @ {fps:g} fps"
            return [
                _episode_latents(dataset, cache, tokenizer, fps, i)
                for i in tqdm(indices, desc=desc, unit="ep", disable=not progress)
            ]
        finally:
            if cache is not None:
                cache.close()


@torch.no_grad()
def _episode_latents(
    dataset: EpisodeFile, cache: LatentCache | None, tokenizer: Tokenizer, fps: float, i: int
) -> EpisodeLatents:
    actions, action_valid = aligned_actions(
        torch.from_numpy(dataset.actions_at_fps(i, fps)).float()
    )  # (M, A, d), (M,)
    M = len(actions)
    joint_pos = torch.from_numpy(dataset.joint_pos_at_fps(i, fps)).float()  # (M, d)
    if cache is not None:
        video = cache.latents(i, fps)[:M]  # (M, N, C)
    elif tokenizer.observes == "state":
        video = tokenizer.encode_state(torch.from_numpy(dataset.state_at_fps(i, fps)))[:M]
    else:
        images = dataset.episode_at_fps(i, fps).images  # camera -> (M, H, W, 3)
        video = torch.cat(
            [
                tokenizer.encode(
                    {
                        c: torch.from_numpy(images[c][s : s + ENCODE_BATCH])
                        for c in tokenizer.cameras
                    }
                )
                for s in range(0, M, ENCODE_BATCH)
            ]
        )[:M].float()  # (M, N, C)
    return EpisodeLatents(
        int(dataset.seeds[i]),
        video.contiguous(),
        actions,
        action_valid,
        start_joint_positions(joint_pos),
    )


def relative_action_mask(action_dim: int) -> Tensor:
    """(action_dim,) bool: the dims relative actions take against the joint positions (every
    joint target; the grippers stay absolute)."""
    mask = torch.ones(action_dim, dtype=torch.bool)
    mask[[d for d in GRIPPER_ACTION_DIMS if d < action_dim]] = False
    return mask


def fit_action_codec(codec: ActionCodec, episodes: list[EpisodeLatents], K: int) -> None:
    """Fit the codec's statistics on the real action tokens of ``episodes``, each relative to
    its chunk's reference for chunks of ``K`` frames from frame 0."""
    actions, references = [], []
    for e in episodes:
        M = len(e.actions)
        chunk_first = torch.arange(M) // K * K  # (M,) first frame of each frame's chunk
        actions.append(e.actions[e.action_valid])
        references.append(e.start_joint_pos[chunk_first][e.action_valid])
    actions, references = torch.cat(actions), torch.cat(references)  # (T, A, d), (T, d)
    codec.fit(actions, references, relative_action_mask(actions.shape[-1]))


class WindowSet:
    """All windows of a list of episodes that start on a frame with a whole chunk after it.

    ``sample`` draws window ids uniformly (long episodes give more windows), except that a
    share ``episode_start_prob`` of them is drawn among the windows starting at an episode's
    frame 0: every closed-loop episode begins there (padded first action token, no history),
    and uniform starts would show it in one window of every ~M (M frames per episode).
    ``batch`` gathers them into the model's batch dict. Everything is vectorised indexing.
    """

    def __init__(
        self,
        episodes: list[EpisodeLatents],
        window_frames: int,
        chunk: int,
        episode_start_prob: float = 0.0,
    ) -> None:
        if not 0.0 <= episode_start_prob <= 1.0:
            raise ValueError(f"episode_start_prob={episode_start_prob} is not valid; in [0, 1]")
        self.episode_start_prob = episode_start_prob
        if not episodes:
            raise ValueError("no episodes to cut windows from")
        self.window_frames = window_frames
        self.video = torch.cat([e.video for e in episodes])  # (total, N, C)
        self.actions = torch.cat([e.actions for e in episodes])  # (total, A, d)
        self.action_valid = torch.cat([e.action_valid for e in episodes])  # (total,)
        self.start_joint_pos = torch.cat([e.start_joint_pos for e in episodes])  # (total, d)
        lengths = torch.tensor([len(e.video) for e in episodes])
        offsets = torch.cumsum(lengths, 0) - lengths
        starts = [
            torch.stack([torch.full((n,), int(o)), torch.arange(n), torch.full((n,), int(L))], 1)
            for o, L in zip(offsets, lengths, strict=True)
            if (n := int(L) - chunk + 1) > 0
        ]
        if not starts:
            raise ValueError(f"every episode is shorter than one chunk of {chunk} frames")
        self.windows = torch.cat(starts)  # (W, 3): offset, start, length
        self.episode_starts = torch.nonzero(self.windows[:, 1] == 0).flatten()  # (E,) ids

    def __len__(self) -> int:
        return len(self.windows)

    def sample(self, count: int, generator: torch.Generator) -> Tensor:
        """(count,) window ids with replacement: uniform, or with ``episode_start_prob`` a
        window starting at an episode's frame 0 (three draws per id from ``generator``)."""
        uniform = torch.randint(len(self.windows), (count,), generator=generator)
        start = self.episode_starts[
            torch.randint(len(self.episode_starts), (count,), generator=generator)
        ]
        pick_start = torch.rand(count, generator=generator) < self.episode_start_prob
        return torch.where(pick_start, start, uniform)

    def spread(self, count: int) -> Tensor:
        """(count,) window ids evenly spaced over all windows (fixed validation windows)."""
        count = min(count, len(self.windows))
        return torch.from_numpy(np.linspace(0, len(self.windows) - 1, count).round().astype(int))

    def batch(self, ids: Tensor) -> dict[str, Tensor]:
        """video (B, W, N, C), actions (B, W, A, d), valid (B, W), action_valid (B, W) and
        start_joint_pos (B, W, d) of windows ``ids``."""
        offset, start, length = self.windows[ids].unbind(1)  # each (B,)
        frame = start[:, None] + torch.arange(self.window_frames)  # (B, W) within the episode
        valid = frame < length[:, None]  # (B, W)
        rows = offset[:, None] + torch.minimum(frame, length[:, None] - 1)  # (B, W)
        actions = self.actions[rows] * valid[..., None, None]  # (B, W, A, d)
        return {
            "video": self.video[rows],
            "actions": actions,
            "valid": valid,
            "action_valid": self.action_valid[rows] & valid,
            "start_joint_pos": self.start_joint_pos[rows],
        }
