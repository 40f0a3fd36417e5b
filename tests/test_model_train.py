"""WorldModel training contract, action units, determinism, open-loop rollout and config checks."""

import pytest
import torch

from tests.tiny_models import tiny_batch as random_batch
from tests.tiny_models import tiny_config as base_config
from worldmodel.inference import InferenceSession, rollout_open_loop
from worldmodel.model import ModelConfig, WorldModel, model_preset, training_mask
from worldmodel.model.actions import PAD_ACTION, TRAIN_CLIP, chunk_reference
from worldmodel.training.windows import EpisodeLatents, fit_action_codec, relative_action_mask

NUM_CHUNKS, B = 3, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**overrides) -> ModelConfig:
    return base_config(**{"num_blocks": 2, "action_dim": 14, **overrides})


def tiny_batch(cfg: ModelConfig, seed: int = 0) -> dict:
    """Raw actions around 3 +- 2, joint positions around 3 +- 1; episode 0's window starts at
    its frame 0 (a padded action token), episode 1 ends one chunk before the window's end."""
    batch = random_batch(cfg, NUM_CHUNKS, B, seed, action_mean=3.0, action_std=2.0)
    g = torch.Generator().manual_seed(seed + 100)
    F = NUM_CHUNKS * cfg.K
    batch["start_joint_pos"] = 3.0 + torch.randn(B, F, cfg.action_dim, generator=g)
    action_valid = batch["valid"].clone()
    action_valid[0, 0] = False
    batch["action_valid"] = action_valid
    return batch


def fit_codec(model: WorldModel, batch: dict) -> None:
    """Fit the action codec on a batch whose windows all start at an episode's frame 0."""
    episodes = [
        EpisodeLatents(
            b,
            batch["video"][b],
            batch["actions"][b],
            batch["action_valid"][b],
            batch["start_joint_pos"][b],
        )
        for b in range(len(batch["video"]))
    ]
    fit_action_codec(model.action_codec, episodes, model.config.K)


def test_forward_backward_finite_and_metrics():
    cfg = tiny_config()
    assert cfg.action_space == "relative" and cfg.action_norm == "quantile"  # the defaults
    model = WorldModel(cfg)
    loss, metrics = model(tiny_batch(cfg), generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(metrics) == {"loss/video", "loss/action", "loss/total"}
    assert metrics["loss/total"] == pytest.approx(metrics["loss/video"] + metrics["loss/action"])
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # AdaLN-zero: the output heads get gradient at the first step
    assert model.video_head.out.weight.grad.abs().sum() > 0


def test_hidden_states_for_mcp_heads():
    cfg = tiny_config()
    model = WorldModel(cfg)
    result = model.compute_train_outputs(
        tiny_batch(cfg), torch.Generator().manual_seed(0), return_hidden=True
    )
    hidden = result.outputs.noisy_video_hidden
    F = NUM_CHUNKS * cfg.K
    assert len(hidden) == cfg.num_blocks
    assert all(h.shape == (B, F * cfg.tokens_per_frame, cfg.dim) for h in hidden)
    L = 2 * F * cfg.tokens_per_frame + 2 * F
    assert torch.equal(
        result.outputs.attn_mask, training_mask(NUM_CHUNKS, cfg.K, cfg.tokens_per_frame)
    )
    assert result.outputs.cond.shape == (B, L, cfg.dim)


def test_window_actions_hand_values():
    """Model units = (raw - chunk reference on relative dims - offset) / scale, clipped;
    padded tokens are PAD_ACTION and the loss mask is action_valid & valid."""
    cfg = tiny_config(K=2, actions_per_frame=1)
    model = WorldModel(cfg)
    d = cfg.action_dim
    codec = model.action_codec
    codec.relative.copy_(relative_action_mask(d))  # grippers 6 and 13 absolute
    codec.offset.fill_(1.0)
    codec.scale.fill_(2.0)
    F = 4  # 2 chunks of K = 2
    start = torch.arange(F, dtype=torch.float32)[None, :, None].expand(1, F, d) * 10  # 0,10,20,30
    raw = torch.full((1, F, 1, d), 5.0)
    raw[0, 3, 0, 0] = 100.0  # past the clip
    batch = {
        "actions": raw,
        "start_joint_pos": start,
        "action_valid": torch.tensor([[False, True, True, True]]),
        "valid": torch.tensor([[True, True, True, False]]),
    }
    units, mask = model.window_actions(batch, K=2)
    assert mask.tolist() == [[False, True, True, False]]
    assert (units[0, 0] == PAD_ACTION).all()  # frame 0's padded token
    # frame 1 (chunk 0, reference start[0] = 0): (5 - 0 - 1) / 2 = 2 -> clipped to 1.5
    assert (units[0, 1, 0] == TRAIN_CLIP).all()
    # frame 2 (chunk 1, reference start[2] = 20): relative dims (5 - 20 - 1) / 2 = -8 -> -1.5;
    # grippers (5 - 1) / 2 = 2 -> 1.5
    expected = torch.full((d,), -TRAIN_CLIP)
    expected[[6, 13]] = TRAIN_CLIP
    assert torch.equal(units[0, 2, 0], expected)
    expected[0] = TRAIN_CLIP  # frame 3, dim 0: (100 - 20 - 1) / 2 = 39.5 -> 1.5
    assert torch.equal(units[0, 3, 0], expected)
    codec.scale.fill_(100.0)  # no clipping: the exact values
    units, _ = model.window_actions(batch, K=2)
    torch.testing.assert_close(units[0, 2, 0, 0], torch.tensor(-0.16))  # (5 - 20 - 1) / 100
    torch.testing.assert_close(units[0, 2, 0, 6], torch.tensor(0.04))  # gripper: (5 - 1) / 100
    # frame 3 takes its chunk's reference start[2] = 20, not its own start[3] = 30
    torch.testing.assert_close(units[0, 3, 0, 0], torch.tensor(0.79))  # (100 - 20 - 1) / 100
    torch.testing.assert_close(units[0, 3, 0, 1], torch.tensor(-0.16))


def test_relative_actions_need_start_joint_pos_absolute_do_not():
    batch = tiny_batch(tiny_config())
    del batch["start_joint_pos"]
    with pytest.raises(ValueError, match="start_joint_pos"):
        WorldModel(tiny_config())(batch)
    loss, _ = WorldModel(tiny_config(action_space="absolute"))(batch)
    assert torch.isfinite(loss)


def train_losses(steps: int, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    cfg = tiny_config()
    model = WorldModel(cfg)
    batch = tiny_batch(cfg)
    fit_codec(model, batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        g = torch.Generator().manual_seed(step % 4)  # a fixed set of noise draws
        loss, metrics = model.forward_train(batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["loss/total"])
    return losses


def test_loss_decreases_on_fixed_batch():
    losses = train_losses(steps=40)
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.7 * first, (first, last)


def test_seeded_runs_are_identical():
    assert train_losses(steps=3, seed=1) == train_losses(steps=3, seed=1)


def test_invalid_frames_and_padded_tokens_do_not_count():
    cfg = tiny_config()
    model = WorldModel(cfg)
    batch = tiny_batch(cfg)
    fit_codec(model, batch)

    def loss_of(batch):
        return model(batch, generator=torch.Generator().manual_seed(0))[0]

    loss = loss_of(batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["video"][1, -cfg.K :] += 100.0  # past the end of episode 1: ignored...
    changed["actions"][1, -cfg.K :] += 100.0  # ...as targets and as (later-only) context...
    changed["start_joint_pos"][1, -cfg.K :] += 100.0  # ...and as the last chunk's reference
    changed["actions"][0, 0] += 100.0  # episode 0's frame-0 token is padding
    torch.testing.assert_close(loss, loss_of(changed))
    real = {k: v.clone() for k, v in batch.items()}
    real["actions"][0, 1] += 1.0  # a real token counts
    assert not torch.allclose(loss, loss_of(real))


def test_open_loop_rollout_shapes_and_given_actions():
    cfg = tiny_config()
    model = WorldModel(cfg).eval()
    batch = tiny_batch(cfg)
    fit_codec(model, batch)
    units, _ = model.window_actions(batch, cfg.K)  # (B, F, A, d) model units
    context = slice(0, cfg.K)
    result = rollout_open_loop(
        model,
        batch["video"][:, context],
        units[:, context],
        horizon=2,
        steps=2,
        future_actions=units[:, cfg.K :],
        generator=torch.Generator().manual_seed(0),
    )
    assert result.video.shape == (B, 2 * cfg.K, cfg.tokens_per_frame, cfg.latent_dim)
    assert torch.isfinite(result.video).all()
    assert torch.equal(result.actions, units[:, cfg.K : 3 * cfg.K])
    # video passes, then the fused appends: the context, then chunk 0 before chunk 1
    assert result.passes == {"backbone": 2 * 2 + 1 + 1, "head": 0, "video": 4, "action": 0}


def test_denoised_actions_decode_to_raw_units_with_the_fitted_spread():
    cfg = tiny_config()
    model = WorldModel(cfg).eval()  # zero-initialised heads predict velocity 0 ...
    batch = tiny_batch(cfg)
    fit_codec(model, batch)
    codec = model.action_codec
    assert codec.relative.tolist() == [d not in (6, 13) for d in range(cfg.action_dim)]
    session = InferenceSession(model, B)
    g = torch.Generator().manual_seed(0)
    video, draft = session.denoise_video(steps=2, generator=g)
    assert draft is None and video.shape == (B, cfg.K, cfg.tokens_per_frame, cfg.latent_dim)
    session.append_video(video)
    units = session.denoise_actions(steps=2, generator=g)
    assert units.shape == (B, cfg.K, cfg.actions_per_frame, cfg.action_dim)
    assert session.passes["video"] == session.passes["action"] == 2
    # ... so the sample is the initial noise (drawn after the video's), in model units
    replay = torch.Generator().manual_seed(0)
    torch.randn(video.shape, generator=replay)
    assert torch.equal(units, torch.randn(units.shape, generator=replay))
    reference = 5.0 + torch.randn(B, cfg.K, cfg.action_dim, generator=replay)  # (B, K, d)
    raw = model.decode_actions_raw(units, reference)
    origin = reference * codec.relative  # relative dims only
    expected = units * codec.scale + codec.offset + origin[:, :, None]
    torch.testing.assert_close(raw, expected)
    # the raw spread per dim is the fitted scale: normalised back it has unit std
    normalised = (raw - codec.offset - origin[:, :, None]) / codec.scale
    assert normalised.std().item() == pytest.approx(1.0, abs=0.3)
    assert not torch.allclose(raw, units)  # the codec is not the identity after fitting
    torch.testing.assert_close(model.encode_actions(raw, reference), units)


def test_padded_first_token_is_clamped():
    cfg = tiny_config()
    model = WorldModel(cfg).eval()
    session = InferenceSession(model, B)
    g = torch.Generator().manual_seed(0)
    session.append_video(session.denoise_video(2, g)[0])
    units = session.denoise_actions(2, g, pad_first=True)
    assert (units[:, 0] == PAD_ACTION).all() and (units[:, 1] != PAD_ACTION).all()


def test_action_codec_travels_in_state_dict():
    cfg = tiny_config()
    model = WorldModel(cfg)
    batch = tiny_batch(cfg)
    fit_codec(model, batch)
    state = model.state_dict()
    assert {"action_codec.offset", "action_codec.scale", "action_codec.relative"} <= set(state)
    assert torch.equal(state["action_codec.relative"], relative_action_mask(14))
    assert (state["action_codec.scale"] != 1.0).all()
    fresh = WorldModel(cfg)
    fresh.load_state_dict(state)
    units = torch.randn(B, cfg.K, cfg.actions_per_frame, 14)
    reference = chunk_reference(batch["start_joint_pos"][:, : cfg.K], cfg.K)
    assert torch.equal(
        fresh.decode_actions_raw(units, reference), model.decode_actions_raw(units, reference)
    )
    assert not torch.equal(
        WorldModel(cfg).decode_actions_raw(units, reference),
        model.decode_actions_raw(units, reference),
    )
    with pytest.raises(ValueError, match="action stats need"):
        model.action_codec.fit(torch.zeros(4, 2, 3), torch.zeros(4, 3), torch.ones(3).bool())


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"dim": 30, "heads": 4}, "dim"),
        ({"num_blocks": 0}, "num_blocks"),
        ({"attention_window": 0}, "attention_window"),
        ({"video_shift": 0.0}, "video_shift"),
        ({"noisy_history_prob": 1.5}, "noisy_history_prob"),
        ({"dropout": 1.0}, "dropout"),
        ({"action_space": "delta"}, "action_space"),
        ({"action_norm": "minmax"}, "action_norm"),
        ({"action_steps": 0}, "action_steps"),
        ({"train_window_frames": 1}, "train_window_frames"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}="):
        tiny_config(**overrides)


def test_presets():
    assert model_preset("tiny")["dim"] == 64
    assert model_preset("small") == {
        "dim": 256,
        "num_blocks": 6,
        "heads": 8,
        "mlp_ratio": 4.0,
        "video_steps": 20,
        "action_steps": 50,
    }
    assert model_preset("base")["num_blocks"] == 24
    for name in ("tiny", "small", "base"):
        ModelConfig(**model_preset(name))
    with pytest.raises(ValueError, match="tiny"):
        model_preset("huge")


def test_chunk_past_max_chunks_is_an_error():
    cfg = tiny_config(max_chunks=2)
    model = WorldModel(cfg)
    with pytest.raises(ValueError, match="max_chunks"):
        model(tiny_batch(cfg))


def test_noisy_history_reaches_the_clean_context():
    batch = tiny_batch(tiny_config())
    off = WorldModel(tiny_config(noisy_history_prob=0.0))
    inputs = off.compute_train_outputs(batch, torch.Generator().manual_seed(0)).inputs
    assert (inputs.clean_video_sigma == 0).all()
    torch.testing.assert_close(inputs.clean_video, batch["video"])
    on = WorldModel(
        tiny_config(noisy_history_prob=1.0, noisy_history_max_u=0.3, noisy_history_shift=1.0)
    )
    inputs = on.compute_train_outputs(batch, torch.Generator().manual_seed(0)).inputs
    assert (inputs.clean_video_sigma > 0).all() and (inputs.clean_video_sigma < 0.3).all()
    assert not torch.allclose(inputs.clean_video, batch["video"])
    assert (inputs.noisy_video_sigma != inputs.noisy_video_sigma[:, :1]).any()  # per frame


def test_seeded_sampling_is_deterministic():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = WorldModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    batch = tiny_batch(cfg)
    units, _ = model.window_actions(batch, cfg.K)
    context = slice(0, cfg.K)

    def rollout(seed):
        return rollout_open_loop(
            model,
            batch["video"][:, context],
            units[:, context],
            horizon=1,
            steps=3,
            future_actions=units[:, cfg.K :],
            generator=torch.Generator().manual_seed(seed),
        ).video

    assert torch.equal(rollout(0), rollout(0))
    assert not torch.equal(rollout(0), rollout(1))
