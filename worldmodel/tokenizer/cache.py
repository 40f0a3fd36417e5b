"""Latent cache: every frame (at the control rate) of every episode of a dataset, encoded once.

The cache file ``<cache_dir>/<dataset stem>.<tokenizer name>.<key>.h5`` is keyed by the
dataset file (resolved path, size, mtime) and the tokenizer's ``identity()`` (sha256 of its
config and every weight and buffer, so a different conv_ae checkpoint gives a different key;
for ``patch`` the config alone). It is written atomically (``worldmodel.atomic``), so a file
present under its final name is complete and is reused as is.

Layout: root attrs (``CACHE_SCHEMA_VERSION``, dataset and tokenizer identity, ``control_hz``,
``cameras``, ``tokens_per_frame``, ``latent_dim``, ``num_episodes``) and one float32 dataset
``episodes/ep_{index:06d}`` of shape (T+1, N, C) per episode, in the dataset's order.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from worldmodel import atomic
from worldmodel.data.episodes import (
    HDF5_DAMAGE,
    DatasetError,
    EpisodeFile,
    first_line,
)
from worldmodel.timing import fps_stride, kept_frames
from worldmodel.tokenizer.base import Tokenizer

CACHE_SCHEMA_VERSION = 1
REBUILD = "delete it; the next run encodes the dataset again"


def dataset_fingerprint(dataset_path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a dataset file's content cheaply: resolved path, size, mtime (ns)."""
    path = Path(dataset_path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_path(
    tokenizer: Tokenizer, dataset_path: str | os.PathLike, cache_dir: str | os.PathLike
) -> Path:
    """Where ``encode_dataset`` keeps the latents of this (dataset, tokenizer) pair."""
    key = json.dumps(
        {
            "schema": CACHE_SCHEMA_VERSION,
            "dataset": dataset_fingerprint(dataset_path),
            "tokenizer": tokenizer.identity(),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(dataset_path).stem}.{tokenizer.name}.{digest}.h5"


@torch.no_grad()
def encode_dataset(
    tokenizer: Tokenizer,
    dataset_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    batch_size: int = 64,
    progress: bool = True,
) -> Path:
    """Path of the cache file of ``dataset_path`` under ``tokenizer``; encodes it if missing."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    out = cache_path(tokenizer, dataset_path, cache_dir)
    if out.is_file():
        return out
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        with (
            atomic.atomic_path(out) as tmp,
            EpisodeFile(dataset_path) as dataset,
            h5py.File(tmp, "w") as cache,
        ):
            _check_dataset(tokenizer, dataset)
            cache.attrs.update(
                schema_version=CACHE_SCHEMA_VERSION,
                dataset=json.dumps(dataset_fingerprint(dataset_path)),
                tokenizer=json.dumps(tokenizer.config()),
                tokenizer_identity=tokenizer.identity(),
                control_hz=dataset.control_hz,
                cameras=list(tokenizer.cameras),
                tokens_per_frame=tokenizer.tokens_per_frame,
                latent_dim=tokenizer.latent_dim,
                num_episodes=dataset.num_episodes,
            )
            episodes = cache.create_group("episodes")
            desc = f"encode {Path(dataset_path).name} ({tokenizer.name})"
            for i in tqdm(range(dataset.num_episodes), desc=desc, unit="ep", disable=not progress):
                images = dataset.episode_at_fps(i, dataset.control_hz).images  # (T+1, H, W, 3)
                frames = len(images[tokenizer.cameras[0]])
                latents = [
                    tokenizer.encode(
                        {
                            c: torch.from_numpy(images[c][s : s + batch_size])
                            for c in tokenizer.cameras
                        }
                    )
                    .float()
                    .cpu()
                    .numpy()
                    for s in range(0, frames, batch_size)
                ]  # each (b, N, C)
                episodes.create_dataset(f"ep_{i:06d}", data=np.concatenate(latents))
    finally:
        tokenizer.train(was_training)
    return out


def _check_dataset(tokenizer: Tokenizer, dataset: EpisodeFile) -> None:
    missing = [c for c in tokenizer.cameras if c not in dataset.cameras]
    if missing or tuple(dataset.image_size) != tokenizer.image_size:
        raise ValueError(
            f"{dataset.path}: has cameras {dataset.cameras} at {list(dataset.image_size)}, "
            f"the tokenizer wants {list(tokenizer.cameras)} at {list(tokenizer.image_size)}"
        )


class LatentCache:
    """A cache file opened read-only; ``latents(i, fps)`` reads one episode."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
            self.attrs: dict[str, Any] = dict(self._file.attrs)
        except HDF5_DAMAGE as exc:
            raise self._damaged(exc) from exc
        if self.attrs.get("schema_version") != CACHE_SCHEMA_VERSION:
            self._file.close()
            raise DatasetError(
                self.path,
                f"latent cache schema {self.attrs.get('schema_version')}, this code reads "
                f"{CACHE_SCHEMA_VERSION}",
                REBUILD,
            )
        self.num_episodes = int(self.attrs["num_episodes"])
        self.control_hz = float(self.attrs["control_hz"])

    def _damaged(self, exc: BaseException) -> DatasetError:
        return DatasetError(self.path, f"unreadable latent cache ({first_line(exc)})", REBUILD)

    def latents(self, episode_index: int, fps: float | None = None) -> Tensor:
        """(F, N, C) float32: all T+1 frames, or frames 0, s, 2s, ... at ``fps`` (s = hz/fps).

        The frames kept at ``fps`` are those of ``EpisodeFile.episode_at_fps``.
        """
        if not 0 <= episode_index < self.num_episodes:
            raise IndexError(
                f"episode_index={episode_index}: {self.path} has {self.num_episodes} episodes"
            )
        try:
            data = self._file["episodes"][f"ep_{episode_index:06d}"]
            if fps is None:
                return torch.from_numpy(data[()])
            frames = kept_frames(len(data) - 1, fps_stride(self.control_hz, fps))
            return torch.from_numpy(data[frames])
        except HDF5_DAMAGE as exc:
            raise self._damaged(exc) from exc

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LatentCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load_cached_latents(
    path: str | os.PathLike, episode_index: int, fps: float | None = None
) -> Tensor:
    """(T+1, N, C) latents of one episode (or its frames at ``fps``) from a cache file."""
    with LatentCache(path) as cache:
        return cache.latents(episode_index, fps)
