"""Random chunk size per training step (``ModelConfig.K_choices``) and the inference ``K``."""

import dataclasses

import pytest
import torch

from tests.test_model_kv_equality import cached_pass, fixed_window, random_model
from tests.tiny_models import randomise, tiny_config
from tests.tiny_models import tiny_batch as random_batch
from worldmodel.heads import WorldModelWithHeads, heads_preset
from worldmodel.inference import InferenceSession, rollout_open_loop
from worldmodel.model import WorldModel, training_mask
from worldmodel.model.world_model import StepShape

NUM_CHUNKS = 3
ONE, TWO = StepShape(1, None), StepShape(2, None)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_batch(cfg, num_chunks: int, seed: int = 0) -> dict:
    """Random latents and raw actions with the joint positions relative actions need; episode
    0's window starts at its frame 0 (a padded action token)."""
    batch = random_batch(cfg, num_chunks, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    B, F = batch["valid"].shape
    batch["start_joint_pos"] = torch.randn(B, F, cfg.action_dim, generator=g)
    batch["action_valid"] = batch["valid"].clone()
    batch["action_valid"][0, 0] = False
    return batch


@pytest.mark.parametrize("choices", [[], [0], [3], [1, 1], [1.5], [-1, 2]], ids=lambda c: repr(c))
def test_config_rejects_bad_chunk_choices(choices):
    with pytest.raises(ValueError, match=r"^K_choices="):
        tiny_config(K=2, K_choices=choices)


def test_config_accepts_choices_that_hold_the_inference_K():
    assert tiny_config(K=2).K_choices is None
    assert tiny_config(K=2, K_choices=(2, 1)).K_choices == [2, 1]
    assert tiny_config(K=3, K_choices=[3]).K_choices == [3]
    reference = tiny_config(K=2, K_choices=[1, 2, 3, 4])  # trains 1-4, infers 2
    assert (reference.min_K, reference.K, reference.max_K) == (1, 2, 4)


def make_model(with_heads: bool, **overrides) -> WorldModel:
    torch.manual_seed(0)
    cfg = tiny_config(**overrides)
    if with_heads:
        model = WorldModelWithHeads(cfg, heads_preset("next_forcing"))
    else:
        model = WorldModel(cfg)
    randomise(model, 0.05)
    return model


@pytest.mark.parametrize("with_heads", [False, True], ids=["backbone", "next_forcing"])
def test_draws_every_choice_and_each_backpropagates(with_heads):
    model = make_model(with_heads, K_choices=[1, 2])
    batch = tiny_batch(model.config, NUM_CHUNKS)
    seen = set()
    for seed in range(8):
        loss, metrics = model(batch, generator=torch.Generator().manual_seed(seed))
        K = int(metrics["chunk_size"])
        # the draw is a function of the generator alone
        again = model.draw_step_shape(torch.Generator().manual_seed(seed)).K
        assert again == K and K in (1, 2)
        seen.add(K)
        assert torch.isfinite(loss) and loss.ndim == 0
        if with_heads:
            assert {"loss/mcp1", "loss/mcp2", "loss/mcp3"} <= set(metrics)
        model.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert model.video_head.out.weight.grad.abs().sum() > 0
    assert seen == {1, 2}


@pytest.mark.parametrize("with_heads", [False, True], ids=["backbone", "next_forcing"])
def test_step_uses_the_drawn_chunk_size(with_heads):
    model = make_model(with_heads, K_choices=[1, 2])
    cfg = model.config
    batch = tiny_batch(cfg, NUM_CHUNKS)
    F, N = NUM_CHUNKS * cfg.K, cfg.tokens_per_frame
    result = model.compute_train_outputs(batch, torch.Generator().manual_seed(0), shape=ONE)
    assert result.outputs.K == 1
    assert torch.equal(result.outputs.attn_mask, training_mask(F, 1, N))
    assert result.outputs.video_velocity.shape[1] == F


def test_trailing_frames_that_fill_no_chunk_are_dropped():
    model = make_model(False, K=3, K_choices=[2, 3], max_chunks=4)
    cfg = model.config
    batch = tiny_batch(cfg, num_chunks=1)  # F = 3 frames
    cropped = model.crop_to_chunks(batch, 2)
    assert cropped["video"].shape[1] == cropped["actions"].shape[1] == 2
    assert torch.equal(cropped["valid"], batch["valid"][:, :2])
    assert torch.equal(cropped["action_valid"], batch["action_valid"][:, :2])
    assert torch.equal(cropped["start_joint_pos"], batch["start_joint_pos"][:, :2])
    assert model.crop_to_chunks(batch, 3) is batch
    result = model.compute_train_outputs(batch, torch.Generator().manual_seed(0), shape=TWO)
    assert result.outputs.K == 2 and result.outputs.video_velocity.shape[1] == 2
    assert torch.isfinite(result.loss)
    with pytest.raises(ValueError, match="K=4"):
        model.compute_train_outputs(batch, shape=StepShape(4, None))


@pytest.mark.parametrize("with_heads", [False, True], ids=["backbone", "next_forcing"])
def test_no_choices_is_bit_identical_to_the_single_choice_K(with_heads):
    runs = []
    for choices in (None, [2]):
        model = make_model(with_heads, K=2, K_choices=choices)
        batch = tiny_batch(model.config, NUM_CHUNKS)
        loss, metrics = model(batch, generator=torch.Generator().manual_seed(3))
        loss.backward()
        runs.append((model, loss, metrics))
    (plain, loss_plain, metrics_plain), (single, loss_single, metrics_single) = runs
    assert "chunk_size" not in metrics_plain and metrics_single.pop("chunk_size") == 2.0
    assert torch.equal(loss_plain, loss_single)
    assert metrics_plain == metrics_single
    for (name, p), q in zip(plain.named_parameters(), single.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name


@torch.no_grad()
def test_K1_window_equals_the_cached_loop_with_chunk_size_1():
    """A model with K=2 trained at K_step=1: teacher-forced equals the cached loop at K=1."""
    model = random_model()
    assert model.config.K == 2
    inputs, clean_actions = fixed_window(model, noisy_history=True)  # actions in model units
    F = inputs.noisy_video.shape[1]  # 6 frames = 6 chunks of 1
    full = model.forward_window(inputs, shape=ONE)
    video, action, cache = cached_pass(model, inputs, clean_actions, K=1)
    torch.testing.assert_close(video, full.video_velocity, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(action, full.action_velocity, rtol=1e-10, atol=1e-10)
    assert cache.num_video_chunks == cache.num_action_chunks == F
    # the K=1 layout is a different model input than K=2
    assert not torch.allclose(full.video_velocity, model.forward_window(inputs).video_velocity)


@torch.no_grad()
def test_inference_runs_at_config_K_and_rejects_larger_chunks():
    """Trained with random chunk sizes, the model infers at config.K; the cached primitives read
    the chunk size from the shapes (1..K) and refuse a larger one."""
    model = make_model(False, K=2, K_choices=[1, 2]).double().eval()
    inputs, clean_actions = fixed_window(model, noisy_history=False)
    B, K = inputs.clean_video.shape[0], model.config.K
    g = torch.Generator().manual_seed(0)
    result = rollout_open_loop(
        model, inputs.clean_video[:, :K], clean_actions[:, :K], 2, 2, generator=g
    )
    assert result.video.shape == (B, 2 * K, 4, 4) and torch.isfinite(result.video).all()
    assert result.actions.shape == (B, 2 * K, 2, 3) and torch.isfinite(result.actions).all()
    session = InferenceSession(model, B)
    session.append_video(inputs.clean_video[:, :1])  # a chunk of one frame
    actions = session.denoise_actions(2, g)
    assert actions.shape == (B, 1, 2, 3)
    with pytest.raises(ValueError, match="chunk size K=3"):
        model.append_clean(model.init_cache(), video_chunk=inputs.clean_video[:, :3])


@pytest.mark.parametrize("window", [None, 1, 2])
@pytest.mark.parametrize("K", [1, 2, 3, 4])
@torch.no_grad()
def test_every_drawn_shape_equals_the_cached_loop_at_that_chunk_size_and_window(K, window):
    """Trained as the reference (chunk size 1-4 and an attention window drawn per step), the
    teacher-forced pass at ``StepShape(K, W)`` equals the KV-cached loop run at chunk size K
    with window W; with W=1 on 12 chunks of one frame the window slides along the cache."""
    torch.manual_seed(0)
    config = tiny_config(num_blocks=2, tokens_per_frame=3, K_choices=[1, 2, 3, 4], max_chunks=12)
    model = WorldModel(config).double().eval()  # K=2, the inference chunk size
    randomise(model, 0.3)
    inputs, clean_actions = fixed_window(model, noisy_history=True, num_chunks=6)  # 12 frames
    F = inputs.noisy_video.shape[1]
    full = model.forward_window(inputs, shape=StepShape(K, window))
    cached = WorldModel(dataclasses.replace(model.config, attention_window=window)).double()
    cached.load_state_dict(model.state_dict())
    cached.eval()
    video, action, _ = cached_pass(cached, inputs, clean_actions, K=K)
    torch.testing.assert_close(video, full.video_velocity, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(action, full.action_velocity, rtol=1e-10, atol=1e-10)
    if window is not None and F // K > window + 1:  # the window hides the first chunks
        unwindowed = model.forward_window(inputs, shape=StepShape(K, None)).video_velocity
        assert not torch.allclose(unwindowed[:, -K:], full.video_velocity[:, -K:])


def test_each_step_draws_its_chunk_size_then_its_attention_window():
    model = make_model(False, K=2, K_choices=[1, 2, 3, 4], train_attention_windows=[2, 5])
    shapes = {model.draw_step_shape(torch.Generator().manual_seed(s)) for s in range(200)}
    assert {shape.K for shape in shapes} == {1, 2, 3, 4}
    assert {shape.attention_window for shape in shapes} == {2, 3, 4, 5}
    batch = tiny_batch(model.config, NUM_CHUNKS)
    _, metrics = model(batch, generator=torch.Generator().manual_seed(7))
    shape = model.draw_step_shape(torch.Generator().manual_seed(7))
    assert (metrics["chunk_size"], metrics["attention_window"]) == (shape.K, shape.attention_window)
    with pytest.raises(ValueError, match=r"train_attention_windows=\[3, 2\] is not valid"):
        tiny_config(train_attention_windows=[3, 2])
    with pytest.raises(ValueError, match="must hold the inference chunk size K=2"):
        tiny_config(K=2, K_choices=[1, 3])
