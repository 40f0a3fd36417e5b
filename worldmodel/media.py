"""Frames to pictures people look at: camera tiles, contact sheets and mp4 videos."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from worldmodel.atomic import atomic_path


def tile_cameras(images: Mapping[str, np.ndarray]) -> np.ndarray:
    """Camera frames (H, W, 3) side by side, in the mapping's order -> (H, sum W, 3)."""
    return np.concatenate(list(images.values()), axis=1)


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so 64x64 frames stay crisp in a player."""
    return frame.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else frame


def resize_nearest(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., H, W, 3) -> (..., height, width, 3) by nearest neighbour (crisp blocks)."""
    rows = np.arange(height) * frames.shape[-3] // height
    columns = np.arange(width) * frames.shape[-2] // width
    return frames[..., rows, :, :][..., columns, :]


def contact_sheet(rows: Iterable[Iterable[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Frames arranged in a grid (one row per iterable), separated by white gaps."""
    rendered = []
    for row in rows:
        frames = list(row)
        height = frames[0].shape[0]
        spacer = np.full((height, gap, 3), 255, np.uint8)
        cells = [x for frame in frames for x in (frame, spacer)][:-1]
        rendered.append(np.concatenate(cells, axis=1))
    width = max(r.shape[1] for r in rendered)
    padded = [
        np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255)
        for r in rendered
    ]
    return np.concatenate(padded, axis=0)[:-gap]


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write a PNG atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        imageio.imwrite(tmp, image)
    return Path(path)


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Write an H.264 mp4 atomically; frame sizes are padded to even numbers for the codec."""
    with (
        atomic_path(path) as tmp,
        imageio.get_writer(
            tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1, ffmpeg_log_level="error"
        ) as writer,
    ):
        for frame in frames:
            pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
            writer.append_data(np.pad(frame, pad))
    return Path(path)
