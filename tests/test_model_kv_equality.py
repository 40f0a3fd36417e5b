"""The teacher-forced training pass equals the KV-cached inference loop, chunk by chunk.

If the training mask and the visibility of the cached loop ever differ, the training loss
still looks fine while closed-loop rollouts collapse; this test pins them together.
"""

import pytest
import torch

from tests.tiny_models import randomise, tiny_config
from worldmodel.model import WindowInputs, WorldModel

NUM_CHUNKS, B = 3, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_model(attention_window=None) -> WorldModel:
    """A tiny float64 model whose every parameter is random (AdaLN-zero would hide bugs)."""
    torch.manual_seed(0)
    cfg = tiny_config(depth=2, tokens_per_frame=3, attention_window=attention_window)
    model = WorldModel(cfg).double().eval()
    randomise(model, 0.3)
    model.set_action_stats(
        torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64),
        torch.tensor([2.0, 0.5, 1.5], dtype=torch.float64),
    )
    return model


def fixed_window(model: WorldModel, noisy_history: bool) -> tuple[WindowInputs, torch.Tensor]:
    """Fixed clean/noisy tokens and noise levels of NUM_CHUNKS chunks; also the raw actions."""
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    F, N, C, A, d = NUM_CHUNKS * cfg.K, cfg.tokens_per_frame, cfg.latent_dim, 2, 3

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    raw_actions = randn(B, F, A, d)
    clean_sigma = 0.2 * rand(B, F) if noisy_history else torch.zeros(B, F, dtype=torch.float64)
    inputs = WindowInputs(
        noisy_video=randn(B, F, N, C),
        noisy_video_sigma=rand(B, F),
        clean_video=randn(B, F, N, C),
        clean_video_sigma=clean_sigma,
        noisy_action=randn(B, F, A, d),
        noisy_action_sigma=rand(B, F),
        clean_action=model.normalise_actions(raw_actions),
    )
    return inputs, raw_actions


def cached_pass(model: WorldModel, inputs: WindowInputs, raw_actions: torch.Tensor):
    """Chunk by chunk: noisy video i, append clean video i, noisy action i, append action i."""
    K = model.config.K
    cache = model.init_cache()
    video, action = [], []
    for i in range(NUM_CHUNKS):
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
        model.append_clean(cache, action_chunk=raw_actions[:, frames])
    return torch.cat(video, dim=1), torch.cat(action, dim=1), cache


@pytest.mark.parametrize("noisy_history", [False, True])
@pytest.mark.parametrize("attention_window", [None, 1])
@torch.no_grad()
def test_teacher_forced_equals_kv_cached(noisy_history, attention_window):
    model = random_model(attention_window)
    inputs, raw_actions = fixed_window(model, noisy_history)
    full = model.forward_window(inputs)
    video, action, cache = cached_pass(model, inputs, raw_actions)
    assert video.shape == full.video_velocity.shape == (B, NUM_CHUNKS * 2, 3, 4)
    assert action.shape == full.action_velocity.shape == (B, NUM_CHUNKS * 2, 2, 3)
    torch.testing.assert_close(video, full.video_velocity, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(action, full.action_velocity, rtol=1e-10, atol=1e-10)
    assert cache.num_video_chunks == cache.num_action_chunks == NUM_CHUNKS
    assert len(cache) == NUM_CHUNKS * 2 * (3 + 1)


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


@torch.no_grad()
def test_observe_chunk_replaces_imagined_video_with_real():
    model = random_model()
    inputs, raw_actions = fixed_window(model, noisy_history=False)
    K = model.config.K
    g = torch.Generator().manual_seed(3)
    closed = model.init_cache()
    model.append_clean(closed, inputs.clean_video[:, :K], raw_actions[:, :K])
    imagined, actions = model.imagine_chunk(closed, video_steps=2, action_steps=2, generator=g)
    assert imagined.shape == (B, K, 3, 4) and actions.shape == (B, K, 2, 3)
    model.observe_chunk(closed, inputs.clean_video[:, K : 2 * K], actions)
    teacher = model.init_cache()
    model.append_clean(teacher, inputs.clean_video[:, :K], raw_actions[:, :K])
    model.append_clean(teacher, inputs.clean_video[:, K : 2 * K], actions)
    assert closed.segments == teacher.segments
    for layer in range(model.config.depth):
        torch.testing.assert_close(closed.keys[layer], teacher.keys[layer])
        torch.testing.assert_close(closed.values[layer], teacher.values[layer])
