"""MCP-parallel inference: depth 1's KV-cached prediction equals its teacher-forced training
pass, the pass count halves, shapes and the horizon semantics (odd horizons, horizon 1)."""

import pytest
import torch

from tests.tiny_models import randomise, tiny_config
from worldmodel.heads import HeadsConfig, WorldModelWithHeads, heads_preset
from worldmodel.heads.draft import HeadCache, predict_pair_velocity
from worldmodel.heads.modules import FutureDraw
from worldmodel.inference import rollout_open_loop
from worldmodel.model import WindowInputs, WorldModel
from worldmodel.model.kv_cache import CleanSegment
from worldmodel.model.layout import CLEAN_ACTION, CLEAN_VIDEO

NUM_CHUNKS, B = 3, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_model(heads: str | HeadsConfig = "next_forcing", attention_window=None):
    """A tiny model (float64 for the equality test) whose every parameter is random."""
    torch.manual_seed(0)
    cfg = tiny_config(tokens_per_frame=3, max_chunks=16, attention_window=attention_window)
    config = heads_preset(heads) if isinstance(heads, str) else heads
    model = WorldModelWithHeads(cfg, config).double().eval()
    randomise(model, 0.3)
    return model


@pytest.mark.parametrize("target_positions", [True, False])
@pytest.mark.parametrize("attention_window", [None, 1])
@torch.no_grad()
def test_depth1_cached_equals_teacher_forced(attention_window, target_positions):
    """The draft of chunk i+1 at the slots of chunk i, its tokens at chunk i+1's positions
    (or, with target_positions off, at chunk i's), equals depth 1's training pass."""
    heads = heads_preset("next_forcing")
    heads.target_positions = target_positions
    model = random_model(heads, attention_window=attention_window)
    cfg, heads = model.config, model.heads
    g = torch.Generator().manual_seed(1)
    F, N, C, A, d = NUM_CHUNKS * cfg.K, cfg.tokens_per_frame, cfg.latent_dim, 2, 3

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    clean_actions = randn(B, F, A, d)  # model units
    inputs = WindowInputs(
        noisy_video=randn(B, F, N, C),
        noisy_video_sigma=rand(B, F),
        clean_video=randn(B, F, N, C),
        clean_video_sigma=torch.zeros(B, F, dtype=torch.float64),
        noisy_action=randn(B, F, A, d),
        noisy_action_sigma=rand(B, F),
        clean_action=clean_actions,
    )
    future, future_sigma = randn(B, F, N, C), rand(B, F)  # noisy chunk i+1 at slots of i
    out = model.forward_window(inputs, return_hidden=True)
    draw = FutureDraw(
        k=1,
        x0=future,
        noise=future,
        sigma=future_sigma,
        valid=torch.ones(B, F).bool(),
        noisy=future,
    )
    h_0 = heads.fusion(out.noisy_video_hidden)
    teacher, _ = heads.run_depth(model, heads.depth_modules[0], h_0, draw, out)  # (B, F, N, C)

    cache = model.init_cache(batch_size=B)
    head_cache = HeadCache(model, heads, cache)
    for i in range(NUM_CHUNKS):
        frames = slice(i * cfg.K, (i + 1) * cfg.K)
        v_now, v_next = predict_pair_velocity(
            model,
            heads,
            head_cache,
            inputs.noisy_video[:, frames],
            inputs.noisy_video_sigma[:, frames],
            future[:, frames],
            future_sigma[:, frames],
        )
        torch.testing.assert_close(v_now, out.video_velocity[:, frames], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(v_next, teacher[:, frames], rtol=1e-10, atol=1e-10)
        head_cache.append_segments(  # one fused pass through both caches
            [
                CleanSegment(CLEAN_VIDEO, inputs.clean_video[:, frames]),
                CleanSegment(CLEAN_ACTION, clean_actions[:, frames]),
            ]
        )
    assert head_cache.cache.segments == cache.segments


def context_and_actions(model: WorldModel, horizon: int, seed: int = 0):
    """Context video of one chunk, its actions and ``horizon`` chunks of future actions, all
    in model units."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    shape = (B, cfg.K, cfg.tokens_per_frame, cfg.latent_dim)
    video = torch.randn(*shape, generator=g, dtype=model.dtype)
    actions = torch.randn(B, (horizon + 1) * cfg.K, 2, 3, generator=g, dtype=model.dtype)
    return video, actions[:, : cfg.K], actions[:, cfg.K :]


@pytest.mark.parametrize("given_actions", [True, False])
def test_mcp_parallel_halves_the_video_passes(given_actions):
    model = random_model()
    horizon, steps = 4, 4
    video, context_actions, future = context_and_actions(model, horizon)
    future = future if given_actions else None
    runs = {
        mode: rollout_open_loop(
            model,
            video,
            context_actions,
            horizon,
            steps,
            future_actions=future,
            action_steps=2,
            mode=mode,
            generator=torch.Generator().manual_seed(0),
        )
        for mode in ("standard", "mcp_parallel")
    }
    standard, parallel = runs["standard"], runs["mcp_parallel"]
    K, N, C = model.config.K, model.config.tokens_per_frame, model.config.latent_dim
    for run in runs.values():
        assert run.video.shape == (B, horizon * K, N, C)
        assert run.actions.shape == (B, horizon * K, 2, 3)
        assert torch.isfinite(run.video).all() and torch.isfinite(run.actions).all()
    assert standard.passes["video"] == horizon * steps
    assert parallel.passes["video"] == standard.passes["video"] // 2
    action_passes = 0 if given_actions else 2 * horizon  # action_steps=2 per chunk
    assert standard.passes["action"] == parallel.passes["action"] == action_passes
    # Clean appends are fused: what was appended runs in one pass when a denoising step needs
    # it; the last chunk's appends never run. Given actions: the context, then each video
    # step's previous chunks (standard: 1 chunk, mcp_parallel: a pair). Denoised actions: also
    # each video before its actions are denoised (a pair's second video joins its first
    # chunk's actions).
    if given_actions:
        standard_appends, parallel_appends = horizon, horizon // 2
    else:
        standard_appends, parallel_appends = 2 * horizon, 3 * horizon // 2
    assert standard.passes["backbone"] == horizon * steps + standard_appends + action_passes
    assert parallel.passes["backbone"] == horizon * steps // 2 + parallel_appends + action_passes
    assert standard.passes["head"] == 0
    # depth 1 runs in every video pass and on every clean append (its own cache)
    assert parallel.passes["head"] == horizon * steps // 2 + parallel_appends
    if given_actions:
        assert torch.equal(parallel.actions, future)
        assert torch.equal(standard.actions, future)


def test_horizon_semantics():
    """horizon 1 in mcp_parallel is the standard rollout; an odd horizon ends standard."""
    model = random_model()
    video, context_actions, future = context_and_actions(model, 3)

    def run(horizon, mode):
        return rollout_open_loop(
            model,
            video,
            context_actions,
            horizon,
            steps=3,
            future_actions=future,
            mode=mode,
            generator=torch.Generator().manual_seed(0),
        )

    one_std, one_par = run(1, "standard"), run(1, "mcp_parallel")
    assert torch.equal(one_std.video, one_par.video)
    assert one_std.passes["video"] == one_par.passes["video"] == 3
    assert one_std.passes["backbone"] == one_par.passes["backbone"]  # same backbone runs
    three = run(3, "mcp_parallel")
    assert three.video.shape[1] == 3 * model.config.K and three.passes["video"] == 6
    standard = run(3, "standard")
    assert standard.passes["video"] == 9
    # the first chunk comes from the same backbone passes on the same first noise draw
    torch.testing.assert_close(three.video[:, :2], standard.video[:, :2])


def test_standard_mode_without_heads_and_mode_errors():
    model = random_model()
    video, context_actions, future = context_and_actions(model, 2)
    kept = rollout_open_loop(
        model, video, context_actions, 2, 2, future, generator=torch.Generator().manual_seed(0)
    )
    model.drop_heads()
    dropped = rollout_open_loop(
        model, video, context_actions, 2, 2, future, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(kept.video, dropped.video)
    with pytest.raises(ValueError, match="mcp_parallel"):
        rollout_open_loop(model, video, context_actions, 2, 2, future, mode="mcp_parallel")
    with pytest.raises(ValueError, match="mode="):
        rollout_open_loop(model, video, context_actions, 2, 2, future, mode="fast")
    linear = random_model("linear_every_third")
    with pytest.raises(ValueError, match="kind=mcp"):
        rollout_open_loop(linear, video, context_actions, 2, 2, future, mode="mcp_parallel")
