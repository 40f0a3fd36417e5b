"""Frame rates in the paper's units (``worldmodel/timing.py``) against hand values: the
paper's 12 / 25 / 50 fps are video frame rates, and a latent frame holds 4 video frames
(lingbot-va ``wan_va/configs/va_robotwin_cfg.py``: ``action_per_frame = 16`` at 12.5 fps)."""

import pytest

from worldmodel.timing import FrameRate, kept_frames

PAPER_RATES = [
    # fps, actions per latent frame, latent fps, seconds per latent frame, per chunk of 2
    (50.0, 4, 12.5, 0.08, 0.16),
    (25.0, 8, 6.25, 0.16, 0.32),
    (12.5, 16, 3.125, 0.32, 0.64),
]


@pytest.mark.parametrize(("fps", "actions", "latent_fps", "frame_s", "chunk_s"), PAPER_RATES)
def test_each_paper_rate_runs_the_references_actions_per_latent_frame(
    fps, actions, latent_fps, frame_s, chunk_s
):
    rate = FrameRate(fps)
    assert rate.frames_per_latent == 4 and rate.control_hz == 50.0
    assert rate.actions_per_latent_frame == actions
    assert rate.latent_fps == pytest.approx(latent_fps)
    assert rate.seconds_per_latent_frame == pytest.approx(frame_s)
    assert rate.seconds_per_chunk(2) == pytest.approx(chunk_s)
    assert rate.describe(2) == (
        f"fps {fps:g} ({actions} actions per latent frame, {chunk_s:.2f} s per chunk of 2)"
    )


def test_one_video_frame_per_latent_frame_is_the_old_latent_rate():
    """Runs made before the paper's units read fps as the latent rate: frames_per_latent 1."""
    assert FrameRate(12.5, frames_per_latent=1).actions_per_latent_frame == 4
    assert FrameRate(50.0, frames_per_latent=1).actions_per_latent_frame == 1
    assert FrameRate(50.0, frames_per_latent=1).latent_fps == 50.0


@pytest.mark.parametrize(
    ("fps", "frames_per_latent", "message"),
    [
        (7.0, 4, "fps=7: control_hz / fps must be a positive integer"),
        (100.0, 4, "fps=100: control_hz / fps must be a positive integer"),
        (50.0, 0, "frames_per_latent=0 is not valid"),
    ],
)
def test_rates_the_control_clock_cannot_run_are_refused(fps, frames_per_latent, message):
    with pytest.raises(ValueError, match=message):
        FrameRate(fps, frames_per_latent)


@pytest.mark.parametrize(
    ("steps", "stride", "frames"),
    [(10, 4, [0, 4, 8]), (8, 4, [0, 4, 8]), (3, 4, [0]), (5, 1, [0, 1, 2, 3, 4, 5])],
)
def test_kept_frames_drop_a_trailing_partial_stride(steps, stride, frames):
    observations = list(range(steps + 1))  # o_0 .. o_T
    assert observations[kept_frames(steps, stride)] == frames
