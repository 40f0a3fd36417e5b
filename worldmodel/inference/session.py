"""``InferenceSession``: the one engine behind open-loop rollouts and closed-loop policies.

A session holds the KV caches of a batch of sequences (the backbone's, and in ``mcp_parallel``
mode MCP depth 1's), appends clean chunks to them, denoises the next chunk's video and actions
with Euler steps, counts network passes and keeps the context inside what training saw.
Everything is in model units (``worldmodel/model/actions.py``); callers convert raw actions.

One chunk, in the order the training mask allows (``worldmodel/model/layout.py``)::

    video, draft = session.denoise_video(steps, generator)   # noisy video i vs the cache
    session.append_video(video)                               # clean video i joins
    actions = session.denoise_actions(steps, generator)       # inverse dynamics on it
    session.append_actions(actions)                           # clean actions i: committed
    closed loop: session.replace_video(real) after the chunk ran, before append_actions

Appends are fused: appended clean segments wait until the next denoising step needs them
(``flush``) and then join the caches in one pass under the layout mask. The closed loop's real
frames of chunk i and its executed actions therefore cost one pass, and a sliding restart
re-appends its whole context in one pass (an imagined video replaced before it ran costs none).

Modes: ``standard`` runs the backbone alone (any model). ``mcp_parallel`` (MCP heads) denoises
chunk i with the backbone and, in the same passes, drafts chunk i+1 with depth 1
(``worldmodel/heads/draft.py``); the caller appends the draft as chunk i+1's video without
denoising it again, so video-denoising passes per chunk are halved. A sequence's first chunk,
which has no context (an episode's start: frame 0 observed, nothing before), is denoised
alone (``drafts_next``): drafted from it, chunk 1 was 10x further from the real chunk than the
backbone's own prediction two chunks ahead, and its actions lost all skill (diagnose suite,
README "mcp_parallel"), which cost mcp_parallel 27 points of success at scale tiny.

Frame 0 of an episode (``first_frame``): the observed latent is clamped at noise level 0 and
the other frames of the chunk are generated around it; the padded action token of that frame
(``pad_first``) is clamped to ``PAD_ACTION`` the same way, as in the reference.

Sliding context: training windows hold ``config.trained_chunks`` chunk positions, so a
sequence never holds more. When the next denoising step (1 chunk, or 2 in mcp_parallel)
would pass them, the caches are rebuilt from the last ``context_chunks`` committed chunks,
renumbered from chunk 0 (training windows start at any frame of an episode). Default: as many
as fit, ``trained_chunks`` minus the chunks of one step.

Noise: ``generator`` is one generator, or one per row (row b's draws are then those a
session of batch one would make with ``generator[b]``: batched closed loop).

Pass counts (``passes``): ``backbone`` every sequential run of the backbone's blocks
(denoising and fused appends alike), ``head`` runs of depth 1's blocks, ``video`` and ``action``
the denoising passes of each kind (``video`` is what mcp_parallel halves).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from worldmodel import flow
from worldmodel.heads.draft import HeadCache, predict_pair_velocity
from worldmodel.model.actions import PAD_ACTION
from worldmodel.model.kv_cache import CleanSegment
from worldmodel.model.layout import CLEAN_ACTION, CLEAN_VIDEO
from worldmodel.model.world_model import Generators, WorldModel, standard_normal

MODES = ("standard", "mcp_parallel")
PASS_KINDS = ("backbone", "head", "video", "action")


def check_mode(model: WorldModel, mode: str) -> None:
    """ValueError unless ``model`` can run inference ``mode``."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not valid; choose one of: {', '.join(MODES)}")
    if mode == "mcp_parallel" and not model.drafts_next_chunk:
        raise ValueError(
            "mode='mcp_parallel' needs a WorldModelWithHeads with kind=mcp heads; use "
            "mode='standard' for this model"
        )


def chunks_per_step(mode: str) -> int:
    """New chunks one denoising step adds in ``mode``: 2 in mcp_parallel (chunk and draft)."""
    return 2 if mode == "mcp_parallel" else 1


def check_context(
    trained_chunks: int,
    chunks_per_step: int,
    context_chunks: int | None,
    key: str = "context_chunks",
) -> int:
    """The committed chunks a sliding restart keeps; ValueError (one line, naming ``key``)
    when they would be more context than training saw."""
    room = trained_chunks - chunks_per_step
    if room < 0:
        raise ValueError(
            f"one inference step needs {chunks_per_step} chunk positions, the model was "
            f"trained on {trained_chunks}; train with longer windows (data.window_frames)"
        )
    if context_chunks is None:
        return room
    if not 0 <= context_chunks <= room:
        raise ValueError(
            f"{key}={context_chunks} is more context than training saw: windows held "
            f"{trained_chunks} chunks, {chunks_per_step} of them new per step, so at most "
            f"{room}; lower it or train with longer windows (data.window_frames)"
        )
    return context_chunks


@contextmanager
def count_calls(module: nn.Module | None) -> Iterator[list[int]]:
    """Yields a one-element list holding how many times ``module`` ran inside the block."""
    counter = [0]
    if module is None:
        yield counter
        return

    def hook(_module, _inputs):
        counter[0] += 1

    handle = module.register_forward_pre_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


def counted(method: Callable) -> Callable:
    """Add the backbone and depth-1 block runs inside ``method`` to ``self.passes`` (once:
    a counted method called from another counts nothing on its own)."""

    @functools.wraps(method)
    def wrapper(self: InferenceSession, *args, **kwargs):
        if self._counting:
            return method(self, *args, **kwargs)
        head_block = self.heads.depth_modules[0].blocks[0] if self.heads is not None else None
        self._counting = True
        try:
            with count_calls(self.model.blocks[0]) as backbone, count_calls(head_block) as head:
                result = method(self, *args, **kwargs)
        finally:
            self._counting = False
        self.passes["backbone"] += backbone[0]
        self.passes["head"] += head[0]
        return result

    return wrapper


Clamp = tuple[Tensor, Tensor]  # (value (B, ...) of frame 0, rows (B,) bool it applies to)


def clamp_first_frame(x: Tensor, levels: Tensor, clamp: Clamp | None) -> None:
    """Set frame 0 of the clamped rows of ``x`` (B, K, ...) to the value, at level 0 in
    ``levels`` (steps + 1, B, K); in place."""
    if clamp is not None:
        value, rows = clamp
        x[rows, 0] = value[rows].to(x.dtype)
        levels[:, rows, 0] = 0.0


def euler_integrate(
    predict: Callable[[list[Tensor], list[Tensor]], list[Tensor]],
    states: list[Tensor],
    levels: list[Tensor],
    clamps: list[Clamp | None],
    trace: list[list[Tensor]] | None = None,
) -> list[Tensor]:
    """Integrate states from noise to data with Euler steps, jointly.

    states: each (B, K, ...); levels: each (steps + 1, B, K) per-frame noise levels;
    clamps: per state None or a ``Clamp`` whose rows keep frame 0 at its value, at level 0.
    ``predict(states, levels_now)`` returns one velocity per state. A list passed as
    ``trace`` receives, per Euler step, each state's clean estimate ``x - sigma * v`` (B, K,
    ...): where the denoising is heading at that step."""
    for x, level, clamp in zip(states, levels, clamps, strict=True):
        clamp_first_frame(x, level, clamp)
    for s in range(levels[0].shape[0] - 1):
        velocities = predict(states, [level[s] for level in levels])
        if trace is not None:
            trace.append(
                [
                    x - flow.expand_like(level[s], x) * v
                    for x, v, level in zip(states, velocities, levels, strict=True)
                ]
            )
        states = [
            flow.euler_step(x, v, level[s], level[s + 1])
            for x, v, level in zip(states, velocities, levels, strict=True)
        ]
        for x, level, clamp in zip(states, levels, clamps, strict=True):
            clamp_first_frame(x, level, clamp)
    return states


def rows_of(which: Tensor | bool, batch_size: int) -> Tensor:
    """A bool, or (B,) bools, as (B,) bools on the CPU."""
    return torch.as_tensor(which, dtype=torch.bool).expand(batch_size).clone()


class InferenceSession:
    """Caches, appends, denoising, pass counts and sliding context of B sequences (module
    docstring). The model is switched to eval mode."""

    def __init__(
        self,
        model: WorldModel,
        batch_size: int,
        mode: str = "standard",
        context_chunks: int | None = None,
    ) -> None:
        check_mode(model, mode)
        self.model = model.eval()
        self.mode, self.batch_size = mode, batch_size
        self.heads = model.heads if mode == "mcp_parallel" else None
        self.chunks_per_step = chunks_per_step(mode)
        self.trained_chunks = model.config.trained_chunks
        self.context_chunks = check_context(
            self.trained_chunks, self.chunks_per_step, context_chunks
        )
        self.passes = dict.fromkeys(PASS_KINDS, 0)
        self._counting = False  # inside a counted method
        self.restarts = 0  # sliding-context rebuilds
        self.committed: list[tuple[Tensor, Tensor]] = []  # recent (video, actions) chunks
        self._video: Tensor | None = None  # clean video of the chunk awaiting its actions
        self._new_caches()

    # ----------------------------------------------------------------- state
    @property
    def next_chunk(self) -> int:
        """Chunk index (in the current numbering) of the next video to denoise or append."""
        pending = sum(segment.kind == CLEAN_VIDEO for segment in self._pending)
        return self.cache.num_video_chunks + pending

    @property
    def pending_video(self) -> Tensor:
        """The clean video (B, K, N, C) of the chunk awaiting its actions."""
        if self._video is None:
            raise ValueError("no appended video awaits its actions")
        return self._video

    def _new_caches(self) -> None:
        self.cache = self.model.init_cache(batch_size=self.batch_size)
        self.head_cache = (
            HeadCache(self.model, self.heads, self.cache) if self.heads is not None else None
        )
        self._pending: list[CleanSegment] = []  # appended, not yet run (``flush``)

    def _append(self, kind: int, values: Tensor, sigma: Tensor | float | None = None) -> None:
        self._pending.append(CleanSegment(kind, values, sigma))  # moved to the model on flush

    @counted
    @torch.no_grad()
    def flush(self) -> None:
        """Run the appended clean segments into the caches, all in one pass (module
        docstring); the denoising methods call it first."""
        if not self._pending:
            return
        if self.head_cache is not None:
            self.head_cache.append_segments(self._pending)
        else:
            self.model.append_clean_segments(self.cache, self._pending)
        self._pending = []

    # ----------------------------------------------------------------- appends
    def append_video(self, video: Tensor, sigma: Tensor | float | None = None) -> None:
        """Clean video (B, K, N, C) of the next chunk joins the caches (``sigma``: re-noised
        history level, float or (B, K); default 0)."""
        self._append(CLEAN_VIDEO, video, sigma)
        self._video = video

    def replace_video(self, video: Tensor) -> None:
        """The real frames (B, K, N, C) replace the imagined clean video of the last chunk."""
        if self._video is None:
            raise ValueError("replace_video needs an appended video awaiting its actions")
        if self._pending:
            self._pending.pop()  # the imagined video, never run
        elif self.head_cache is not None:
            self.head_cache.drop_last_segment()
        else:
            self.cache.drop_last_segment()
        self._append(CLEAN_VIDEO, video)
        self._video = video

    def append_actions(self, actions: Tensor) -> None:
        """Actions in model units (B, K, A, d) of the last appended video join the caches;
        the chunk is committed (kept for sliding restarts)."""
        if self._video is None:
            raise ValueError("append the clean video of a chunk before its actions")
        self._append(CLEAN_ACTION, actions)
        self.committed.append((self._video, actions))
        del self.committed[: max(0, len(self.committed) - self.context_chunks)]
        self._video = None

    # ----------------------------------------------------------------- denoising
    def drafts_next(self) -> bool:
        """Whether the next denoising step drafts the chunk after it: in mcp_parallel, unless
        the sequence has no context yet (module docstring)."""
        return self.heads is not None and self.next_chunk > 0

    def make_room(self, new_chunks: int) -> None:
        """Rebuild the caches from the last committed chunks if ``new_chunks`` more would pass
        the trained chunk positions (module docstring); they join at the next ``flush``."""
        if self.next_chunk + new_chunks <= self.trained_chunks:
            return
        if self._video is not None:
            raise ValueError("cannot slide the context while a chunk awaits its actions")
        self._new_caches()
        for video, actions in self.committed:
            self._append(CLEAN_VIDEO, video)
            self._append(CLEAN_ACTION, actions)
        self.restarts += 1

    @counted
    @torch.no_grad()
    def denoise_video(
        self,
        steps: int,
        generator: Generators = None,
        first_frame: Tensor | None = None,
        draft: bool | None = None,
        first_rows: Tensor | bool = True,
        trace: list[list[Tensor]] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """The next chunk's video (B, K, N, C) and, when drafting, depth 1's draft of the
        chunk after it (B, K, N, C), else None. ``first_frame`` (B, N, C): an observed frame 0,
        clamped (in the rows ``first_rows``, (B,) bool, default all). ``draft`` defaults to
        ``drafts_next()`` (False: a standard step). ``trace``: the clean estimates of each
        Euler step ([video] or [video, draft]; ``euler_integrate``)."""
        draft = self.drafts_next() if draft is None else draft
        if draft and self.heads is None:
            raise ValueError("drafting needs mode='mcp_parallel'")
        self.make_room(2 if draft else 1)
        self.flush()
        model, cfg = self.model, self.model.config
        like = torch.empty(0, dtype=model.dtype, device=model.device)
        shape = (self.batch_size, cfg.K, cfg.tokens_per_frame, cfg.latent_dim)
        x_now = standard_normal(shape, like, generator)  # (B, K, N, C)
        levels = self._levels(steps, cfg.video_shift)  # (steps + 1, B, K)
        clamp = None
        if first_frame is not None:  # (B, N, C)
            clamp = (first_frame.to(model.device, model.dtype), rows_of(first_rows, shape[0]))
        self.passes["video"] += steps
        if not draft:
            (video,) = euler_integrate(
                lambda xs, ls: [model.predict_video_velocity(self.cache, xs[0], ls[0])],
                [x_now],
                [levels],
                [clamp],
                trace,
            )
            return video, None
        x_next = standard_normal(shape, like, generator)  # (B, K, N, C)
        next_levels = self._levels(steps, self.heads.config.mcp_shift)  # (steps + 1, B, K)
        video, drafted = euler_integrate(
            lambda xs, ls: list(
                predict_pair_velocity(
                    model, self.heads, self.head_cache, xs[0], ls[0], xs[1], ls[1]
                )
            ),
            [x_now, x_next],
            [levels, next_levels],
            [clamp, None],
            trace,
        )
        return video, drafted

    @counted
    @torch.no_grad()
    def denoise_actions(
        self,
        steps: int,
        generator: Generators = None,
        pad_first: Tensor | bool = False,
    ) -> Tensor:
        """Actions in model units (B, K, A, d) of the chunk whose video was appended last;
        ``pad_first`` (bool, or (B,) bools per row): its frame 0 is an episode's first frame,
        whose padded token is clamped to ``PAD_ACTION``."""
        if self._video is None:
            raise ValueError("append the clean video of a chunk before denoising its actions")
        self.flush()
        model, cfg = self.model, self.model.config
        like = torch.empty(0, dtype=model.dtype, device=model.device)
        K = self._video.shape[1]
        shape = (self.batch_size, K, cfg.actions_per_frame, cfg.action_dim)
        x = standard_normal(shape, like, generator)  # (B, K, A, d)
        levels = self._levels(steps, cfg.action_shift, K)  # (steps + 1, B, K)
        clamp = (torch.full_like(x[:, 0], PAD_ACTION), rows_of(pad_first, shape[0]))  # (B, A, d)
        self.passes["action"] += steps
        (actions,) = euler_integrate(
            lambda xs, ls: [model.predict_action_velocity(self.cache, xs[0], ls[0])],
            [x],
            [levels],
            [clamp],
        )
        return actions

    def _levels(self, steps: int, shift: float, K: int | None = None) -> Tensor:
        """(steps + 1, B, K) noise levels of the shifted Euler schedule, from 1 to 0."""
        K = self.model.config.K if K is None else K
        schedule = flow.timestep_schedule(steps, shift).to(self.model.device, self.model.dtype)
        return schedule[:, None, None].repeat(1, self.batch_size, K)
