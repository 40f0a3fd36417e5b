"""Rollout and closed-loop videos people look at: mp4 via ``worldmodel.media.write_video``.

Frames are camera -> (T, H, W, 3), uint8 or float in [0, 1] (tensors or arrays). Every video
frame is a black header strip of ``HEADER_PX`` pixels with the frame's label (text drawn with
Pillow's built-in font), above the camera tiles, upscaled ``scale`` times (nearest neighbour).

``side_by_side_video``: cameras side by side (in ``cameras`` order); each camera is a column of
three panels, top to bottom: real, imagined, and the difference ``|real - imagined| *
DIFF_GAIN`` (per channel, on the 0..255 scale, clipped at 255: an error of 64/255 or more is
full brightness, zero where the two agree). The header says ``context`` before the first
imagined chunk and ``h=1``.. ``h=H`` from each chunk's first frame on.

``closed_loop_video``: one frame per control step, named panels side by side (the real view
and the imagined one), each labelled with its name in its top-left corner; the policy's input
as an inset in the bottom-left corner of the first panel (an image, or a text label where the
input is no image). Header: ``t=<control step>``, ``chunk <k>`` (yellow, with ``new chunk``,
on the step where chunk k starts); from ``success_step`` on, a green border and ``SUCCESS``;
an episode without success gets a red border and ``FAIL`` on its final frame. The final frame
is held for ``hold_s`` seconds so the verdict stays readable (the video has
T + round(hold_s * fps) frames).
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from worldmodel.media import tile_cameras, upscale, write_video

HEADER_PX = 16
FONT_PX = 12
DIFF_GAIN = 4
BORDER_PX = 2  # before upscaling
MARGIN_PX = 6  # labels and insets keep this far from a panel's edges
INSET_SHARE = 3  # an inset is at most 1/INSET_SHARE of its panel's height
WHITE, GREEN, RED, YELLOW = (255, 255, 255), (0, 200, 0), (220, 0, 0), (255, 210, 0)


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_PX)


def header(width: int, texts: Sequence[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """A black strip (HEADER_PX, width, 3) uint8 with ``(text, rgb)`` items left to right."""
    strip = Image.new("RGB", (width, HEADER_PX))
    draw = ImageDraw.Draw(strip)
    x = 3.0
    for text, color in texts:
        draw.text((x, 1), text, fill=color, font=_font())
        x += draw.textlength(text, font=_font()) + 8
    return np.asarray(strip)


def as_uint8(frames) -> np.ndarray:
    """(..., H, W, 3) uint8 or float in [0, 1], tensor or array -> uint8 array."""
    frames = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else frames
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames: expected uint8 or float in [0, 1], got {frames.dtype}")
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def _camera_frames(frames: Mapping, cameras: Sequence[str] | None, name: str) -> dict:
    """camera -> (T, H, W, 3) uint8 of the chosen cameras, all with the same T."""
    cameras = list(frames) if cameras is None else list(cameras)
    missing = [c for c in cameras if c not in frames]
    if not cameras or missing:
        raise ValueError(f"{name}: cameras {missing or cameras} not among {list(frames)}")
    out = {cam: as_uint8(frames[cam]) for cam in cameras}
    shapes = {cam: x.shape for cam, x in out.items()}
    if any(len(s) != 4 or s[-1] != 3 for s in shapes.values()):
        raise ValueError(f"{name}: expected camera -> (T, H, W, 3), got shapes {shapes}")
    if len({s[0] for s in shapes.values()}) != 1:
        raise ValueError(f"{name}: cameras have different frame counts {shapes}")
    return out


def _with_header(tiles: np.ndarray, texts, scale: int) -> np.ndarray:
    """Tiles (H, W, 3) upscaled, under a header strip -> (HEADER_PX + H*scale, W*scale, 3)."""
    big = upscale(tiles, scale)
    return np.concatenate([header(big.shape[1], texts), big], axis=0)


def horizon_label(t: int, horizon_starts: Sequence[int]) -> str:
    """``context`` before ``horizon_starts[0]``, else ``h=k`` for the k-th chunk started."""
    h = bisect.bisect_right(horizon_starts, t)
    return "context" if h == 0 else f"h={h}"


def difference(real: np.ndarray, imagined: np.ndarray) -> np.ndarray:
    """``|real - imagined| * DIFF_GAIN`` clipped to 255, uint8, same shape."""
    diff = np.abs(real.astype(np.int16) - imagined.astype(np.int16)) * DIFF_GAIN
    return np.minimum(diff, 255).astype(np.uint8)


def side_by_side_video(
    real: Mapping,
    imagined: Mapping,
    path: Path,
    fps: float,
    horizon_starts: Sequence[int],
    cameras: Sequence[str] | None = None,
    scale: int = 2,
) -> Path:
    """mp4 of real | imagined | difference per camera (module docstring); ``horizon_starts``
    are the frame indices where the imagined chunks h = 1..H begin (increasing)."""
    real = _camera_frames(real, cameras, "real")
    imagined = _camera_frames(imagined, list(real), "imagined")
    bad = [c for c in real if real[c].shape != imagined[c].shape]
    if bad:
        raise ValueError(f"imagined frames of {bad} differ in shape from the real ones")
    T = next(iter(real.values())).shape[0]
    starts = list(horizon_starts)
    if starts != sorted(set(starts)) or any(not 0 <= s < T for s in starts):
        raise ValueError(
            f"horizon_starts={starts} is not valid; must be increasing frame indices in 0..{T - 1}"
        )

    def frame(t: int) -> np.ndarray:
        columns = {
            cam: np.concatenate(
                [real[cam][t], imagined[cam][t], difference(real[cam][t], imagined[cam][t])],
                axis=0,
            )  # (3H, W, 3)
            for cam in real
        }
        return _with_header(tile_cameras(columns), [(horizon_label(t, starts), WHITE)], scale)

    return write_video(path, (frame(t) for t in range(T)), fps)


def with_border(image: np.ndarray, color: tuple[int, int, int], width: int) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) whose outer ``width`` pixels are ``color``."""
    out = image.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def label(image: np.ndarray, text: str, corner: str = "top") -> np.ndarray:
    """A copy of ``image`` (H, W, 3) with ``text`` in white on black at its top-left or
    bottom-left corner, ``MARGIN_PX`` in (clear of the verdict border)."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    width = draw.textlength(text, font=_font())
    x, y = MARGIN_PX, MARGIN_PX if corner == "top" else image.shape[0] - HEADER_PX - MARGIN_PX
    draw.rectangle((x, y, x + width + 5, y + HEADER_PX - 1), fill=(0, 0, 0))
    draw.text((x + 3, y + 1), text, fill=WHITE, font=_font())
    return np.asarray(picture)


def with_inset(panel: np.ndarray, inset: np.ndarray) -> np.ndarray:
    """A copy of ``panel`` (H, W, 3) with ``inset`` (h, w, 3), upscaled by the largest integer
    factor that keeps it within 1/INSET_SHARE of the panel's height, framed in white at the
    bottom-left corner, ``MARGIN_PX`` in."""
    factor = max(1, panel.shape[0] // INSET_SHARE // inset.shape[0])
    framed = with_border(np.pad(upscale(inset, factor), ((1, 1), (1, 1), (0, 0))), WHITE, 1)
    h, w = framed.shape[0] + MARGIN_PX, framed.shape[1] + MARGIN_PX
    if h > panel.shape[0] or w > panel.shape[1]:
        raise ValueError(f"inset {inset.shape} does not fit in a panel of {panel.shape}")
    out = panel.copy()
    out[panel.shape[0] - h : panel.shape[0] - MARGIN_PX, MARGIN_PX:w] = framed
    return out


def closed_loop_video(
    panels: Mapping,
    path: Path,
    fps: float,
    success_step: int | None,
    chunk_starts: Sequence[int] = (),
    inset: np.ndarray | None = None,
    inset_label: str | None = None,
    scale: int = 1,
    hold_s: float = 1.0,
) -> Path:
    """mp4 of a closed-loop episode (module docstring): ``panels`` name -> (T, H, W, 3), side
    by side; marked SUCCESS from ``success_step`` (the first control step at which the task is
    solved) on, or FAIL at the end when it is None. ``chunk_starts``: the control steps at
    which the chunks started (increasing, the first 0). ``inset`` (T, h, w, 3) or
    ``inset_label``: the policy's input, drawn into the first panel."""
    frames = _camera_frames(panels, None, "panels")
    T = next(iter(frames.values())).shape[0]
    if len({x.shape[1] for x in frames.values()}) != 1:
        raise ValueError(
            f"panels must have one height, got { {k: x.shape for k, x in frames.items()} }"
        )
    if success_step is not None and not 0 <= success_step < T:
        raise ValueError(f"success_step={success_step} is not valid; must be in 0..{T - 1}")
    starts = list(chunk_starts)
    if starts and (starts != sorted(set(starts)) or starts[0] != 0 or starts[-1] >= T):
        raise ValueError(
            f"chunk_starts={starts} is not valid; must be increasing control steps from 0 "
            f"to at most {T - 1}"
        )
    if inset is not None:
        inset = as_uint8(inset)
        if inset.shape[0] != T:
            raise ValueError(f"inset has {inset.shape[0]} frames, the panels {T}")

    def frame(t: int) -> np.ndarray:
        tiles = []
        for index, (name, x) in enumerate(frames.items()):
            panel = upscale(x[t], scale)
            if index == 0 and inset is not None:
                panel = with_inset(panel, inset[t])
            if index == 0 and inset_label is not None:
                panel = label(panel, inset_label, corner="bottom")
            tiles.append(label(panel, name))
        tiles = np.concatenate(tiles, axis=1)  # (H, W_total, 3)
        texts = [(f"t={t}", WHITE)]
        if starts:
            chunk = bisect.bisect_right(starts, t) - 1
            new = starts[chunk] == t
            texts.append(
                (f"chunk {chunk}" + (" new chunk" if new else ""), YELLOW if new else WHITE)
            )
        border = BORDER_PX * max(scale, tiles.shape[0] // 128)
        if success_step is not None and t >= success_step:
            tiles, texts = with_border(tiles, GREEN, border), [*texts, ("SUCCESS", GREEN)]
        elif success_step is None and t == T - 1:
            tiles, texts = with_border(tiles, RED, border), [*texts, ("FAIL", RED)]
        return _with_header(tiles, texts, 1)

    held = [frame(T - 1)] * (1 + round(hold_s * fps))
    return write_video(path, itertools.chain((frame(t) for t in range(T - 1)), held), fps)
