"""Rollout drift: exact curves of a copy-last-frame model on linear episodes, and every regime
of a real tiny Next-Forcing model in standard and mcp_parallel mode."""

import copy
import itertools
import json

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from tests.tiny_models import randomise, tiny_config
from worldmodel.evaluation.drift import (
    REGIMES,
    DriftConfig,
    DriftEpisodes,
    DriftResult,
    first_crossing,
    measure_drift,
    summarise_curve,
)
from worldmodel.flow import expand_like
from worldmodel.heads import WorldModelWithHeads, heads_preset
from worldmodel.model import WorldModel
from worldmodel.model.layout import CLEAN_VIDEO
from worldmodel.tokenizer import PatchTokenizer
from worldmodel.training.windows import EpisodeLatents, fit_action_codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

E, CONTEXT, HORIZON = 2, 1, 3
TOKENIZER = PatchTokenizer(cameras=("head", "wrist"), image_size=(12, 12), patch=6)
N, C = TOKENIZER.tokens_per_frame, TOKENIZER.latent_dim  # 8 tokens of 108 values
CONFIG = tiny_config(tokens_per_frame=N, latent_dim=C)  # K = 2, A = 2, d = 3, relative


def velocity_towards(x, target, sigma):
    """The flow velocity that takes ``x`` at per-frame levels ``sigma`` (B, K) to ``target``
    at level 0: (x - target) / sigma (0 where sigma is 0: a clamped frame)."""
    s = expand_like(sigma, x)
    return torch.where(s > 0, (x - target) / s.clamp_min(1e-12), torch.zeros_like(x))


class CopyLastFrame(WorldModel):
    """Predicts the last appended frame (and the actions, in model units, of the last appended
    frame), repeated over the chunk: its velocities lead the Euler steps there. The backbone
    still runs every append and prediction, so the KV-cache bookkeeping is real."""

    def init_cache(self, batch_size=None):
        cache = super().init_cache(batch_size)
        cache.videos, cache.actions = [], []
        return cache

    def append_clean_segments(self, cache, segments, hidden_states=None):
        for segment in segments:
            kept = cache.videos if segment.kind == CLEAN_VIDEO else cache.actions
            kept.append(segment.values)
        return super().append_clean_segments(cache, segments, hidden_states)

    def predict_video_velocity(self, cache, noisy, sigma, hidden_states=None):
        super().predict_video_velocity(cache, noisy, sigma, hidden_states)
        last = cache.videos[-1][:, -1:]  # (B, 1, N, C)
        return velocity_towards(noisy, last.expand_as(noisy), sigma)

    def predict_action_velocity(self, cache, noisy, sigma):
        super().predict_action_velocity(cache, noisy, sigma)
        last = cache.actions[-1][:, -1:]  # (B, 1, A, d) model units
        return velocity_towards(noisy, last.expand_as(noisy), sigma)


def fit_codec(model: WorldModel, episodes: DriftEpisodes) -> None:
    """Fit the model's action codec on the episodes (windows from an episode's frame 0)."""
    fit_action_codec(
        model.action_codec,
        [
            EpisodeLatents(e, latents, actions, valid, start)
            for e, (latents, actions, valid, start) in enumerate(
                zip(
                    episodes.latents,
                    episodes.actions,
                    episodes.action_valid,
                    episodes.start_joint_pos,
                    strict=True,
                )
            )
        ],
        model.config.K,
    )


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image's SSIM with the Wang et al. 2004 settings, floats in [0, 1]."""
    return structural_similarity(
        a,
        b,
        channel_axis=-1,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


def linear_episodes(frames: int = 10, seed: int = 0, joint_step: float = 0.0):
    """Latents x_f = f * v and actions a_f = f * u per episode (a_0 = 0 is frame 0's padded
    token); the joint positions each frame's actions start from are 3 p + f * joint_step * w,
    p and w random per episode; real frames = decoded latents."""
    g = torch.Generator().manual_seed(seed)
    f = torch.arange(frames, dtype=torch.float64)
    v = (torch.rand(E, 1, N, C, generator=g, dtype=torch.float64) - 0.5) / 2  # |f v| < 2
    u = torch.randn(E, 1, CONFIG.actions_per_frame, CONFIG.action_dim, generator=g)
    p, w = torch.randn(2, E, 1, CONFIG.action_dim, generator=g, dtype=torch.float64)
    latents = f[None, :, None, None] * v  # (E, F, N, C)
    actions = f[None, :, None, None] * u.double()  # (E, F, A, d)
    start_joint_pos = 3 * p + joint_step * f[None, :, None] * w  # (E, F, d)
    action_valid = torch.ones(E, frames, dtype=torch.bool)
    action_valid[:, 0] = False
    real = TOKENIZER.decode(latents)  # decoding is exact while 0.5 + 0.25 x stays in [0, 1]
    episodes = DriftEpisodes(latents, actions, start_joint_pos, action_valid, frames=real)
    return episodes, v.square().mean((1, 2, 3)).numpy(), u.double().square().mean((1, 2, 3)).numpy()


def test_copy_last_frame_gives_the_known_curves():
    # constant joint positions per episode: a relative action copied from the previous chunk
    # decodes (against this chunk's reference, the same) to the copied raw action
    episodes, v2, u2 = linear_episodes()
    model = CopyLastFrame(CONFIG).double()
    fit_codec(model, episodes)
    assert model.action_codec.relative.all() and (model.action_codec.scale != 1).all()
    # K = 2, context of 1 chunk (frames 0, 1): imagined chunk h covers frames 2h, 2h + 1
    # teacher-forced: the copy of frame 2h - 1 is off by 1 and 2 frames -> (1 + 4) / 2 = 2.5
    # open loop: the copy of frame 1 is off by 2h - 1 and 2h frames -> 2.5, 12.5, 30.5
    one_step = np.array([2.5, 2.5, 2.5])
    growing = np.array([2.5, 12.5, 30.5])
    threshold = 7.5 * v2.mean()
    config = DriftConfig(CONTEXT, HORIZON, steps=1, thresholds={"latent_mse": threshold})
    result = measure_drift(model, episodes, config, tokenizer=TOKENIZER)

    expected_latent = {"teacher_forced": one_step, "open_loop": growing, "autoregressive": growing}
    for regime, curve in expected_latent.items():
        np.testing.assert_allclose(result.curve(regime, "latent_mse"), v2[:, None] * curve)
        # the patch tokenizer maps latent x to pixel 0.5 + 0.25 x: pixel MSE = latent MSE / 16
        np.testing.assert_allclose(
            result.curve(regime, "pixel_mse"), v2[:, None] * curve / 16, rtol=1e-5
        )
    np.testing.assert_allclose(result.curve("teacher_forced", "action_mse"), u2[:, None] * one_step)
    np.testing.assert_allclose(result.curve("autoregressive", "action_mse"), u2[:, None] * growing)
    assert set(result.curves["open_loop"]) == {"latent_mse", "pixel_mse", "psnr", "ssim"}

    # per image PSNR and SSIM, averaged over the chunk's 2 frames and the 2 cameras; the
    # imagined frames of chunk h copy frame 2h - 1 (teacher-forced) or frame 1 (open loop)
    for regime, copied in (("teacher_forced", lambda h: 2 * h - 1), ("open_loop", lambda h: 1)):
        psnr_curve, ssim_curve = np.zeros((E, HORIZON)), np.zeros((E, HORIZON))
        for e, h, cam, frame in itertools.product(
            range(E), range(1, HORIZON + 1), TOKENIZER.cameras, (0, 1)
        ):
            source, target = copied(h), 2 * h + frame
            v_cam = episodes.latents[e, 1].split(N // 2)[TOKENIZER.cameras.index(cam)]  # v
            image_mse = (target - source) ** 2 * v_cam.square().mean().item() / 16
            psnr_curve[e, h - 1] += -10 * np.log10(image_mse) / 4
            imagined = TOKENIZER.decode(episodes.latents[e, source])[cam].numpy()
            real = episodes.frames[cam][e, target].numpy()
            ssim_curve[e, h - 1] += reference_ssim(imagined, real) / 4
        np.testing.assert_allclose(result.curve(regime, "psnr"), psnr_curve, rtol=1e-5)
        np.testing.assert_allclose(result.curve(regime, "ssim"), ssim_curve, atol=1e-4)

    summary = result.summary("open_loop", "latent_mse")
    m = v2.mean()
    assert summary.at_h1 == pytest.approx(2.5 * m) and summary.at_hH == pytest.approx(30.5 * m)
    assert summary.auc == pytest.approx((7.5 + 21.5) / 2 * m)  # trapezoid / (H - 1)
    assert summary.slope == pytest.approx(14.0 * m)
    assert summary.crossing == pytest.approx(1.5)  # 7.5 is half-way from 2.5 to 12.5
    assert result.summary("teacher_forced", "latent_mse").crossing is None
    assert result.summary("teacher_forced", "latent_mse").slope == pytest.approx(0.0, abs=1e-12)


def test_action_mse_is_raw_over_real_tokens_against_each_chunks_reference():
    """Joint positions s_f = s_0 + f w: the copy is of relative actions, decoded against the
    reference of the chunk it is copied into (its first frame, s_2h for chunk h)."""
    episodes, _, _ = linear_episodes(joint_step=1.0)
    episodes.action_valid[0, 2] = False  # episode 0: the token of frame 2 (chunk 1) is padding
    model = CopyLastFrame(CONFIG).double()
    fit_codec(model, episodes)
    config = DriftConfig(CONTEXT, HORIZON, steps=1, regimes=["teacher_forced", "autoregressive"])
    result = measure_drift(model, episodes, config)
    u = episodes.actions[:, 1].numpy()  # (E, A, d): a_1 = u
    w = (episodes.start_joint_pos[:, 1] - episodes.start_joint_pos[:, 0]).numpy()[:, None]
    valid = episodes.action_valid.numpy()

    def expected(error):  # error(h, k) -> (E, A, d) raw error at frame 2h + k
        curve = np.zeros((E, HORIZON))
        for h in range(1, HORIZON + 1):
            per_frame = np.stack([np.square(error(h, k)).mean((1, 2)) for k in (0, 1)], 1)
            keep = valid[:, 2 * h : 2 * h + 2]  # (E, 2)
            curve[:, h - 1] = (per_frame * keep).sum(1) / keep.sum(1)
        return curve

    # teacher-forced chunk h copies frame 2h - 1 (relative to s_{2h-2}) onto s_2h:
    # a_{2h-1} + 2w - a_{2h+k} = 2w - (k + 1) u
    np.testing.assert_allclose(
        result.curve("teacher_forced", "action_mse"), expected(lambda h, k: 2 * w - (k + 1) * u)
    )
    # autoregressive chunk h copies frame 1 (relative to s_0) onto s_2h:
    # a_1 + 2h w - a_{2h+k} = 2h w - (2h + k - 1) u
    np.testing.assert_allclose(
        result.curve("autoregressive", "action_mse"),
        expected(lambda h, k: 2 * h * w - (2 * h + k - 1) * u),
    )
    # episode 0's first imagined chunk counts frame 3 alone: (2w - 2u)^2
    tf = result.curve("teacher_forced", "action_mse")
    assert tf[0, 0] == pytest.approx(np.square(2 * w[0] - 2 * u[0]).mean())


def test_summary_hand_values():
    curve = np.array([30.0, 25.0, 18.0, 17.0])  # a PSNR curve, dB
    summary = summarise_curve(curve, threshold=20.0, higher_is_better=True)
    assert summary.at_h1 == 30.0 and summary.at_hH == 17.0
    assert summary.auc == pytest.approx((27.5 + 21.5 + 17.5) / 3)
    assert summary.slope == pytest.approx(-23.0 / 5.0)  # sum (h - 2.5)(y - 22.5) / sum (h - 2.5)^2
    assert summary.crossing == pytest.approx(2 + 5 / 7)
    assert first_crossing(curve, 40.0, higher_is_better=True) == 1.0
    assert first_crossing(curve, 10.0, higher_is_better=True) is None
    assert first_crossing(np.array([0.1, 0.3]), 0.2, higher_is_better=False) == pytest.approx(1.5)
    single = summarise_curve(np.array([0.4]), threshold=None, higher_is_better=False)
    assert (single.auc, single.slope, single.crossing) == (0.4, None, None)


@pytest.fixture(scope="module")
def random_heads_model():
    torch.manual_seed(0)
    model = WorldModelWithHeads(CONFIG, heads_preset("next_forcing"))
    randomise(model, std=0.2)
    fit_codec(model, random_episodes())
    return model


def random_episodes(frames: int = (CONTEXT + HORIZON) * CONFIG.K, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    shape = (E, frames, *TOKENIZER.image_size, 3)
    images = {
        cam: torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        for cam in TOKENIZER.cameras
    }
    latents = TOKENIZER.encode(images)  # (E, F, N, C)
    actions = torch.randn(E, frames, CONFIG.actions_per_frame, CONFIG.action_dim, generator=g)
    actions[:, 0] = 0.0  # frame 0's padded token
    start_joint_pos = torch.randn(E, frames, CONFIG.action_dim, generator=g)
    action_valid = torch.ones(E, frames, dtype=torch.bool)
    action_valid[:, 0] = False
    return DriftEpisodes(latents, actions, start_joint_pos, action_valid, frames=images)


def test_real_model_every_regime_and_mode(random_heads_model):
    model, episodes = random_heads_model, random_episodes()
    results = {
        mode: measure_drift(
            model, episodes, DriftConfig(CONTEXT, HORIZON, steps=2, mode=mode, seed=3), TOKENIZER
        )
        for mode in ("standard", "mcp_parallel")
    }
    for result in results.values():
        assert list(result.curves) == list(REGIMES)
        for metrics in result.curves.values():
            for name, values in metrics.items():
                assert values.shape == (E, HORIZON) and np.isfinite(values).all(), name
            assert ((metrics["ssim"] >= -1) & (metrics["ssim"] <= 1)).all()
        for metric in ("latent_mse", "pixel_mse", "psnr", "ssim"):
            np.testing.assert_array_equal(
                result.curve("teacher_forced", metric)[:, 0],
                result.curve("open_loop", metric)[:, 0],
            )
    standard, parallel = results["standard"], results["mcp_parallel"]
    # teacher forcing is the backbone's one-step prediction in both modes; the rollouts differ
    # from h = 2 on, where depth 1 imagines the chunk in mcp_parallel mode
    for metric in ("latent_mse", "action_mse"):
        np.testing.assert_array_equal(
            standard.curve("teacher_forced", metric), parallel.curve("teacher_forced", metric)
        )
    np.testing.assert_array_equal(
        standard.curve("open_loop", "latent_mse")[:, 0],
        parallel.curve("open_loop", "latent_mse")[:, 0],
    )
    assert not np.allclose(
        standard.curve("open_loop", "latent_mse")[:, 1],
        parallel.curve("open_loop", "latent_mse")[:, 1],
    )
    restored = DriftResult.from_dict(json.loads(json.dumps(parallel.to_dict(), allow_nan=False)))
    assert restored.config == parallel.config
    assert restored.summary("autoregressive", "psnr") == parallel.summary("autoregressive", "psnr")
    assert model.training  # measure_drift restores the mode it found


def test_dropped_heads_run_standard_only(random_heads_model):
    model = copy.deepcopy(random_heads_model)
    model.drop_heads()
    episodes = random_episodes()
    config = DriftConfig(CONTEXT, 2, steps=1, regimes=["open_loop", "autoregressive"])
    result = measure_drift(model, episodes, config)  # latent and action metrics only
    assert set(result.curves["autoregressive"]) == {"latent_mse", "action_mse"}
    assert result.curve("open_loop", "latent_mse").shape == (E, 2)
    with pytest.raises(ValueError, match="mode='mcp_parallel' needs"):
        measure_drift(model, episodes, DriftConfig(CONTEXT, 2, steps=1, mode="mcp_parallel"))


def test_bad_input_raises(random_heads_model):
    episodes = random_episodes()
    with pytest.raises(ValueError, match="need 10: lengthen the windows"):
        measure_drift(random_heads_model, episodes, DriftConfig(CONTEXT, HORIZON + 1))
    no_frames = DriftEpisodes(
        episodes.latents, episodes.actions, episodes.start_joint_pos, episodes.action_valid
    )
    with pytest.raises(ValueError, match=r"real frames of camera\(s\) \['head', 'wrist'\]"):
        measure_drift(random_heads_model, no_frames, DriftConfig(CONTEXT, 1), TOKENIZER)
    with pytest.raises(ValueError, match="regimes="):
        DriftConfig(regimes=["open_loop", "closed_loop"])
    with pytest.raises(ValueError, match="thresholds names unknown metric"):
        DriftConfig(thresholds={"fid": 1.0})
    parts = (episodes.latents, episodes.actions, episodes.start_joint_pos, episodes.action_valid)
    for i, name in enumerate(("actions", "start_joint_pos", "action_valid"), start=1):
        cut = list(parts)
        cut[i] = cut[i][:1]
        with pytest.raises(ValueError, match=rf"^{name} \(E, F\)"):
            DriftEpisodes(*cut)
