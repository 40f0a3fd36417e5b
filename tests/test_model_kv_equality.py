"""The teacher-forced training pass equals the KV-cached inference loop, chunk by chunk.

If the training mask and the visibility of the cached loop ever differ, the training loss
still looks fine while closed-loop rollouts collapse; this test pins them together.
"""

import dataclasses

import pytest
import torch

from tests.tiny_models import randomise, tiny_config
from worldmodel.inference import InferenceSession
from worldmodel.model import WindowInputs, WorldModel
from worldmodel.model.kv_cache import CleanSegment
from worldmodel.model.layout import CLEAN_ACTION, CLEAN_VIDEO

NUM_CHUNKS, B = 3, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_model(attention_window=None, train_window_frames=None) -> WorldModel:
    """A tiny float64 model whose every parameter is random (AdaLN-zero would hide bugs)."""
    torch.manual_seed(0)
    cfg = tiny_config(
        num_blocks=2,
        tokens_per_frame=3,
        attention_window=attention_window,
        train_window_frames=train_window_frames,
    )
    model = WorldModel(cfg).double().eval()
    randomise(model, 0.3)
    return model


def fixed_window(
    model: WorldModel, noisy_history: bool, num_chunks: int = NUM_CHUNKS
) -> tuple[WindowInputs, torch.Tensor]:
    """Fixed clean/noisy tokens and noise levels of ``num_chunks`` chunks; the clean actions
    (model units) also returned alone."""
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    F, N, C, A, d = num_chunks * cfg.K, cfg.tokens_per_frame, cfg.latent_dim, 2, 3

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    clean_actions = randn(B, F, A, d)  # model units
    clean_sigma = 0.2 * rand(B, F) if noisy_history else torch.zeros(B, F, dtype=torch.float64)
    inputs = WindowInputs(
        noisy_video=randn(B, F, N, C),
        noisy_video_sigma=rand(B, F),
        clean_video=randn(B, F, N, C),
        clean_video_sigma=clean_sigma,
        noisy_action=randn(B, F, A, d),
        noisy_action_sigma=rand(B, F),
        clean_action=clean_actions,
    )
    return inputs, clean_actions


def cached_pass(
    model: WorldModel, inputs: WindowInputs, clean_actions: torch.Tensor, K: int | None = None
):
    """Chunk by chunk of ``K`` frames (default config.K) over the whole window: noisy video
    i, append clean video i, noisy action i, append action i."""
    K = model.config.K if K is None else K
    cache = model.init_cache()
    video, action = [], []
    for i in range(inputs.noisy_video.shape[1] // K):
        frames = slice(i * K, (i + 1) * K)
        video.append(
            model.predict_video_velocity(
                cache, inputs.noisy_video[:, frames], inputs.noisy_video_sigma[:, frames]
            )
        )
        model.append_clean(
            cache,
            video_chunk=inputs.clean_video[:, frames],
            video_sigma=inputs.clean_video_sigma[:, frames],
        )
        action.append(
            model.predict_action_velocity(
                cache, inputs.noisy_action[:, frames], inputs.noisy_action_sigma[:, frames]
            )
        )
        model.append_clean(cache, action_chunk=clean_actions[:, frames])
    return torch.cat(video, dim=1), torch.cat(action, dim=1), cache


@pytest.mark.parametrize("noisy_history", [False, True])
@pytest.mark.parametrize("attention_window", [None, 1])
@torch.no_grad()
def test_teacher_forced_equals_kv_cached(noisy_history, attention_window):
    model = random_model(attention_window)
    inputs, clean_actions = fixed_window(model, noisy_history)
    full = model.forward_window(inputs)
    video, action, cache = cached_pass(model, inputs, clean_actions)
    assert video.shape == full.video_velocity.shape == (B, NUM_CHUNKS * 2, 3, 4)
    assert action.shape == full.action_velocity.shape == (B, NUM_CHUNKS * 2, 2, 3)
    torch.testing.assert_close(video, full.video_velocity, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(action, full.action_velocity, rtol=1e-10, atol=1e-10)
    assert cache.num_video_chunks == cache.num_action_chunks == NUM_CHUNKS
    assert len(cache) == NUM_CHUNKS * 2 * (3 + 1)


@pytest.mark.parametrize("attention_window", [None, 1])
@torch.no_grad()
def test_segments_appended_in_one_pass_equal_one_at_a_time(attention_window):
    """Fused clean appends (one pass under the layout mask) leave the cache as appending
    each segment alone would, attention window and re-noised history included."""
    model = random_model(attention_window)
    inputs, clean_actions = fixed_window(model, noisy_history=True)
    K = model.config.K
    segments = []
    for i in range(NUM_CHUNKS):
        frames = slice(i * K, (i + 1) * K)
        video, sigma = inputs.clean_video[:, frames], inputs.clean_video_sigma[:, frames]
        segments += [
            CleanSegment(CLEAN_VIDEO, video, sigma),
            CleanSegment(CLEAN_ACTION, clean_actions[:, frames]),
        ]
    alone, fused = model.init_cache(), model.init_cache()
    for segment in segments:
        model.append_clean_segments(alone, [segment])
    model.append_clean_segments(fused, segments[:1])  # a fused run may start after a video
    model.append_clean_segments(fused, segments[1:])
    assert fused.segments == alone.segments and len(fused) == NUM_CHUNKS * K * (3 + 1)
    for layer in range(model.config.num_blocks):
        torch.testing.assert_close(fused.keys[layer], alone.keys[layer], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(fused.values[layer], alone.values[layer], rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="append the clean video of chunk 3 before its actions"):
        model.append_clean_segments(fused, segments[1:2])


@torch.no_grad()
def test_context_matters_and_masked_tokens_do_not():
    """Guards the equality test against a model that ignores its context altogether."""
    model = random_model()
    inputs, _ = fixed_window(model, noisy_history=False)
    base = model.forward_window(inputs)
    # earlier clean video changes later predictions
    changed = WindowInputs(**vars(inputs))
    changed.clean_video = inputs.clean_video.clone()
    changed.clean_video[:, 0] += 1.0
    out = model.forward_window(changed)
    assert not torch.allclose(out.video_velocity[:, 2:], base.video_velocity[:, 2:])
    assert not torch.allclose(out.action_velocity[:, :2], base.action_velocity[:, :2])
    # the clean actions of chunk 1 are invisible to the noisy video of chunks 0 and 1
    changed = WindowInputs(**vars(inputs))
    changed.clean_action = inputs.clean_action.clone()
    changed.clean_action[:, 2:4] += 1.0
    out = model.forward_window(changed)
    torch.testing.assert_close(out.video_velocity[:, :4], base.video_velocity[:, :4])
    torch.testing.assert_close(out.action_velocity[:, :4], base.action_velocity[:, :4])
    assert not torch.allclose(out.video_velocity[:, 4:], base.video_velocity[:, 4:])


def frames_of(inputs: WindowInputs, frames: slice) -> WindowInputs:
    """The window cut to some of its frames (a window renumbered from its first chunk)."""
    return WindowInputs(
        **{f.name: getattr(inputs, f.name)[:, frames] for f in dataclasses.fields(inputs)}
    )


@torch.no_grad()
def test_sliding_window_equals_a_fresh_pass_over_the_same_chunks():
    """A session past the trained chunk positions slides: the next chunk's prediction equals a
    teacher-forced pass over the kept chunks and it, renumbered from chunk 0."""
    K, total = 2, 6
    model = random_model(train_window_frames=3 * K)  # chunk positions 0, 1, 2 were trained
    inputs, _ = fixed_window(model, noisy_history=False, num_chunks=total)
    session = InferenceSession(model, B)
    assert session.context_chunks == 2
    for i in range(total):
        session.make_room(1)
        session.flush()
        first = i - session.next_chunk  # the oldest chunk still in the cache
        frames = slice(i * K, (i + 1) * K)
        cached = model.predict_video_velocity(
            session.cache, inputs.noisy_video[:, frames], inputs.noisy_video_sigma[:, frames]
        )
        window = frames_of(inputs, slice(first * K, (i + 1) * K))
        fresh = model.forward_window(window).video_velocity[:, -K:]
        torch.testing.assert_close(cached, fresh, rtol=1e-10, atol=1e-10)
        session.append_video(inputs.clean_video[:, frames])
        session.append_actions(inputs.clean_action[:, frames])
        assert session.next_chunk <= 3
    assert session.restarts == total - 3


@torch.no_grad()
def test_replace_video_swaps_imagined_video_for_real():
    model = random_model()
    inputs, actions = fixed_window(model, noisy_history=False)
    K = model.config.K
    g = torch.Generator().manual_seed(3)
    closed = InferenceSession(model, B)
    closed.append_video(inputs.clean_video[:, :K])
    closed.append_actions(actions[:, :K])
    imagined, _ = closed.denoise_video(2, g)
    closed.append_video(imagined)
    planned = closed.denoise_actions(2, g)
    assert imagined.shape == (B, K, 3, 4) and planned.shape == (B, K, 2, 3)
    closed.replace_video(inputs.clean_video[:, K : 2 * K])
    closed.append_actions(planned)
    teacher = InferenceSession(model, B)
    for video, chunk_actions in (
        (inputs.clean_video[:, :K], actions[:, :K]),
        (inputs.clean_video[:, K : 2 * K], planned),
    ):
        teacher.append_video(video)
        teacher.append_actions(chunk_actions)
    closed.flush()  # the real video and the actions, in one pass
    teacher.flush()  # all four segments in one pass
    assert closed.cache.segments == teacher.cache.segments
    for layer in range(model.config.num_blocks):
        torch.testing.assert_close(closed.cache.keys[layer], teacher.cache.keys[layer])
        torch.testing.assert_close(closed.cache.values[layer], teacher.cache.values[layer])
