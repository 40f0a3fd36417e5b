"""World-model policies with real parts: a random tiny model, the patch tokenizer on 16x16
frames of the real env; first-frame clamp, closed loop in both modes, sliding context."""

import functools

import numpy as np
import pytest
import torch

from envs.env import TabletopEnv
from tests.tiny_models import randomise, tiny_config
from worldmodel.evaluation.closed_loop import evaluate_closed_loop
from worldmodel.evaluation.policies import WorldModelPolicy, denoise_from_first_frame
from worldmodel.heads import HeadsConfig, WorldModelWithHeads
from worldmodel.heads.rollout import HeadCache
from worldmodel.model import WorldModel
from worldmodel.tokenizer import PatchTokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASK, SEED, SIZE = "press_button", 100000, (16, 16)
FPS = 25  # A = 50 / 25 = 2 actions per latent frame; K = 2 frames: 4 control steps a chunk
CHUNK_STEPS = 4


def tokenizer() -> PatchTokenizer:
    return PatchTokenizer(("head",), SIZE, patch=8)  # N = 4 tokens of C = 192


def tiny_model(max_chunks: int = 8) -> WorldModelWithHeads:
    """A random tiny model with one MCP depth, sized for the tokenizer and the env."""
    torch.manual_seed(0)
    cfg = tiny_config(latent_dim=192, action_dim=14, actions_per_frame=2, max_chunks=max_chunks)
    heads = HeadsConfig(kind="mcp", depths=1, blocks_per_depth=1)
    model = WorldModelWithHeads(cfg, heads)
    randomise(model, 0.1)
    env = TabletopEnv(TASK, cameras=())
    low, high = (torch.as_tensor(b) for b in (env.action_space.low, env.action_space.high))
    model.set_action_stats((low + high) / 2, (high - low) / 4)
    return model


def camera_env() -> TabletopEnv:
    return TabletopEnv(TASK, cameras=("head",), image_size=SIZE)


@pytest.mark.parametrize("mode", ["standard", "mcp_parallel"])
@torch.no_grad()
def test_first_frame_is_the_observed_latent_exactly(mode):
    model = tiny_model()
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    cache = model.init_cache(batch_size=1)
    head_cache = HeadCache(model, model.heads, cache) if mode == "mcp_parallel" else None
    context = torch.randn(1, cfg.K, cfg.tokens_per_frame, cfg.latent_dim, generator=g)
    actions = torch.randn(1, cfg.K, cfg.actions_per_frame, cfg.action_dim, generator=g)
    if head_cache is None:
        model.append_clean(cache, context, actions)
    else:
        head_cache.append_clean(video=context)
        head_cache.append_clean(actions=actions)
    first = torch.randn(1, cfg.tokens_per_frame, cfg.latent_dim, generator=g)
    other = first + 1.0

    def denoise(frame):
        noise = torch.Generator().manual_seed(1)
        return denoise_from_first_frame(model, cache, frame, 3, noise, head_cache)

    video, draft = denoise(first)
    assert video.shape == (1, cfg.K, cfg.tokens_per_frame, cfg.latent_dim)
    assert torch.equal(video[:, 0], first)
    assert (draft is None) == (mode == "standard")
    if draft is not None:
        assert draft.shape == video.shape
    moved, _ = denoise(other)  # the clamped frame conditions the frames after it
    assert torch.equal(moved[:, 0], other)
    assert not torch.allclose(moved[:, 1:], video[:, 1:])


def run_chunks(mode: str, steps: int = 64):
    model = tiny_model()
    factory = functools.partial(
        WorldModelPolicy,
        model=model,
        tokenizer=tokenizer(),
        fps=FPS,
        video_steps=2,
        action_steps=2,
        mode=mode,
    )
    result = evaluate_closed_loop(
        factory,
        TASK,
        "clean",
        [SEED],
        max_steps=steps,
        cameras=("head",),
        image_size=SIZE,
        record_seeds=[SEED],
    )
    return result.episodes[0], result.passes_per_chunk


def test_closed_loop_runs_in_both_modes_and_mcp_halves_video_passes():
    standard, standard_passes = run_chunks("standard")
    parallel, parallel_passes = run_chunks("mcp_parallel")
    for episode in (standard, parallel):
        assert not episode.success and episode.steps == 64
        assert episode.chunks == 64 // CHUNK_STEPS  # chunks of K*A control steps
        assert episode.frames.shape == (65, *SIZE, 3)
    assert standard_passes["video"] == 2.0 and parallel_passes["video"] == 1.0
    assert standard_passes["head"] == 0 and parallel_passes["head"] > 0
    assert parallel_passes["backbone"] < standard_passes["backbone"]


def test_act_returns_a_chunk_of_joint_targets():
    env = camera_env()
    policy = WorldModelPolicy(env, tiny_model(), tokenizer(), FPS, 2, 2)
    obs, _ = env.reset(seed=SEED)
    policy.reset(obs, SEED)
    chunk = policy.act(obs)
    assert chunk.shape == (CHUNK_STEPS, 14) and chunk.dtype == np.float32
    assert np.isfinite(chunk).all()
    policy.reset(obs, SEED)
    np.testing.assert_array_equal(policy.act(obs), chunk)  # seeded by the episode seed
    with pytest.raises(ValueError, match="observe needs the 5 observations"):
        policy.observe([obs])


@pytest.mark.parametrize("mode", ["standard", "mcp_parallel"])
@torch.no_grad()
def test_sliding_context_restarts_from_the_recent_real_chunks(mode):
    model, tok, env = tiny_model(max_chunks=3), tokenizer(), camera_env()
    policy = WorldModelPolicy(env, model, tok, FPS, 2, 2, mode=mode)
    obs, _ = env.reset(seed=SEED)
    policy.reset(obs, SEED)
    for _ in range(8):
        history, restarts = list(policy.history), policy.restarts
        chunk = policy.act(obs)
        assert policy.cache.num_video_chunks <= model.config.max_chunks
        if policy.restarts > restarts:  # rebuilt: first the kept real chunks, renumbered
            fresh = model.init_cache(batch_size=1)
            for video, actions in history:
                model.append_clean(fresh, video, actions)
            assert len(history) == policy.context_chunks == 1  # max_chunks // 2
            for layer in range(model.config.depth):
                assert torch.equal(policy.cache.keys[layer][:, :, : len(fresh)], fresh.keys[layer])
        frames = [obs]
        for action in chunk:
            obs, _, terminated, truncated, _ = env.step(action)
            assert not (terminated or truncated)
            frames.append(obs)
        policy.observe(frames)
        latent_times = np.stack([frames[t]["images"]["head"] for t in (0, 2)])  # steps 0, A
        real = tok.encode({"head": torch.as_tensor(latent_times)})  # (K, N, C)
        assert torch.equal(policy.history[-1][0], real[None])
    assert policy.restarts >= 3


def test_bad_configurations_name_the_culprit():
    env, tok = camera_env(), tokenizer()
    with pytest.raises(ValueError, match="needs a WorldModelWithHeads"):
        WorldModelPolicy(env, WorldModel(tiny_model().config), tok, FPS, 2, 2, "mcp_parallel")
    with pytest.raises(ValueError, match="fps=50 gives 1 actions per frame"):
        WorldModelPolicy(env, tiny_model(), tok, 50, 2, 2)
    with pytest.raises(ValueError, match="tokenizer needs"):
        WorldModelPolicy(TabletopEnv(TASK, cameras=()), tiny_model(), tok, FPS, 2, 2)
    with pytest.raises(ValueError, match="context_chunks=3"):
        WorldModelPolicy(env, tiny_model(max_chunks=4), tok, FPS, 2, 2, "mcp_parallel", 0, 3)
