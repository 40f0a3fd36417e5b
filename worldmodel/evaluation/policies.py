"""Chunked acting policies for closed-loop evaluation: the expert ceiling, two floors and the
world model (standard or MCP-parallel inference).

The protocol, for one episode (``worldmodel/evaluation/closed_loop.py`` runs it)::

    obs, _ = env.reset(seed=seed)
    policy.reset(obs, seed)
    while the episode goes on:
        chunk = policy.act(obs)          # (n, 14) joint-position targets, n >= 1, open loop
        frames = [obs]
        for action in chunk:             # stops early when the episode ends
            obs = env.step(action)[0]
            frames.append(obs)
        policy.observe(frames)           # only when all n actions ran and the episode goes on

``observe`` receives n + 1 observations: ``frames[0]`` is the observation passed to ``act``,
``frames[t]`` the one after executing action t - 1, and ``frames[n]`` is the observation the
next ``act`` receives. ``seed`` is the episode seed: a stochastic policy re-seeds its RNG from
it (and its own ``seed``), so an episode's outcome does not depend on the worker that ran it
or on the episodes before. A policy may count network passes in ``passes`` (kind -> total
since ``reset``), which the evaluation reports per chunk.

World-model time (glossary in ``worldmodel/model/world_model.py``): A = 50 / fps control
steps per latent frame, K latent frames per chunk, so a chunk is K*A control steps. Latent
frame j of a chunk is the observation ``frames[j * A]`` of the chunk; ``frames[K * A]`` is
frame 0 of the next chunk, which is observed before that chunk is imagined.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from envs.env import ACTION_DIM, CONTROL_HZ, TabletopEnv
from envs.expert import ScriptedExpert
from worldmodel import flow
from worldmodel.data.episodes import fps_stride
from worldmodel.heads.modules import MCPHeads
from worldmodel.heads.rollout import MODES, HeadCache, count_calls, predict_pair_velocity
from worldmodel.model.world_model import KVCache, WorldModel, standard_normal
from worldmodel.tokenizer.base import Tokenizer

PASS_KINDS = ("backbone", "head", "video")  # as in heads/rollout.py's RolloutResult


class Policy(Protocol):
    """Acts a chunk at a time; see the module docstring for the call order."""

    def reset(self, obs: dict, seed: int) -> None:
        """Start an episode whose first observation is ``obs`` and whose env seed is ``seed``."""

    def act(self, obs: dict) -> np.ndarray:
        """The next chunk of joint-position targets (n, 14), n >= 1, executed open loop."""

    def observe(self, frames: list[dict]) -> None:
        """The n + 1 observations seen while the chunk ran (``frames[0]`` the one acted on)."""


def episode_seed(policy_seed: int, seed: int) -> int:
    """A 64-bit seed mixing a policy's own seed with the episode seed (both >= 0)."""
    return int(np.random.SeedSequence([policy_seed, seed]).generate_state(1, np.uint64)[0])


def _check_chunk(chunk: int) -> int:
    if chunk < 1:
        raise ValueError(f"chunk={chunk} is not valid; must be >= 1 control step")
    return chunk


class ExpertPolicy:
    """The scripted expert, ``chunk`` steps per ``act``: the ceiling.

    With ``chunk=1`` it acts exactly as in data collection. With longer chunks a phase that
    starts inside a chunk is planned from the state at the chunk's start.
    """

    def __init__(self, env: TabletopEnv, chunk: int = 1) -> None:
        self.expert = ScriptedExpert(env)
        self.chunk = _check_chunk(chunk)

    def reset(self, obs: dict, seed: int) -> None:
        self.expert.reset()

    def act(self, obs: dict) -> np.ndarray:
        return np.stack([self.expert.act() for _ in range(self.chunk)])  # (chunk, 14)

    def observe(self, frames: list[dict]) -> None:
        """The expert plans from the simulator state; it needs no observations."""


class HoldPolicy:
    """Commands the current joint positions ("do nothing"): a floor.

    Actions are joint-position targets, so the zero vector would drive the arms to the zero
    pose; holding means commanding the joint positions just observed (grippers included, both
    in [0, 1] opening units). ``env`` is unused: it is accepted so the class is a factory.
    """

    def __init__(self, env: TabletopEnv | None = None, chunk: int = 1) -> None:
        self.chunk = _check_chunk(chunk)

    def reset(self, obs: dict, seed: int) -> None:
        """Holding needs no state."""

    def act(self, obs: dict) -> np.ndarray:
        return np.repeat(np.asarray(obs["joint_pos"], np.float32)[None], self.chunk, axis=0)

    def observe(self, frames: list[dict]) -> None:
        """Holding needs no observations."""


class RandomPolicy:
    """Joint targets drawn uniformly from the env's action space each step: a floor."""

    def __init__(self, env: TabletopEnv, seed: int = 0, chunk: int = 1) -> None:
        self.low, self.high = env.action_space.low, env.action_space.high
        self.seed = seed
        self.chunk = _check_chunk(chunk)
        self.rng = np.random.default_rng(seed)

    def reset(self, obs: dict, seed: int) -> None:
        self.rng = np.random.default_rng(episode_seed(self.seed, seed))

    def act(self, obs: dict) -> np.ndarray:
        shape = (self.chunk, ACTION_DIM)
        return self.rng.uniform(self.low, self.high, shape).astype(np.float32)  # (chunk, 14)

    def observe(self, frames: list[dict]) -> None:
        """Random actions ignore observations."""


@torch.no_grad()
def denoise_from_first_frame(
    model: WorldModel,
    cache: KVCache,
    first: Tensor,
    steps: int,
    generator: torch.Generator | None = None,
    head_cache: HeadCache | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The next chunk's video (B, K, N, C) whose frame 0 is the observed latent ``first``
    (B, N, C), and with ``head_cache`` also MCP depth 1's draft of the chunk after it.

    Frame 0 is denoised at noise level 0 (per-frame levels, sigma[:, 0] = 0) and reset to
    ``first`` after every Euler step, so the returned frame 0 equals ``first`` exactly and
    the other frames are generated conditioned on it. With ``head_cache`` each pass is one
    joint backbone + depth-1 pass (``heads/rollout.py``), which drafts the chunk after
    (B, K, N, C) from noise on the ``mcp_shift`` schedule; without, the draft is None.
    """
    cfg = model.config
    B, K = first.shape[0], cfg.K
    shape = (B, K, cfg.tokens_per_frame, cfg.latent_dim)
    like = torch.empty(0, dtype=model.dtype, device=model.device)
    first = first.to(model.device, model.dtype)  # (B, N, C)
    x_now = standard_normal(shape, like, generator)  # (B, K, N, C)
    x_now[:, 0] = first
    levels = flow.timestep_schedule(steps, cfg.video_shift).to(like)  # (steps + 1,)
    levels = levels[:, None, None].repeat(1, B, K)  # (steps + 1, B, K)
    levels[:, :, 0] = 0.0  # frame 0 is observed: clean at every step
    x_next = None
    if head_cache is not None:
        x_next = standard_normal(shape, like, generator)  # (B, K, N, C)
        next_levels = flow.timestep_schedule(steps, model.heads.config.mcp_shift).tolist()
    for s in range(steps):
        if head_cache is None:
            v_now = model.predict_video_velocity(cache, x_now, levels[s])
        else:
            level_next = torch.full((B, K), next_levels[s], dtype=model.dtype, device=model.device)
            v_now, v_next = predict_pair_velocity(
                model, model.heads, head_cache, x_now, levels[s], x_next, level_next
            )
            x_next = flow.euler_step(x_next, v_next, next_levels[s], next_levels[s + 1])
        x_now = flow.euler_step(x_now, v_now, levels[s], levels[s + 1])
        x_now[:, 0] = first
    return x_now, x_next


def _check_parts(env: TabletopEnv, model: WorldModel, tokenizer: Tokenizer, fps: float) -> None:
    """ValueError unless env, tokenizer and model fit together at ``fps``."""
    cfg = model.config
    if fps_stride(CONTROL_HZ, fps) != cfg.actions_per_frame:
        raise ValueError(
            f"fps={fps:g} gives {fps_stride(CONTROL_HZ, fps)} actions per frame, the model "
            f"has actions_per_frame={cfg.actions_per_frame}; pass the fps it was trained at"
        )
    if cfg.action_dim != ACTION_DIM:
        raise ValueError(f"model action_dim={cfg.action_dim}; the env needs {ACTION_DIM}")
    latent = (tokenizer.tokens_per_frame, tokenizer.latent_dim)
    if latent != (cfg.tokens_per_frame, cfg.latent_dim):
        raise ValueError(
            f"tokenizer gives (N, C)={latent}, the model expects "
            f"({cfg.tokens_per_frame}, {cfg.latent_dim}); use the tokenizer it was trained with"
        )
    missing = [c for c in tokenizer.cameras if c not in env.cameras]
    if missing or tuple(env.image_size) != tokenizer.image_size:
        raise ValueError(
            f"env renders cameras {list(env.cameras)} at {list(env.image_size)}, the "
            f"tokenizer needs {list(tokenizer.cameras)} at {list(tokenizer.image_size)}; "
            "build the env with those"
        )


def _context_chunks(max_chunks: int, chunks_per_step: int, context_chunks: int | None) -> int:
    """Real chunks kept by a sliding-context restart; default max_chunks // 2 if they fit."""
    room = max_chunks - chunks_per_step
    if room < 0:
        raise ValueError(f"mode='mcp_parallel' needs max_chunks >= 2, the model has {max_chunks}")
    if context_chunks is None:
        return min(max_chunks // 2, room)
    if not 0 <= context_chunks <= room:
        raise ValueError(
            f"context_chunks={context_chunks} is not valid; must be in 0..{room} "
            f"(max_chunks={max_chunks} minus {chunks_per_step} new chunk(s) per step)"
        )
    return context_chunks


class WorldModelPolicy:
    """A world model acting in closed loop, one chunk of K*A control steps per ``act``.

    ``act``: encode the observation (frame 0 of the chunk), imagine the chunk's video from it
    (``denoise_from_first_frame``, ``video_steps`` Euler steps), append it to the KV cache,
    denoise its actions (inverse dynamics, ``action_steps``) and return them flattened to
    (K*A, 14). ``observe``: encode the real frames at the chunk's latent-frame times,
    replace the imagined video in the cache by them and append the executed actions.

    ``mode="mcp_parallel"`` (MCP heads only): one joint denoising of chunk i (backbone) and
    chunk i+1 (depth 1's draft) per pair of chunks. Chunk i runs and is observed; chunk i+1
    is the draft with frame 0 replaced by the latent just observed, appended without further
    denoising; its actions are denoised, it runs and is observed. So video-denoising passes
    per chunk are halved. Observed frames replace imagined ones in the backbone cache and in
    depth 1's ``HeadCache`` alike.

    Sliding context: the cache has ``config.max_chunks`` chunk positions. When the next
    imagination step (1 chunk, or 2 in mcp_parallel) would pass them, the cache is rebuilt
    from the last ``context_chunks`` real chunks (observed video and executed actions),
    renumbered from chunk 0, as training windows start at any frame of an episode. Default
    ``context_chunks``: max_chunks // 2, at most max_chunks minus the chunks of one step.

    ``env`` is checked against the tokenizer (cameras, image size); ``seed`` with the episode
    seed seeds the noise. The model and tokenizer are switched to eval mode.
    """

    def __init__(
        self,
        env: TabletopEnv,
        model: WorldModel,
        tokenizer: Tokenizer,
        fps: float,
        video_steps: int,
        action_steps: int,
        mode: str = "standard",
        seed: int = 0,
        context_chunks: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not valid; choose one of: {', '.join(MODES)}")
        heads = getattr(model, "heads", None)
        if mode == "mcp_parallel" and not isinstance(heads, MCPHeads):
            raise ValueError("mode='mcp_parallel' needs a WorldModelWithHeads with kind=mcp heads")
        _check_parts(env, model, tokenizer, fps)
        for name, steps in (("video_steps", video_steps), ("action_steps", action_steps)):
            if steps < 1:
                raise ValueError(f"{name}={steps} is not valid; must be >= 1")
        self.chunks_per_step = 2 if mode == "mcp_parallel" else 1
        context_chunks = _context_chunks(
            model.config.max_chunks, self.chunks_per_step, context_chunks
        )
        self.model, self.tokenizer = model.eval(), tokenizer.eval()
        self.heads = heads if mode == "mcp_parallel" else None
        self.K, self.A = model.config.K, model.config.actions_per_frame
        self.video_steps, self.action_steps = video_steps, action_steps
        self.mode, self.seed, self.context_chunks = mode, seed, context_chunks
        self.reset({}, 0)

    # ----------------------------------------------------------------- protocol
    def reset(self, obs: dict, seed: int) -> None:
        """Empty caches and history, zeroed pass counters, noise seeded from ``seed``."""
        self.generator = torch.Generator().manual_seed(episode_seed(self.seed, seed))
        self.history: list[tuple[Tensor, Tensor]] = []  # last real (video, actions) chunks
        self.draft: Tensor | None = None  # (1, K, N, C) depth 1's draft of the next chunk
        self.actions: Tensor | None = None  # (1, K, A, d) of the chunk being executed
        self.restarts = 0  # sliding-context rebuilds of the cache
        self.passes = dict.fromkeys(PASS_KINDS, 0)
        self._new_cache()

    @torch.no_grad()
    def act(self, obs: dict) -> np.ndarray:
        with self._counting():
            first = self.encode([obs])[:, 0]  # (1, N, C)
            if self.draft is None:
                self._make_room()
                video, self.draft = denoise_from_first_frame(
                    self.model, self.cache, first, self.video_steps, self.generator, self.head_cache
                )  # (1, K, N, C), the draft (1, K, N, C) or None
                self.passes["video"] += self.video_steps
            else:
                video, self.draft = self.draft, None
                video[:, 0] = first  # the drafted chunk starts where chunk i ended
            self._append(video=video)
            self.actions = self.model.denoise_action_chunk(
                self.cache, None, self.action_steps, self.generator
            )  # (1, K, A, d) raw
        return self.actions.reshape(self.K * self.A, ACTION_DIM).float().cpu().numpy()

    @torch.no_grad()
    def observe(self, frames: list[dict]) -> None:
        steps = self.K * self.A
        if self.actions is None or len(frames) != steps + 1:
            raise ValueError(
                f"observe needs the {steps + 1} observations of the chunk just executed, "
                f"got {len(frames)}; call act first and pass [obs, *observations after each step]"
            )
        with self._counting():
            real = self.encode(frames[: steps : self.A])  # (1, K, N, C)
            self.cache.drop_last_segment()  # the imagined video of this chunk
            if self.head_cache is not None:
                self.head_cache.cache.drop_last_segment()
            self._append(video=real)
            self._append(actions=self.actions)
        self.history.append((real, self.actions))
        del self.history[: max(0, len(self.history) - self.context_chunks)]
        self.actions = None

    # ----------------------------------------------------------------- helpers
    def encode(self, observations: list[dict]) -> Tensor:
        """The tokenizer's latents (1, T, N, C) of T observations, in the model's dtype."""
        images = {
            camera: torch.as_tensor(np.stack([o["images"][camera] for o in observations]))
            for camera in self.tokenizer.cameras
        }  # camera -> (T, H, W, 3) uint8
        latents = self.tokenizer.encode(images)  # (T, N, C)
        return latents[None].to(self.model.device, self.model.dtype)

    def _new_cache(self) -> None:
        self.cache = self.model.init_cache(batch_size=1)
        self.head_cache = (
            HeadCache(self.model, self.heads, self.cache) if self.heads is not None else None
        )

    def _append(self, video: Tensor | None = None, actions: Tensor | None = None) -> None:
        """Append a clean video (1, K, N, C) or raw actions (1, K, A, d) to every cache."""
        if self.head_cache is not None:
            self.head_cache.append_clean(video, actions)
        else:
            self.model.append_clean(self.cache, video_chunk=video, action_chunk=actions)

    def _make_room(self) -> None:
        """Rebuild the cache from the recent real chunks if the next step would not fit."""
        if self.cache.num_video_chunks + self.chunks_per_step <= self.model.config.max_chunks:
            return
        self._new_cache()
        for video, actions in self.history:
            self._append(video=video)
            self._append(actions=actions)
        self.restarts += 1

    @contextmanager
    def _counting(self) -> Iterator[None]:
        """Add the backbone and depth-1 passes run inside the block to ``passes``."""
        head_block = self.heads.depths[0].blocks[0] if self.heads is not None else None
        with (
            count_calls(self.model.blocks[0]) as backbone,
            count_calls(head_block) as head,
        ):
            yield
        self.passes["backbone"] += backbone[0]
        self.passes["head"] += head[0]
