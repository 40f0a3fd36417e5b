"""PSNR and SSIM against scikit-image's reference (Wang et al. 2004 settings)."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from worldmodel.evaluation.image_metrics import PSNR_CAP_DB, gaussian_window, mse, psnr, ssim


def reference_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        a,
        b,
        channel_axis=-1,
        data_range=data_range,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


@pytest.fixture(scope="module")
def real_frames() -> np.ndarray:
    """Two head-camera frames of one expert episode, 20 control steps apart (2, 64, 64, 3)."""
    env = TabletopEnv("stack_blocks_two", "clean", cameras=("head",))
    observation, _ = env.reset(seed=0)
    expert = ScriptedExpert(env)
    expert.reset()
    frames = [observation["images"]["head"]]
    for _ in range(20):
        observation, *_ = env.step(expert.act())
    frames.append(observation["images"]["head"])
    env.close()
    return np.stack(frames)


def noisy_copy(images: np.ndarray, seed: int, amplitude: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-amplitude, amplitude + 1, images.shape)
    return np.clip(images.astype(int) + noise, 0, 255).astype(np.uint8)


def test_gaussian_window_is_skimages_11_taps():
    window = gaussian_window()
    assert window.numel() == 11  # 2 * int(3.5 * 1.5 + 0.5) + 1
    assert window.sum().item() == pytest.approx(1.0)
    assert window[0].item() == pytest.approx(window[-1].item())
    assert window.argmax().item() == 5


@pytest.mark.parametrize("shape", [(3, 16, 16, 3), (2, 2, 11, 23, 3)])
def test_ssim_and_psnr_match_skimage_on_random_images(shape):
    rng = np.random.default_rng(0)
    a = rng.random(shape)
    b = np.clip(a + rng.normal(0.0, 0.1, shape), 0.0, 1.0)
    ours_ssim, ours_psnr = ssim(a, b).numpy(), psnr(a, b).numpy()
    assert ours_ssim.shape == ours_psnr.shape == shape[:-3]
    flat_a, flat_b = a.reshape(-1, *shape[-3:]), b.reshape(-1, *shape[-3:])
    pairs = list(zip(flat_a, flat_b, strict=True))
    expected_ssim = [reference_ssim(x, y, 1.0) for x, y in pairs]
    expected_psnr = [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in pairs]
    np.testing.assert_allclose(ours_ssim.reshape(-1), expected_ssim, atol=1e-4)
    np.testing.assert_allclose(ours_psnr.reshape(-1), expected_psnr, atol=1e-6)


def test_ssim_matches_skimage_on_real_frames(real_frames):
    pairs = [
        (real_frames[0], real_frames[1]),  # the arm moved
        (real_frames[0], noisy_copy(real_frames[0], seed=1, amplitude=20)),
    ]
    for a, b in pairs:
        expected = reference_ssim(a, b, data_range=255)
        assert ssim(a, b).item() == pytest.approx(expected, abs=1e-4)
        assert psnr(a, b).item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    # uint8 frames are the same images as their [0, 1] floats, and the pair may mix dtypes
    a, b = pairs[1]
    as_float = torch.from_numpy(b).float() / 255.0
    assert ssim(a, as_float).item() == pytest.approx(ssim(a, b).item(), abs=1e-6)


def test_identical_images_give_inf_psnr_and_ssim_one(real_frames):
    frame = real_frames[0]
    assert psnr(frame, frame).item() == float("inf")
    assert ssim(frame, frame).item() == pytest.approx(1.0)
    assert mse(frame, frame).item() == 0.0
    assert PSNR_CAP_DB == 100.0


def test_psnr_hand_values():
    a = torch.zeros(2, 12, 12, 3)
    b = torch.full((2, 12, 12, 3), 0.1)
    b[1] = 0.01
    np.testing.assert_allclose(psnr(a, b).numpy(), [20.0, 40.0], rtol=1e-5)
    np.testing.assert_allclose(psnr(a, b, data_range=2.0).numpy(), [26.0206, 46.0206], rtol=1e-5)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((4, 12, 3)), np.zeros((4, 12, 3)), "ssim needs images of at least 11x11"),
        (np.zeros((12, 12, 3)), np.zeros((13, 12, 3)), "same shape"),
        (np.zeros((12, 12, 3), np.int64), np.zeros((12, 12, 3)), "expected uint8 or float"),
        (np.zeros((12, 3)), np.zeros((12, 3)), r"expected images \(\.\.\., H, W, c\)"),
    ],
)
def test_bad_input_raises(a, b, match):
    with pytest.raises(ValueError, match=match):
        ssim(a, b)
