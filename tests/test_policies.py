"""World-model policies with real parts: a random tiny model, the patch tokenizer on 16x16
frames of the real env; first-frame clamp, closed loop in both modes, sliding context."""

import functools

import numpy as np
import pytest
import torch

from envs.env import TabletopEnv
from tests.tiny_models import randomise, tiny_config
from worldmodel.evaluation.closed_loop import evaluate_closed_loop
from worldmodel.evaluation.policies import WorldModelPolicy
from worldmodel.heads import HeadsConfig, WorldModelWithHeads
from worldmodel.inference import InferenceSession
from worldmodel.model import WorldModel
from worldmodel.model.actions import PAD_ACTION
from worldmodel.tokenizer import PatchTokenizer
from worldmodel.training.windows import relative_action_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASK, SEED, SIZE = "press_button", 100000, (16, 16)
FPS = 25  # A = 50 / 25 = 2 actions per latent frame; K = 2 frames: 4 control steps a chunk
CHUNK_STEPS = 4
FIRST_CHUNK_STEPS = 2  # chunk 0's frame 0 is observed and its action token is padding


def tokenizer() -> PatchTokenizer:
    return PatchTokenizer(("head",), SIZE, patch=8)  # N = 4 tokens of C = 192


def tiny_model(train_window_frames: int | None = None) -> WorldModelWithHeads:
    """A random tiny model with one MCP depth, sized for the tokenizer and the env; relative
    actions with a spread of 0.05 rad around the joint positions."""
    torch.manual_seed(0)
    cfg = tiny_config(
        latent_dim=192,
        action_dim=14,
        actions_per_frame=2,
        max_chunks=8,
        train_window_frames=train_window_frames,
    )
    heads = HeadsConfig(kind="mcp", mcp_depth=1, blocks_per_depth=1)
    model = WorldModelWithHeads(cfg, heads)
    randomise(model, 0.1)
    g = torch.Generator().manual_seed(2)
    model.action_codec.fit(
        0.05 * torch.randn(64, 2, 14, generator=g), torch.zeros(64, 14), relative_action_mask(14)
    )
    return model


def camera_env() -> TabletopEnv:
    return TabletopEnv(TASK, cameras=("head",), image_size=SIZE)


@pytest.mark.parametrize("mode", ["standard", "mcp_parallel"])
@torch.no_grad()
def test_first_frame_is_the_observed_latent_exactly(mode):
    model = tiny_model()
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    first = torch.randn(1, cfg.tokens_per_frame, cfg.latent_dim, generator=g)
    other = first + 1.0

    def denoise(frame):
        session = InferenceSession(model, 1, mode)
        return session.denoise_video(3, torch.Generator().manual_seed(1), first_frame=frame)

    video, draft = denoise(first)
    assert video.shape == (1, cfg.K, cfg.tokens_per_frame, cfg.latent_dim)
    assert torch.equal(video[:, 0], first)
    assert draft is None  # a sequence's first chunk is never drafted from, in either mode
    moved, _ = denoise(other)  # the clamped frame conditions the frames after it
    assert torch.equal(moved[:, 0], other)
    assert not torch.allclose(moved[:, 1:], video[:, 1:])


@torch.no_grad()
def test_first_chunk_pads_its_first_action_token():
    model = tiny_model()
    session = InferenceSession(model, 1)
    video, _ = session.denoise_video(2)
    session.append_video(video)
    actions = session.denoise_actions(2, pad_first=True)
    assert torch.equal(actions[:, 0], torch.full_like(actions[:, 0], PAD_ACTION))
    assert not torch.equal(actions[:, 1], torch.full_like(actions[:, 1], PAD_ACTION))


def run_chunks(mode: str, steps: int):
    model = tiny_model()
    factory = functools.partial(
        WorldModelPolicy,
        model=model,
        tokenizer=tokenizer(),
        latent_fps=FPS,
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
    chunks = 16
    steps = FIRST_CHUNK_STEPS + (chunks - 1) * CHUNK_STEPS
    standard, standard_passes = run_chunks("standard", steps)
    parallel, parallel_passes = run_chunks("mcp_parallel", steps)
    starts = [0] + [FIRST_CHUNK_STEPS + c * CHUNK_STEPS for c in range(chunks - 1)]
    # chunk 0: the observed frame 0 and one imagined frame at step A; later: K frames each
    times = [0, 2] + [start + j for start in starts[1:] for j in (2, 4)]
    first = tokenizer().encode_observations([camera_env().reset(seed=SEED)[0]])  # (1, N, C)
    for episode in (standard, parallel):
        assert not episode.success and episode.steps == steps
        assert episode.chunks == chunks
        assert episode.frames.shape == (steps + 1, *SIZE, 3)
        assert episode.view.shape == (steps + 1, 256, 256, 3)
        assert episode.chunk_starts == starts
        assert episode.imagined.shape == (2 * chunks, 4, 192)  # (F, N, C)
        assert episode.imagined_steps.tolist() == times and times[-1] == steps
        np.testing.assert_allclose(episode.imagined[0], first[0], atol=1e-6)  # clamped frame 0
        assert np.isfinite(episode.imagined).all() and episode.imagined[1:].std() > 0
    # mcp_parallel: chunk 0 alone (no context to draft from), then chunks 1 and 2, 3 and 4, ...
    # 15 and its unused draft: 9 denoisings of 2 Euler steps for 16 chunks
    assert standard_passes["video"] == 2.0 and parallel_passes["video"] == 9 * 2 / 16
    assert standard_passes["action"] == parallel_passes["action"] == 2.0
    assert standard_passes["head"] == 0 and parallel_passes["head"] > 0
    assert parallel_passes["backbone"] < standard_passes["backbone"]


def play(policy: WorldModelPolicy, envs: list[TabletopEnv], seeds: list[int], ends: list[int]):
    """Chunks of each episode (lists of (n, 14)); episode b stops after ``ends[b]`` chunks."""
    obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    policy.reset_batch(obs, seeds)
    played: list[list[np.ndarray]] = [[] for _ in seeds]
    for chunk in range(max(ends)):
        running = [chunk < end for end in ends]
        planned = policy.act_batch([o if r else None for o, r in zip(obs, running, strict=True)])
        seen = []
        for b, env in enumerate(envs):
            if not running[b]:
                assert planned[b] is None
                seen.append(None)
                continue
            played[b].append(planned[b])
            frames = [obs[b]]
            for action in planned[b]:
                obs[b] = env.step(action)[0]
                frames.append(obs[b])
            seen.append(frames if chunk + 1 < ends[b] else None)
        policy.observe_batch(seen)
    return played


@pytest.mark.parametrize("mode", ["standard", "mcp_parallel"])
def test_a_batch_acts_as_its_episodes_alone(mode):
    """Rows draw their own episode's noise; a row that ended (None) changes nothing else."""
    model, tok = tiny_model(train_window_frames=6), tokenizer()  # slides after 2 chunks
    seeds, ends = [SEED, SEED + 1, SEED + 2], [5, 2, 5]
    envs = [camera_env() for _ in seeds]
    batched = play(WorldModelPolicy(envs[0], model, tok, FPS, 2, 2, mode), envs, seeds, ends)
    for b, seed in enumerate(seeds):
        alone = WorldModelPolicy(envs[0], model, tok, FPS, 2, 2, mode)
        (chunks,) = play(alone, [camera_env()], [seed], [ends[b]])
        assert len(chunks) == len(batched[b]) == ends[b]
        for mine, its in zip(batched[b], chunks, strict=True):
            np.testing.assert_allclose(mine, its, rtol=0, atol=1e-5)
    assert not np.allclose(batched[0][-1], batched[2][-1])


def test_act_returns_joint_targets_near_the_observed_joints():
    env = camera_env()
    policy = WorldModelPolicy(env, tiny_model(), tokenizer(), FPS, 2, 2)
    obs, _ = env.reset(seed=SEED)
    policy.reset(obs, SEED)
    chunk = policy.act(obs)
    assert chunk.shape == (FIRST_CHUNK_STEPS, 14) and chunk.dtype == np.float32
    arm = relative_action_mask(14).numpy()
    offset = np.abs(chunk[:, arm] - obs["joint_pos"][arm])  # relative: small deltas in rad
    assert offset.max() < 1.0 and offset.max() > 0
    policy.reset(obs, SEED)
    np.testing.assert_array_equal(policy.act(obs), chunk)  # seeded by the episode seed
    with pytest.raises(ValueError, match="observe needs the 3 observations"):
        policy.observe([obs])


@pytest.mark.parametrize("mode", ["standard", "mcp_parallel"])
@torch.no_grad()
def test_sliding_context_restarts_from_the_recent_real_chunks(mode):
    model, tok, env = tiny_model(train_window_frames=6), tokenizer(), camera_env()
    assert model.config.trained_chunks == 3
    policy = WorldModelPolicy(env, model, tok, FPS, 2, 2, mode=mode)
    obs, _ = env.reset(seed=SEED)
    policy.reset(obs, SEED)
    for i in range(8):
        session = policy.session
        committed, restarts = list(session.committed), session.restarts
        chunk = policy.act(obs)
        assert session.cache.num_video_chunks <= model.config.trained_chunks
        if session.restarts > restarts:  # rebuilt: first the kept real chunks, renumbered
            fresh = InferenceSession(model, 1, mode)
            for video, actions in committed:
                fresh.append_video(video)
                fresh.append_actions(actions)
            fresh.flush()
            assert len(committed) == session.context_chunks == 3 - (mode == "mcp_parallel") - 1
            for layer in range(model.config.num_blocks):
                keys = session.cache.keys[layer][:, :, : len(fresh.cache)]
                assert torch.equal(keys, fresh.cache.keys[layer])
        frames = [obs]
        for action in chunk:
            obs, _, terminated, truncated, _ = env.step(action)
            assert not (terminated or truncated)
            frames.append(obs)
        policy.observe(frames)
        times = (0, 2) if i == 0 else (2, 4)  # chunk 0: the observed frame 0, then step A
        images = np.stack([frames[t]["images"]["head"] for t in times])
        real = tok.encode({"head": torch.as_tensor(images)})  # (K, N, C)
        assert torch.equal(session.committed[-1][0], real[None])
    assert policy.restarts >= 3


def test_bad_configurations_name_the_culprit():
    env, tok = camera_env(), tokenizer()
    with pytest.raises(ValueError, match="needs a WorldModelWithHeads"):
        WorldModelPolicy(env, WorldModel(tiny_model().config), tok, FPS, 2, 2, "mcp_parallel")
    with pytest.raises(ValueError, match="latent_fps=50 gives 1 actions per latent frame"):
        WorldModelPolicy(env, tiny_model(), tok, FPS * 2, 2, 2)
    with pytest.raises(ValueError, match="tokenizer needs"):
        WorldModelPolicy(TabletopEnv(TASK, cameras=()), tiny_model(), tok, FPS, 2, 2)
    with pytest.raises(ValueError, match="context_chunks=3 is more context than training saw"):
        WorldModelPolicy(env, tiny_model(8), tok, FPS, 2, 2, "mcp_parallel", 0, 3)


@torch.no_grad()
def test_sliding_rebuilds_count_as_backbone_passes():
    """A rebuild re-appends the kept chunks in one fused pass at the next denoising step,
    counted once."""
    model = tiny_model(train_window_frames=4)  # 2 chunk positions: slide after every chunk
    session = InferenceSession(model, 1, context_chunks=1)
    video = torch.zeros(1, 2, 4, 192)
    actions = torch.zeros(1, 2, 2, 14)
    for _ in range(2):
        session.make_room(1)
        session.append_video(video)
        session.append_actions(actions)
    before = session.passes["backbone"]
    session.make_room(1)  # rebuild from 1 kept chunk: its video and its actions
    assert session.restarts == 1
    assert session.passes["backbone"] == before
    session.denoise_video(3)  # the kept chunk in one pass, then 3 denoising passes
    assert session.passes["backbone"] - before == 1 + 3
