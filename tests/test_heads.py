"""MCP heads: target shift and mask, gradients into the backbone, every variant trains,
config errors, backbone init, and ``drop_heads`` leaving the backbone bit-identical."""

import pytest
import torch

from tests.tiny_models import randomise as randomise_with
from tests.tiny_models import tiny_batch as random_batch
from tests.tiny_models import tiny_config
from worldmodel import flow
from worldmodel.heads import (
    HeadsConfig,
    WorldModelWithHeads,
    future_valid,
    heads_preset,
    make_heads,
    shift_chunks,
)
from worldmodel.heads.config import reference_layers, spread_layers
from worldmodel.heads.modules import FutureDraw, draw_future, embed_future
from worldmodel.model import WindowInputs, WorldModel
from worldmodel.model.layout import NOISY_VIDEO

NUM_CHUNKS, B = 4, 2
VARIANTS = (
    "single_step",
    "next_forcing",
    "parallel_heads",
    "chain_last_layer",
    "linear_every_third",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_batch(cfg, seed: int = 0) -> dict:
    return random_batch(cfg, NUM_CHUNKS, B, seed)


def randomise(model: torch.nn.Module, std: float = 0.05) -> None:
    randomise_with(model, std)


# ----------------------------------------------------------------- targets and mask
def test_target_shift_and_valid_mask_by_hand():
    K, F = 2, 6  # chunks 0, 1, 2
    x = torch.arange(F).float().view(1, F, 1, 1).expand(2, F, 1, 1)  # frame f holds f
    assert shift_chunks(x, 1, K)[0].flatten().tolist() == [2, 3, 4, 5, 0, 0]
    assert shift_chunks(x, 2, K)[0].flatten().tolist() == [4, 5, 0, 0, 0, 0]
    assert shift_chunks(x, 3, K)[0].flatten().tolist() == [0] * 6
    valid = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    # depth 1: chunk i predicts chunk i+1; the last chunk has no target, episode 1 ends at
    # chunk 1 so its chunk 1 has none either
    assert future_valid(valid, 2, F, 1, K).int().tolist() == [
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 0, 0],
    ]
    assert future_valid(valid, 2, F, 2, K).int().tolist() == [
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    assert not future_valid(None, 2, F, 3, K).any()


@pytest.mark.parametrize("target_positions", [True, False])
@torch.no_grad()
def test_depth_k_noisy_tokens_carry_the_positions_of_the_chunk_they_predict(target_positions):
    """By hand: token (frame f of slot chunk i, position n) of depth k's noisy video is
    video_in(x) + chunk_pe[i + k] + frame_embed[f] + position_embed[n] + type_embed[noisy
    video]; with target_positions off, chunk_pe[i] (the slots' own chunk)."""
    cfg = tiny_config()
    heads = HeadsConfig(kind="mcp", mcp_depth=3, blocks_per_depth=1)
    heads.target_positions = target_positions
    model = WorldModelWithHeads(cfg, heads)
    randomise(model)
    K, N, C = cfg.K, cfg.tokens_per_frame, cfg.latent_dim
    noisy = torch.randn(B, NUM_CHUNKS * K, N, C, generator=torch.Generator().manual_seed(2))
    for k in (1, 2, 3):
        valid = torch.ones(B, NUM_CHUNKS * K, dtype=torch.bool)
        draw = FutureDraw(k, noisy, noisy, valid[..., None].double(), valid, noisy)
        tokens = embed_future(model, heads, draw, K).view(B, NUM_CHUNKS, K, N, -1)
        for i in range(NUM_CHUNKS):
            for f in range(K):
                for n in range(N):
                    chunk = i + k if target_positions else i
                    expected = (
                        model.video_in(noisy[:, i * K + f, n])
                        + model.chunk_pe[chunk]
                        + model.frame_embed.weight[f]
                        + model.position_embed.weight[n]
                        + model.type_embed.weight[NOISY_VIDEO]
                    )
                    torch.testing.assert_close(tokens[:, i, f, n], expected)


def test_frames_past_the_episode_end_do_not_count():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = WorldModelWithHeads(cfg, heads_preset("next_forcing"))
    randomise(model)
    batch = tiny_batch(cfg)
    loss, metrics = model(batch, generator=torch.Generator().manual_seed(0))
    batch["video"][1, -cfg.K :] += 100.0  # invalid in episode 1: never a counted target
    changed, changed_metrics = model(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, changed)
    assert metrics == pytest.approx(changed_metrics)


def test_depths_draw_their_own_noise_with_the_mcp_shift():
    cfg = tiny_config()
    model = WorldModel(cfg)
    video = tiny_batch(cfg)["video"]

    def sigma(shift):
        g = torch.Generator().manual_seed(0)
        return draw_future(model, video, None, 1, shift, g).sigma

    torch.testing.assert_close(sigma(10.0), flow.shift_sigma(sigma(1.0), 10.0))
    assert sigma(10.0).mean() > sigma(5.0).mean()


def test_chain_feeds_depth_k_minus_1_and_parallel_heads_do_not():
    cfg = tiny_config()
    batch = tiny_batch(cfg)
    metrics = {}
    for chain in (True, False):
        torch.manual_seed(0)
        model = WorldModelWithHeads(cfg, HeadsConfig(kind="mcp", fusion_layers=[-1], chain=chain))
        randomise(model)
        metrics[chain] = model(batch, generator=torch.Generator().manual_seed(0))[1]
    assert metrics[True]["loss/mcp1"] == metrics[False]["loss/mcp1"]
    assert metrics[True]["loss/mcp2"] != metrics[False]["loss/mcp2"]


# ----------------------------------------------------------------- gradients and training
@pytest.mark.parametrize("name", ["next_forcing", "parallel_heads", "linear_every_third"])
def test_each_mcp_loss_reaches_the_backbone(name):
    cfg = tiny_config()
    torch.manual_seed(0)
    model = WorldModelWithHeads(cfg, heads_preset(name))
    randomise(model)
    result = model.compute_train_outputs(tiny_batch(cfg), torch.Generator().manual_seed(0))
    assert len(result.mcp_losses) == 3
    for k, term in enumerate(result.mcp_losses, start=1):
        (grad,) = torch.autograd.grad(term, model.blocks[0].attn.qkv.weight, retain_graph=True)
        assert grad.abs().sum() > 0, f"loss/mcp{k} does not reach the backbone"


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_trains_on_a_fixed_batch(name):
    cfg = tiny_config()
    torch.manual_seed(0)
    model = WorldModelWithHeads(cfg, heads_preset(name))
    batch = tiny_batch(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for step in range(30):
        loss, metrics = model(batch, generator=torch.Generator().manual_seed(step % 4))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(metrics)
    assert all(torch.isfinite(torch.tensor(m["loss/total"])) for m in history)
    depths = heads_preset(name).mcp_depth
    assert set(history[0]) == {"loss/video", "loss/action", "loss/total"} | {
        f"loss/mcp{k}" for k in range(1, depths + 1)
    }
    weights = heads_preset(name).weights
    expected = (
        history[0]["loss/video"]
        + history[0]["loss/action"]
        + sum(w * history[0][f"loss/mcp{k}"] for k, w in enumerate(weights, start=1))
    )
    assert history[0]["loss/total"] == pytest.approx(expected, rel=1e-5)

    def mean(key, rows):
        return sum(row[key] for row in rows) / len(rows)

    # the same 4 noise draws at the start and at the end
    assert mean("loss/total", history[-4:]) < 0.8 * mean("loss/total", history[:4])
    if depths:
        assert mean("loss/mcp1", history[-4:]) < 0.8 * mean("loss/mcp1", history[:4])


def test_single_step_is_the_plain_backbone():
    cfg = tiny_config()
    batch = tiny_batch(cfg)
    torch.manual_seed(0)
    plain = WorldModel(cfg)
    torch.manual_seed(0)
    wrapped = WorldModelWithHeads(cfg, heads_preset("single_step"))
    assert wrapped.heads is None
    assert plain.state_dict().keys() == wrapped.state_dict().keys()
    loss, metrics = plain(batch, generator=torch.Generator().manual_seed(0))
    loss_w, metrics_w = wrapped(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loss, loss_w) and metrics == metrics_w


# ----------------------------------------------------------------- drop_heads
def fixed_inputs(model: WorldModel) -> WindowInputs:
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    F, N, C = NUM_CHUNKS * cfg.K, cfg.tokens_per_frame, cfg.latent_dim
    A, d = cfg.actions_per_frame, cfg.action_dim
    return WindowInputs(
        noisy_video=torch.randn(B, F, N, C, generator=g),
        noisy_video_sigma=torch.rand(B, F, generator=g),
        clean_video=torch.randn(B, F, N, C, generator=g),
        clean_video_sigma=torch.zeros(B, F),
        noisy_action=torch.randn(B, F, A, d, generator=g),
        noisy_action_sigma=torch.rand(B, F, generator=g),
        clean_action=torch.randn(B, F, A, d, generator=g),
    )


@torch.no_grad()
def test_drop_heads_leaves_the_backbone_bit_identical():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = WorldModelWithHeads(cfg, heads_preset("next_forcing")).eval()
    randomise(model)
    inputs = fixed_inputs(model)
    before = model.forward_window(inputs)
    assert any(key.startswith("heads.") for key in model.state_dict())
    model.drop_heads()
    after = model.forward_window(inputs)
    assert torch.equal(before.video_velocity, after.video_velocity)
    assert torch.equal(before.action_velocity, after.action_velocity)
    state = model.state_dict()
    assert not any(key.startswith("heads.") for key in state)
    assert not any("heads" in name for name, _ in model.named_modules())
    plain = WorldModel(cfg)
    plain.load_state_dict(state)  # strict: exactly the backbone's keys
    assert torch.equal(plain.forward_window(inputs).video_velocity, before.video_velocity)
    _, metrics = model(tiny_batch(cfg), generator=torch.Generator().manual_seed(0))
    assert set(metrics) == {"loss/video", "loss/action", "loss/total"}


# ----------------------------------------------------------------- init and layers
def test_depth_blocks_start_as_copies_of_the_last_backbone_blocks():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = WorldModelWithHeads(cfg, HeadsConfig(kind="mcp", blocks_per_depth=2))
    randomise(model)
    model.init_heads_from_backbone()
    for depth in model.heads.depth_modules:
        for block, source in zip(depth.blocks, model.blocks[-2:], strict=True):
            for (name, p), q in zip(block.named_parameters(), source.parameters(), strict=True):
                assert torch.equal(p, q), name
                assert p.data_ptr() != q.data_ptr()  # a copy, not shared
    fresh = WorldModelWithHeads(
        cfg, HeadsConfig(kind="mcp", blocks_per_depth=5, init_from_backbone=False)
    )
    assert len(fresh.heads.depth_modules[0].blocks) == 5
    assert (fresh.heads.depth_modules[0].blocks[0].adaln[1].weight == 0).all()  # fresh AdaLN-zero


def test_fusion_and_linear_layers():
    assert spread_layers(30, 4) == [7, 14, 21, 29]
    assert spread_layers(4, 4) == [0, 1, 2, 3]
    assert spread_layers(2, 4) == [0, 1]
    # the reference's layers 4/12/20/30 of 30 (mcp_hidden_collect_layers [3, 11, 19, 29])
    assert reference_layers(30) == [3, 11, 19, 29]
    assert reference_layers(8) == [0, 2, 4, 7] and reference_layers(4) == [0, 1, 2, 3]
    reference, even = HeadsConfig(kind="mcp"), HeadsConfig(kind="mcp", fusion_spread="even")
    assert reference.resolved_fusion_layers(tiny_config(num_blocks=30)) == [3, 11, 19, 29]
    assert even.resolved_fusion_layers(tiny_config(num_blocks=30)) == [7, 14, 21, 29]
    with pytest.raises(ValueError, match="num_fusion_layers=3 is not valid with fusion_spread"):
        HeadsConfig(kind="mcp", num_fusion_layers=3)
    cfg = tiny_config()
    heads = make_heads(heads_preset("next_forcing"), cfg)
    assert heads.fusion.layers == [0, 1, 2, 3] and heads.fusion.mlp[0].in_features == 4 * 32
    last = make_heads(heads_preset("chain_last_layer"), cfg)
    assert last.fusion.layers == [3] and last.fusion.mlp is None
    assert make_heads(HeadsConfig(kind="mcp", fusion_layers=[0, -1]), cfg).fusion.layers == [0, 3]
    assert make_heads(heads_preset("linear_every_third"), tiny_config(num_blocks=7)).layers == [
        2,
        5,
    ]
    assert make_heads(heads_preset("single_step"), cfg) is None
    assert make_heads(HeadsConfig(kind="mcp", mcp_depth=0, loss_weights=[]), cfg) is None


def test_presets_and_ablation_overrides():
    for name in VARIANTS:
        heads_preset(name)
    nf = heads_preset("next_forcing")
    assert (nf.mcp_depth, nf.blocks_per_depth, nf.mcp_shift, nf.weights) == (
        3,
        3,
        10.0,
        [0.5, 0.2, 0.1],
    )
    assert HeadsConfig(kind="mcp", mcp_depth=1).weights == [0.5]
    assert len(HeadsConfig(kind="mcp", mcp_depth=4).weights) == 4
    with pytest.raises(ValueError, match="next_forcing"):
        heads_preset("nope")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "mtp"}, "kind"),
        ({"mcp_depth": -1}, "mcp_depth"),
        ({"mcp_depth": 5}, "mcp_depth"),
        ({"loss_weights": [0.5, 0.2]}, "loss_weights"),
        ({"loss_weights": [0.5, -0.2, 0.1]}, "loss_weights"),
        ({"mcp_shift": 0.0}, "mcp_shift"),
        ({"blocks_per_depth": 0}, "blocks_per_depth"),
        ({"fusion_layers": []}, "fusion_layers"),
        ({"fusion_layers": [1, 1]}, "fusion_layers"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}="):
        HeadsConfig(**{"kind": "mcp", **overrides})


@pytest.mark.parametrize(
    ("overrides", "field", "detail"),
    [
        ({"fusion_layers": [4]}, "fusion_layers", "-4..3"),
        ({"fusion_layers": [0, -4]}, "fusion_layers", "same layer"),
        ({"blocks_per_depth": 5}, "blocks_per_depth", "<= 4"),
        ({"kind": "linear", "layer_stride": 5}, "layer_stride", "<= 4"),
    ],
)
def test_config_errors_against_the_backbone(overrides, field, detail):
    with pytest.raises(ValueError, match=f"^{field}=.*{detail}"):
        make_heads(HeadsConfig(**{"kind": "mcp", **overrides}), tiny_config())
