"""Drift figures and rollout / closed-loop videos, read back from disk."""

import imageio.v2 as imageio
import matplotlib.image
import numpy as np
import pytest

from worldmodel.evaluation.drift import DriftConfig, DriftResult
from worldmodel.evaluation.figures import plot_drift
from worldmodel.evaluation.videos import (
    HEADER_PX,
    MARGIN_PX,
    closed_loop_video,
    horizon_label,
    side_by_side_video,
    with_inset,
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


def test_closed_loop_video_marks_success_failure_and_chunk_starts(tmp_path):
    real, imagined = camera_frames(seed=1).values()
    panels = {"real": real, "imagined": imagined}
    fps, hold_s, starts = 10, 0.5, [0, 2, 4]
    success = read_video(
        closed_loop_video(panels, tmp_path / "ok.mp4", fps, 3, starts, scale=SCALE)
    )
    failure = read_video(
        closed_loop_video(
            panels, tmp_path / "fail.mp4", fps, None, starts, scale=SCALE, hold_s=hold_s
        )
    )
    assert success.shape == (T + fps, HEADER_PX + SIZE * SCALE, 2 * SIZE * SCALE, 3)
    assert failure.shape[0] == T + round(hold_s * fps)

    def border(video):  # the middle of the left border of the tiles, (T, 3)
        return video[:, HEADER_PX + SIZE * SCALE // 2, 1].astype(int)

    green, red = np.array([0, 200, 0]), np.array([220, 0, 0])
    assert np.abs(border(success)[3:] - green).max() < 40
    assert np.abs(border(success)[:3] - green).min() > 40  # no border before success
    assert np.abs(border(failure)[T - 1 :] - red).max() < 40
    assert np.abs(border(failure)[: T - 1] - red).min() > 40
    yellow = np.array([255, 210, 0])
    header_yellow = [
        (np.abs(frame[:HEADER_PX].astype(int) - yellow).sum(-1) < 90).sum() for frame in failure
    ]
    assert [n > 0 for n in header_yellow[:T]] == [True, False, True, False, True, False]
    below_labels = HEADER_PX + 2 * HEADER_PX + 4  # the panels' name labels end above this
    for column, source in enumerate((real, imagined)):  # each panel shows its frames
        x0 = column * SIZE * SCALE
        cell = failure[:T, below_labels:-4:SCALE, x0 + 8 : x0 + SIZE * SCALE - 4 : SCALE]
        expected = source[:, (below_labels - HEADER_PX) // SCALE : -2, 4:-2]
        assert np.abs(cell.astype(float) - expected[:, : cell.shape[1], : cell.shape[2]]).mean() < 4
    with pytest.raises(ValueError, match="success_step=6 is not valid"):
        closed_loop_video(panels, tmp_path / "bad.mp4", fps, success_step=T)
    with pytest.raises(ValueError, match="chunk_starts=\\[1, 3\\] is not valid"):
        closed_loop_video(panels, tmp_path / "bad.mp4", fps, None, [1, 3])


def test_inset_sits_in_the_first_panels_bottom_left_corner():
    panel = np.zeros((256, 256, 3), np.uint8)
    inset = np.full((32, 32, 3), 200, np.uint8)
    out = with_inset(panel, inset)  # upscaled 2x: 64 px, framed in white, MARGIN_PX in
    top, left = 256 - MARGIN_PX - 66, MARGIN_PX
    assert (out[top + 1 : top + 65, left + 1 : left + 65] == 200).all()
    assert (out[top, left : left + 66] == 255).all()  # the white frame
    assert out[:top].max() == 0 and out[:, left + 66 :].max() == 0  # nothing else drawn
