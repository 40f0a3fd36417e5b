"""Drift figures and rollout / closed-loop videos, read back from disk."""

import imageio.v2 as imageio
import matplotlib.image
import numpy as np
import pytest

from worldmodel.evaluation.drift import DriftConfig, DriftResult
from worldmodel.evaluation.figures import plot_drift
from worldmodel.evaluation.videos import (
    HEADER_PX,
    closed_loop_video,
    horizon_label,
    side_by_side_video,
)

CAMERAS = ("head", "wrist")
T, SIZE, SCALE = 6, 32, 2


def drift_result(seed: int, growth: float) -> DriftResult:
    """PSNR curves of 5 episodes falling with the horizon (4 chunks)."""
    rng = np.random.default_rng(seed)
    psnr = 30.0 - growth * np.arange(4) + rng.normal(0.0, 1.0, (5, 4))  # (E, H)
    return DriftResult(DriftConfig(horizon=4), {"open_loop": {"psnr": psnr}})


def read_video(path) -> np.ndarray:
    return np.stack(imageio.mimread(path, memtest=False))  # (T, H, W, 3)


def test_plot_drift_writes_a_png_of_the_requested_size(tmp_path):
    results = {"single_step": drift_result(0, 3.0), "next_forcing": drift_result(1, 1.5)}
    path = plot_drift(results, "psnr", "open_loop", tmp_path / "figs" / "psnr.png", size=(640, 400))
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (400, 640)
    assert image[..., :3].var() > 0
    assert not list(path.parent.glob("*.tmp*"))  # written atomically, nothing left over
    with pytest.raises(ValueError, match="metric='fid' is not valid"):
        plot_drift(results, "fid", "open_loop", tmp_path / "x.png")
    with pytest.raises(ValueError, match="metric='latent_mse' is not measured in open_loop"):
        plot_drift(results, "latent_mse", "open_loop", tmp_path / "x.png")


def test_horizon_labels():
    starts = [2, 4, 6]
    labels = [horizon_label(t, starts) for t in range(8)]
    assert labels == ["context", "context", "h=1", "h=1", "h=2", "h=2", "h=3", "h=3"]


def camera_frames(seed: int) -> dict[str, np.ndarray]:
    """Smooth colour ramps (T, SIZE, SIZE, 3) uint8 per camera."""
    ramp = np.linspace(20, 100, SIZE)[None, :, None, None] + 5 * np.arange(T)[:, None, None, None]
    frames = np.broadcast_to(ramp, (T, SIZE, SIZE, 3)) + 20 * seed
    return {cam: (frames + 30 * i).astype(np.uint8) for i, cam in enumerate(CAMERAS)}


def test_side_by_side_video_tiles_real_imagined_and_difference(tmp_path):
    real = camera_frames(seed=0)
    imagined = {cam: x.copy() for cam, x in real.items()}
    for x in imagined.values():
        x[2:, :, SIZE // 2 :] += 60  # imagined chunks differ in the right half of every image
    path = side_by_side_video(
        real, imagined, tmp_path / "rollout.mp4", fps=5, horizon_starts=[2, 4]
    )
    video = read_video(path).astype(float)
    assert video.shape == (T, HEADER_PX + 3 * SIZE * SCALE, len(CAMERAS) * SIZE * SCALE, 3)
    panel = SIZE * SCALE

    def cell(row: int, column: int) -> np.ndarray:  # (T, SIZE, SIZE, 3), one pixel per source
        y0, x0 = HEADER_PX + row * panel, column * panel
        return video[:, y0 : y0 + panel : SCALE, x0 : x0 + panel : SCALE]

    for column, cam in enumerate(CAMERAS):
        assert np.abs(cell(0, column) - real[cam]).mean() < 3  # top: real
        assert np.abs(cell(1, column) - imagined[cam]).mean() < 3  # middle: imagined
        diff = cell(2, column)  # bottom: |real - imagined| * 4
        assert diff[:, 2:-2, 2 : SIZE // 2 - 2].max() < 12  # zero where they agree (+ codec noise)
        assert diff[:2].max() < 12  # context frames: imagined is real
        assert diff[2:, 2:-2, SIZE // 2 + 2 : -2].min() > 200  # |60| * 4 clips at 255
    headers = video[:, :HEADER_PX]
    assert headers.max() > 100  # text is drawn
    assert np.abs(headers[1] - headers[2]).max() > 100  # "context" -> "h=1"
    assert np.abs(headers[2] - headers[3]).max() < 30  # same chunk, same label


def test_closed_loop_video_marks_success_and_failure(tmp_path):
    frames = camera_frames(seed=1)
    fps, hold_s = 10, 0.5
    success = read_video(closed_loop_video(frames, tmp_path / "ok.mp4", fps, success_step=3))
    failure = read_video(
        closed_loop_video(frames, tmp_path / "fail.mp4", fps, success_step=None, hold_s=hold_s)
    )
    assert success.shape == (T + fps, HEADER_PX + SIZE * SCALE, len(CAMERAS) * SIZE * SCALE, 3)
    assert failure.shape[0] == T + round(hold_s * fps)

    def border(video):  # the middle of the left border of the tiles, (T, 3)
        return video[:, HEADER_PX + SIZE * SCALE // 2, 1].astype(int)

    green, red = np.array([0, 200, 0]), np.array([220, 0, 0])
    assert np.abs(border(success)[3:] - green).max() < 40
    assert np.abs(border(success)[:3] - green).min() > 40  # no border before success
    assert np.abs(border(failure)[T - 1 :] - red).max() < 40
    assert np.abs(border(failure)[: T - 1] - red).min() > 40
    with pytest.raises(ValueError, match="success_step=6 is not valid"):
        closed_loop_video(frames, tmp_path / "bad.mp4", fps, success_step=T)
