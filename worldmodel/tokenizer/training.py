"""Train a ``conv_ae`` tokenizer on the frames of episode datasets; report held-out PSNR.

Whole episodes are held out for validation (frames of one episode are nearly alike, so a
frame-level split would flatter the score). Frames are read at ``frame_fps`` (adjacent
50 Hz frames are near duplicates) into memory as uint8, one image per (frame, camera), and
random images are drawn from that pool. The baseline printed beside the held-out PSNR is the
PSNR of predicting every held-out image by its camera's mean training image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from worldmodel.data.episodes import DatasetError, EpisodeFile
from worldmodel.tokenizer.base import psnr
from worldmodel.tokenizer.conv_ae import ConvAETokenizer, save_conv_ae
from worldmodel.training.config import TrainLoopConfig
from worldmodel.training.optim import lr_factor
from worldmodel.training.provenance import git_state


@dataclass
class _ImagePool:
    images: Tensor  # (M, H, W, 3) uint8, one camera image each
    camera: Tensor  # (M,) int64 index into the camera list
    episodes: list[str]  # "file:episode" of every episode in the pool


def _split_episodes(
    files: Sequence[EpisodeFile], held_out_fraction: float, seed: int, held_out_last: int = 0
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train, held out) lists of (file index, episode index); held out >= 1 episode: the last
    ``held_out_last`` episodes of every file, or (0) a random ``held_out_fraction``."""
    everything = [(f, e) for f, file in enumerate(files) for e in range(file.num_episodes)]
    if held_out_last:
        too_small = [str(f.path) for f in files if f.num_episodes <= held_out_last]
        if too_small:
            raise ValueError(
                f"held_out_last={held_out_last} leaves no training episode in {too_small} - "
                "collect more episodes or hold out fewer"
            )
        held = [e >= files[f].num_episodes - held_out_last for f, e in everything]
        train = [fe for fe, h in zip(everything, held, strict=True) if not h]
        return train, [fe for fe, h in zip(everything, held, strict=True) if h]
    if len(everything) < 2:
        raise ValueError(
            f"datasets {[str(f.path) for f in files]} hold {len(everything)} episode(s); "
            "need >= 2 to hold whole episodes out for validation - collect more"
        )
    held = min(len(everything) - 1, max(1, round(held_out_fraction * len(everything))))
    order = np.random.default_rng(seed).permutation(len(everything))
    val = sorted(everything[i] for i in order[:held])
    train = sorted(everything[i] for i in order[held:])
    return train, val


def _load_pool(
    files: Sequence[EpisodeFile],
    episodes: list[tuple[int, int]],
    cameras: Sequence[str],
    frame_fps: float,
) -> _ImagePool:
    images, camera = [], []
    for f, e in episodes:
        strided = files[f].episode_at_fps(e, frame_fps)
        for c, cam in enumerate(cameras):
            frames = strided.images[cam]  # (F, H, W, 3) uint8
            images.append(torch.from_numpy(frames))
            camera.append(torch.full((len(frames),), c, dtype=torch.int64))
    return _ImagePool(
        images=torch.cat(images),
        camera=torch.cat(camera),
        episodes=[f"{files[f].path}:{e}" for f, e in episodes],
    )


def _to_model(images: Tensor, device: torch.device) -> Tensor:
    """(M, H, W, 3) uint8 -> (M, 3, H, W) float in [0, 1] on ``device``."""
    return images.to(device).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def _reconstruct(model: ConvAETokenizer, images: Tensor, batch_size: int) -> Tensor:
    """(M, H, W, 3) uint8 -> (M, H, W, 3) float reconstructions in [0, 1], on CPU."""
    device = next(model.parameters()).device
    out = []
    for batch in images.split(batch_size):
        x = _to_model(batch, device)  # (b, 3, H, W)
        out.append(model.decode_raw(model.encode_raw(x)).clamp(0, 1).permute(0, 2, 3, 1).cpu())
    return torch.cat(out)


@torch.no_grad()
def _latent_stats(model: ConvAETokenizer, images: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of the raw latents of ``images``: (C,), (C,)."""
    device = next(model.parameters()).device
    grids = [model.encode_raw(_to_model(b, device)).cpu() for b in images.split(batch_size)]
    flat = torch.cat(grids).double().transpose(0, 1).flatten(1)  # (C, M*h*w)
    return flat.mean(1).float(), flat.std(1).clamp_min(1e-6).float()


def _open_datasets(
    dataset_paths: Sequence[str | os.PathLike], cameras: Sequence[str], image_size: Sequence[int]
) -> list[EpisodeFile]:
    files: list[EpisodeFile] = []
    try:
        for path in dataset_paths:
            files.append(EpisodeFile(path))
            file = files[-1]
            missing = [c for c in cameras if c not in file.cameras]
            if missing or tuple(file.image_size) != tuple(image_size):
                raise DatasetError(
                    file.path,
                    f"has cameras {file.cameras} at {list(file.image_size)}, the tokenizer "
                    f"wants {list(cameras)} at {list(image_size)}",
                    "pick cameras and image_size the dataset has, or re-collect it",
                )
    except BaseException:
        for file in files:
            file.close()
        raise
    return files


def train_conv_ae(
    dataset_paths: Sequence[str | os.PathLike],
    cameras: Sequence[str],
    image_size: Sequence[int],
    steps: int = 2000,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    out_path: str | os.PathLike = "outputs/tokenizer/conv_ae.pt",
    held_out_fraction: float = 0.1,
    progress: bool = True,
    *,
    held_out_last: int = 0,
    latent_dim: int = 8,
    downsample: int = 8,
    width: int = 32,
    frame_fps: float = 12.5,
    device: str | None = None,
) -> dict[str, Any]:
    """Train, standardise the latents, save the checkpoint at ``out_path``, return metrics.

    Held out: the last ``held_out_last`` episodes of every dataset (pass the world model's
    ``data.val_episodes``, so its validation episodes stay unseen by both), else a random
    ``held_out_fraction`` of the episodes.
    Loss: MSE between reconstruction and image in [0, 1] (measured: adding L1 slows learning
    of the small moving parts, the arms, several-fold). AdamW, warm-up, cosine decay.
    Metrics: ``val_psnr`` (dB, held-out episodes), ``val_psnr_mean_frame`` (baseline: each
    camera's mean training image), ``train_loss`` (mean of the last 10% of steps),
    counts, ``seconds`` and ``out_path``; the checkpoint stores them too.
    """
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"steps={steps}, batch_size={batch_size}, lr={lr}: must be positive")
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction={held_out_fraction}: must be in (0, 1)")
    if held_out_last < 0:
        raise ValueError(f"held_out_last={held_out_last}: must be >= 0")
    if not dataset_paths:
        raise ValueError("dataset_paths: give at least one dataset file")
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cameras = list(cameras)
    files = _open_datasets(dataset_paths, cameras, image_size)
    try:
        train_eps, val_eps = _split_episodes(files, held_out_fraction, seed, held_out_last)
        train = _load_pool(files, train_eps, cameras, frame_fps)
        val = _load_pool(files, val_eps, cameras, frame_fps)
    finally:
        for file in files:
            file.close()

    model = ConvAETokenizer(cameras, image_size, latent_dim, downsample, width).to(device_)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    schedule = TrainLoopConfig(steps=steps, lr=lr, warmup_steps=max(1, steps // 20))  # 5%
    losses = []
    model.train()
    bar = tqdm(range(steps), desc="train conv_ae", unit="step", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(step, schedule)
        index = torch.from_numpy(rng.integers(0, len(train.images), size=batch_size))
        x = _to_model(train.images[index], device_)  # (B, 3, H, W)
        recon = model.decode_raw(model.encode_raw(x))
        loss = F.mse_loss(recon, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    bar.close()

    model.eval()
    stats_index = torch.from_numpy(
        rng.choice(len(train.images), size=min(len(train.images), 2048), replace=False)
    )
    mean, std = _latent_stats(model, train.images[stats_index], 2 * batch_size)
    model.latent_mean.copy_(mean)
    model.latent_std.copy_(std)

    val_true = val.images.float() / 255.0  # (M, H, W, 3)
    val_psnr = psnr(_reconstruct(model, val.images, 2 * batch_size), val_true).item()
    cam_means = torch.stack(
        [train.images[train.camera == c].float().mean(0) / 255.0 for c in range(len(cameras))]
    )  # (cameras, H, W, 3)
    baseline = psnr(cam_means[val.camera], val_true).item()
    metrics: dict[str, Any] = {
        "val_psnr": val_psnr,
        "val_psnr_mean_frame": baseline,
        "train_loss": float(np.mean(losses[-max(1, steps // 10) :])),
        "steps": steps,
        "train_episodes": len(train.episodes),
        "val_episodes": len(val.episodes),
        "train_images": len(train.images),
        "val_images": len(val.images),
        "seconds": time.perf_counter() - start,
    }
    training = {
        "datasets": [str(Path(p).resolve()) for p in dataset_paths],
        "held_out_episodes": val.episodes,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "held_out_fraction": held_out_fraction,
        "held_out_last": held_out_last,
        "frame_fps": frame_fps,
    }
    git = git_state()
    out = save_conv_ae(
        model.cpu(),
        out_path,
        metrics=metrics,
        training=training,
        git_commit=git["commit"],
        git_dirty=git["dirty"],
    )
    return {**metrics, "out_path": str(out)}
