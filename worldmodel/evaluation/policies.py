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

World-model time (glossary in ``worldmodel/model/layout.py``, ``worldmodel/timing.py``):
A = 50 / latent_fps control steps per latent frame, K latent frames per chunk, and the action
token of a frame holds the A actions leading INTO it (``worldmodel/model/actions.py``). An
episode's chunk 0 holds the observed frame 0 and K - 1 imagined frames; its frame-0 token is
padding, so (K - 1)*A actions run. Every later chunk is K imagined frames whose K*A actions
run from the last observed frame. The observed latent frames of a chunk are ``frames[A],
frames[2A], ...``. So a chunk whose actions start at control step s imagines its frames at
steps s + A, .., s + K*A; chunk 0's at 0 (the observed frame, clamped), A, .., (K - 1)*A.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from envs.env import ACTION_DIM, TabletopEnv
from envs.expert import ScriptedExpert
from worldmodel.inference.session import (
    InferenceSession,
    check_context,
    check_mode,
    chunks_per_step,
)
from worldmodel.model.world_model import WorldModel
from worldmodel.timing import fps_stride
from worldmodel.tokenizer.base import Tokenizer


class Policy(Protocol):
    """Acts a chunk at a time; see the module docstring for the call order."""

    def reset(self, obs: dict, seed: int) -> None:
        """Start an episode whose first observation is ``obs`` and whose env seed is ``seed``."""

    def act(self, obs: dict) -> np.ndarray:
        """The next chunk of joint-position targets (n, 14), n >= 1, executed open loop."""

    def observe(self, frames: list[dict]) -> None:
        """The n + 1 observations seen while the chunk ran (``frames[0]`` the one acted on)."""


class BatchPolicy(Protocol):
    """Acts for B episodes in lockstep; None in a list marks an episode that has ended."""

    def reset_batch(self, obs: list[dict], seeds: list[int]) -> None:
        """Start B episodes (first observations, env seeds)."""

    def act_batch(self, obs: list[dict | None]) -> list[np.ndarray | None]:
        """The next chunk (n, 14) of every running episode."""

    def observe_batch(self, frames: list[list[dict] | None]) -> None:
        """Every running episode's n + 1 observations of the chunk it just executed."""

    @property
    def batch_passes(self) -> list[dict[str, int]]:
        """Network passes since the reset, per episode (empty dicts if not counted)."""


# A policy that imagines (the world model) also has ``imagined_frames(row) -> (latents (F, N,
# C), control steps (F,))``: every latent frame it imagined for episode ``row`` since the reset.


class EpisodePolicies:
    """One-episode policies, one per row, behind the ``BatchPolicy`` protocol."""

    def __init__(self, policies: list[Policy]) -> None:
        self.policies = policies
        self.rows = len(policies)

    def reset_batch(self, obs: list[dict], seeds: list[int]) -> None:
        if len(seeds) > len(self.policies):
            raise ValueError(f"{len(seeds)} episodes for {len(self.policies)} policies")
        self.rows = len(seeds)
        for policy, first, seed in zip(self.policies, obs, seeds, strict=False):
            policy.reset(first, seed)

    def act_batch(self, obs: list[dict | None]) -> list[np.ndarray | None]:
        pairs = zip(self.policies, obs, strict=False)
        return [p.act(o) if o is not None else None for p, o in pairs]

    def observe_batch(self, frames: list[list[dict] | None]) -> None:
        for policy, seen in zip(self.policies, frames, strict=False):
            if seen is not None:
                policy.observe(seen)

    @property
    def batch_passes(self) -> list[dict[str, int]]:
        return [dict(getattr(p, "passes", {})) for p in self.policies[: self.rows]]


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


def _check_parts(
    env: TabletopEnv, model: WorldModel, tokenizer: Tokenizer, latent_fps: float
) -> None:
    """ValueError unless env, tokenizer and model fit together at ``latent_fps`` (latent
    frames per second, ``worldmodel/timing.py``)."""
    cfg = model.config
    stride = fps_stride(env.control_hz, latent_fps)
    if stride != cfg.actions_per_frame:
        raise ValueError(
            f"latent_fps={latent_fps:g} gives {stride} actions per latent frame at the env's "
            f"{env.control_hz:g} Hz, the model has actions_per_frame={cfg.actions_per_frame}; "
            "pass the latent frame rate it was trained at"
        )
    if cfg.action_dim != ACTION_DIM:
        raise ValueError(f"model action_dim={cfg.action_dim}; the env needs {ACTION_DIM}")
    latent = (tokenizer.tokens_per_frame, tokenizer.latent_dim)
    if latent != (cfg.tokens_per_frame, cfg.latent_dim):
        raise ValueError(
            f"tokenizer gives (N, C)={latent}, the model expects "
            f"({cfg.tokens_per_frame}, {cfg.latent_dim}); use the tokenizer it was trained with"
        )
    if tokenizer.observes == "state":
        if tokenizer.latent_dim != env.scene_state.dim:
            raise ValueError(
                f"the env's {env.task.name} state has {env.scene_state.dim} channels, the "
                f"tokenizer {tokenizer.latent_dim}; evaluate on the task the run trained on"
            )
        return
    missing = [c for c in tokenizer.cameras if c not in env.cameras]
    if missing or tuple(env.image_size) != tokenizer.image_size:
        raise ValueError(
            f"env renders cameras {list(env.cameras)} at {list(env.image_size)}, the "
            f"tokenizer needs {list(tokenizer.cameras)} at {list(tokenizer.image_size)}; "
            "build the env with those"
        )


class WorldModelPolicy:
    """A world model acting in closed loop, one chunk per ``act`` (module docstring for time).

    ``act``: the chunk's video is imagined (``video_steps`` Euler steps; for the episode's
    first chunk around the observed frame 0), appended to the session's caches, and its
    actions denoised (inverse dynamics, ``action_steps``), decoded relative to the joint
    positions just observed, and returned flattened to (n, 14). ``observe``: the real frames at
    the chunk's latent-frame times replace the imagined video, then the actions join the
    caches (``worldmodel/inference/session.py`` does the caching, denoising and counting).

    ``mode="mcp_parallel"`` (MCP heads only): chunk i and depth 1's draft of chunk i+1 are
    denoised in the same passes; chunk i runs and is observed; chunk i+1 is the draft,
    appended without further video denoising; its actions are denoised, it runs and is
    observed. So video-denoising passes per chunk are halved.

    Context: the session never holds more chunk positions than training windows did; it
    slides, keeping the last ``context_chunks`` real chunks renumbered from 0 (default: as
    many as fit). A ``context_chunks`` past training is refused here, with one line.

    Batched: ``reset_batch`` / ``act_batch`` / ``observe_batch`` run B episodes in lockstep
    in one session of batch B (``BatchPolicy``); row b draws its noise from its own episode's
    generator, so its numbers are those of the episode alone. A row whose episode has ended
    (None in the lists) is still computed, its real frames replaced by its own imagination,
    and its actions are not returned. The one-episode protocol is the batch of one.

    ``env`` is checked against the tokenizer (cameras, image size); ``seed`` with the episode
    seed seeds the noise; ``video_steps``/``action_steps`` default to the model config's.
    """

    def __init__(
        self,
        env: TabletopEnv,
        model: WorldModel,
        tokenizer: Tokenizer,
        latent_fps: float,
        video_steps: int | None = None,
        action_steps: int | None = None,
        mode: str = "standard",
        seed: int = 0,
        context_chunks: int | None = None,
    ) -> None:
        check_mode(model, mode)
        _check_parts(env, model, tokenizer, latent_fps)
        cfg = model.config
        video_steps = cfg.video_steps if video_steps is None else video_steps
        action_steps = cfg.action_steps if action_steps is None else action_steps
        for name, steps in (("video_steps", video_steps), ("action_steps", action_steps)):
            if steps < 1:
                raise ValueError(f"{name}={steps} is not valid; must be >= 1")
        check_context(cfg.trained_chunks, chunks_per_step(mode), context_chunks)
        self.model, self.tokenizer = model.eval(), tokenizer.eval()
        self.K, self.A = cfg.K, cfg.actions_per_frame
        self.video_steps, self.action_steps = video_steps, action_steps
        self.mode, self.seed, self.context_chunks = mode, seed, context_chunks
        self.reset({}, 0)

    # ----------------------------------------------------------------- one episode
    def reset(self, obs: dict, seed: int) -> None:
        """A new session (empty caches, zeroed pass counts), noise seeded from ``seed``."""
        self.reset_batch([obs], [seed])

    def act(self, obs: dict) -> np.ndarray:
        return self.act_batch([obs])[0]

    def observe(self, frames: list[dict]) -> None:
        self.observe_batch([frames])

    @property
    def passes(self) -> dict[str, int]:
        return self.session.passes

    @property
    def restarts(self) -> int:
        return self.session.restarts

    # ----------------------------------------------------------------- B episodes
    def reset_batch(self, obs: list[dict], seeds: list[int]) -> None:
        """A new session of batch ``len(seeds)``, row b's noise seeded from ``seeds[b]``."""
        self.generators = [
            torch.Generator().manual_seed(episode_seed(self.seed, seed)) for seed in seeds
        ]
        self.session = InferenceSession(self.model, len(seeds), self.mode, self.context_chunks)
        self.draft: Tensor | None = None  # (B, K, N, C) depth 1's draft of the next chunk
        self.actions: Tensor | None = None  # (B, K, A, d) model units, the running chunk
        self.first_latent: Tensor | None = None  # (B, N, C) frame 0 while chunk 0 runs
        self.started = False  # chunk 0 of the episodes has been planned
        self.steps_planned = 0  # control steps of the chunks planned so far
        self.imagined: list[Tensor] = []  # (B, K, N, C) per chunk planned, on the CPU
        self.imagined_steps: list[np.ndarray] = []  # (K,) control steps of those frames

    @property
    def batch_passes(self) -> list[dict[str, int]]:
        """Pass totals since the reset, per row (every row takes part in every pass)."""
        return [dict(self.session.passes) for _ in self.generators]

    def imagined_frames(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``row``'s imagined latent frames (F, N, C) float32 of every chunk planned since
        the reset, and their control steps (F,) (module docstring); chunk 0's frame 0 is the
        observed one."""
        if not self.imagined:
            raise ValueError("imagined_frames: no chunk planned yet; call act_batch first")
        latents = torch.cat([video[row] for video in self.imagined])  # (F, N, C)
        return latents.float().numpy(), np.concatenate(self.imagined_steps)

    @torch.no_grad()
    def act_batch(self, obs: list[dict | None]) -> list[np.ndarray | None]:
        """The next chunk (n, 14) of every running episode; None for the ended ones."""
        reference = torch.stack(
            [
                torch.as_tensor(np.asarray(o["joint_pos"], np.float32))
                if o is not None
                else torch.zeros(ACTION_DIM)
                for o in obs
            ]
        )  # (B, d)
        while True:
            first = not self.started
            self._plan_chunk(obs, first)
            self.started = True
            executed = self.K - 1 if first else self.K  # frame 0's padded token never runs
            if executed:
                break
            self.session.append_actions(self.actions)  # K=1: chunk 0 is the frame observed
        B = len(obs)
        raw = self.model.decode_actions_raw(
            self.actions, reference.to(self.actions)[:, None].expand(B, self.K, -1)
        )  # (B, K, A, d)
        chunks = raw[:, self.K - executed :].reshape(B, executed * self.A, ACTION_DIM)
        chunks = chunks.float().numpy()  # (B, n, 14)
        return [chunk if o is not None else None for chunk, o in zip(chunks, obs, strict=True)]

    @torch.no_grad()
    def observe_batch(self, frames: list[list[dict] | None]) -> None:
        """Each running episode's n + 1 observations of the chunk just executed; None for an
        ended episode (its imagined frames stay)."""
        executed = self.K - (self.first_latent is not None)
        steps = executed * self.A
        running = [b for b, seen in enumerate(frames) if seen is not None]
        if self.actions is None or any(len(frames[b]) != steps + 1 for b in running):
            got = sorted({len(frames[b]) for b in running})
            raise ValueError(
                f"observe needs the {steps + 1} observations of the chunk just executed, "
                f"got {got}; call act first and pass [obs, *observations after each step]"
            )
        real = self.session.pending_video.clone()  # (B, K, N, C) imagined
        if running:
            seen = [o for b in running for o in frames[b][self.A :: self.A]]
            encoded = self.encode(seen).view(len(running), executed, *real.shape[2:])
            real[running, self.K - executed :] = encoded.to(real)
            if self.first_latent is not None:
                real[running, 0] = self.first_latent[running].to(real)
        self.session.replace_video(real)
        self.session.append_actions(self.actions)
        self.actions = self.first_latent = None

    # ----------------------------------------------------------------- helpers
    def _plan_chunk(self, obs: list[dict | None], first: bool) -> None:
        """Imagine the next chunk's video, append it and denoise its actions."""
        self.first_latent = self.encode(obs) if first else None  # (B, N, C)
        self.session.make_room(1)  # a drafted chunk has its room already
        video = self.chunk_video()  # (B, K, N, C)
        self.session.append_video(video)
        self.imagined.append(video.detach().to("cpu", copy=True))
        self.imagined_steps.append(self.frame_steps(first))
        self.steps_planned += (self.K - first) * self.A
        self.actions = self.session.denoise_actions(
            self.action_steps, self.generators, pad_first=first
        )  # (B, K, A, d) model units

    def frame_steps(self, first: bool) -> np.ndarray:
        """(K,) the control steps of the next chunk's latent frames (module docstring)."""
        return self.steps_planned + self.A * np.arange(1 - first, self.K + 1 - first)

    def chunk_video(self) -> Tensor:
        """The next chunk's imagined video (B, K, N, C), around ``first_latent`` for chunk 0;
        in mcp_parallel the draft made with the chunk before."""
        if self.draft is not None:
            video, self.draft = self.draft, None
            return video
        video, self.draft = self.session.denoise_video(
            self.video_steps, self.generators, first_frame=self.first_latent
        )  # (B, K, N, C), the draft (B, K, N, C) or None
        return video

    def encode(self, observations: list[dict]) -> Tensor:
        """The tokenizer's latents (T, N, C) of T observations, in the model's dtype."""
        latents = self.tokenizer.encode_observations(observations)  # (T, N, C)
        return latents.to(self.model.device, self.model.dtype)


class OracleVideoPolicy(WorldModelPolicy):
    """The world model acting on the expert's real frames instead of its imagination: the
    video of every chunk is the encoded observation the scripted expert saw at the same
    control steps of the same seed (recorded at ``reset`` in a twin env), so its actions come
    from inverse dynamics on perfect video. Success here and failure with imagination says
    the imagination fails; failure here says the action decoding does (``diagnose``).

    Past the end of the expert's episode its last frame is held. Standard mode only."""

    def __init__(self, env: TabletopEnv, model: WorldModel, tokenizer: Tokenizer, **kwargs):
        if kwargs.get("mode", "standard") != "standard":
            raise ValueError("the oracle-video policy runs in mode='standard' only")
        self.expert_env = TabletopEnv(
            env.task.name, env.setting, env.cameras, env.image_size, max_steps=env.max_steps
        )
        self.expert = ScriptedExpert(self.expert_env)
        super().__init__(env, model, tokenizer, **kwargs)

    def reset_batch(self, obs: list[dict], seeds: list[int]) -> None:
        super().reset_batch(obs, seeds)
        if any(obs):
            self.expert_frames = [self.expert_observations(seed) for seed in seeds]

    def expert_observations(self, seed: int) -> list[dict]:
        """The expert's observations of episode ``seed``, one per control step (T + 1)."""
        env = self.expert_env
        obs, _ = env.reset(seed=seed)
        self.expert.reset()
        frames, done = [obs], False
        while not done:
            obs, _, terminated, truncated, _ = env.step(self.expert.act())
            frames.append(obs)
            done = terminated or truncated
        return frames

    def chunk_video(self) -> Tensor:
        first = self.first_latent is not None
        times = self.frame_steps(first)
        seen = [frames[min(t, len(frames) - 1)] for frames in self.expert_frames for t in times]
        encoded = self.encode(seen)  # (B*K, N, C)
        video = encoded.view(len(self.expert_frames), self.K, *encoded.shape[1:])
        if first:
            video[:, 0] = self.first_latent
        return video  # (B, K, N, C)
