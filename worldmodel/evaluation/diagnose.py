"""Why a policy fails: teacher-forced action skill by chunk index and frame, real vs imagined.

Held-out episodes are cut into consecutive windows of the chunk positions training saw
(``config.trained_chunks`` chunks of K frames, from frames 0, C*K, 2*C*K, ...; the tail of an
episode is padding, masked). Each window runs chunk by chunk in one ``InferenceSession``,
teacher-forced: the context always holds the real video and the real actions of the earlier
chunks. For chunk c the action denoiser runs on

- ``real`` video: the chunk's real latents (inverse dynamics on perfect video), or
- ``imagined`` video: the chunk the model imagines from the real context (chunk 0 of a window
  around its real frame 0, as the closed loop does at an episode's start),

and its actions are decoded to raw units against the real joint positions the chunk starts
from. Two predictors without a model frame the numbers:

- ``hold``: repeat the last executed action (the last action of the chunk before; for chunk 0,
  whose previous action is outside the window, command the joint positions it starts from),
- ``mean``: the mean raw action of the training episodes.

RMSE over the real action tokens: ``arm`` in radians over the joint targets, ``gripper`` in
opening units over the gripper dims, per chunk index (C,) and per frame within the chunk (K,).
Skill score: ``1 - RMSE / RMSE(hold)`` (> 0: better than holding).

A model with MCP heads is also run as ``mcp_parallel`` drafts it (``drafted``): the pass that
denoises chunk c - 1 from the real context of the chunks before it also drafts chunk c with
depth 1, and chunk c's actions are denoised on that draft once the real chunk c - 1 joined.
Every chunk but the first is drafted here, chunk 1 included, which mcp_parallel no longer does
(``InferenceSession.drafts_next``): this is where that rule's measurement comes from.
``DraftError`` sets the draft against the backbone's own denoising of the same chunk (from the
real context of every chunk before it) and against the backbone two chunks ahead, as the draft
predicts: from the real context before chunk c - 1, the backbone imagines chunk c - 1, decodes
and appends its actions, then imagines chunk c (the same information as the draft, by the
standard sequential path). Latent MSE to the real chunk per chunk index, and per Euler step
the MSE of each trajectory's clean estimate ``x - sigma * v`` (where the denoising is heading),
so a draft that lags the backbone shows at which step and chunk it does, and whether it lags
what two chunks ahead allows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from worldmodel.inference import InferenceSession
from worldmodel.inference.session import check_mode
from worldmodel.model.actions import chunk_reference
from worldmodel.model.world_model import WorldModel
from worldmodel.training.windows import EpisodeLatents, WindowSet, relative_action_mask

SOURCES = ("real", "imagined")
PREDICTORS = ("real", "imagined", "drafted", "hold", "mean")
DRAFT_SERIES = ("backbone", "backbone_two_ahead", "draft")
GROUPS = ("arm", "gripper")


@dataclass
class ActionSkill:
    """Teacher-forced action RMSE per predictor and dim group (module docstring)."""

    by_chunk: dict[str, dict[str, list[float]]]  # predictor -> group -> (C,) RMSE
    by_frame: dict[str, dict[str, list[float]]]  # predictor -> group -> (K,) RMSE
    overall: dict[str, dict[str, float]]  # predictor -> group -> RMSE
    windows: int
    tokens: int  # real action tokens scored
    draft: DraftError | None = None  # with MCP heads: the drafts' latent error

    def skill(self, source: str, group: str = "arm") -> list[float]:
        """(C,) skill score 1 - RMSE / RMSE(hold) per chunk index."""
        model, hold = self.by_chunk[source][group], self.by_chunk["hold"][group]
        return [1.0 - m / h if h > 0 else float("nan") for m, h in zip(model, hold, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; an undefined value (NaN: no token, or a hold error of 0) becomes None."""
        out = asdict(self)
        sources = [s for s in (*SOURCES, "drafted") if s in self.by_chunk]
        out["skill_by_chunk"] = {s: {g: self.skill(s, g) for g in GROUPS} for s in sources}
        return _nan_to_none(out)


@dataclass
class DraftError:
    """mcp_parallel's depth-1 draft of each chunk against the backbone's own denoising of it
    (module docstring); latent MSE over the valid frames, NaN where there is none."""

    by_chunk: dict[str, list[float]]  # DRAFT_SERIES and draft_vs_backbone -> (C,)
    by_step: dict[str, list[float]]  # DRAFT_SERIES -> (steps,) clean estimate vs real
    windows: int


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def diagnosis_windows(episodes: list[EpisodeLatents], frames: int) -> dict[str, Tensor]:
    """Consecutive windows of ``frames`` frames tiling every episode from its frame 0."""
    windows = WindowSet(episodes, frames, 1)
    ids = torch.nonzero(windows.windows[:, 1] % frames == 0).flatten()
    return windows.batch(ids)


@torch.no_grad()
def action_skill(
    model: WorldModel,
    episodes: list[EpisodeLatents],
    mean_action: Tensor,
    video_steps: int,
    action_steps: int,
    seed: int = 0,
) -> ActionSkill:
    """Teacher-forced action RMSE of ``model`` on held-out ``episodes`` (module docstring);
    ``mean_action`` (d,) is the training data's mean raw action."""
    cfg = model.config
    K, C = cfg.K, cfg.trained_chunks
    batch = diagnosis_windows(episodes, C * K)
    units, scored = model.window_actions(batch, K)  # (B, F, A, d), (B, F)
    raw = batch["actions"].to(model.device)  # (B, F, A, d)
    references = chunk_reference(batch["start_joint_pos"].to(model.device), K)  # (B, F, d)
    predictions = {
        source: _teacher_forced_actions(
            model, batch, units, references, source, video_steps, action_steps, seed
        )
        for source in SOURCES
    }
    draft = None
    if can_draft(model):
        predictions["drafted"], draft = _drafted_actions(
            model, batch, units, references, video_steps, action_steps, seed
        )
    predictions["hold"] = _hold(raw, references, K)
    predictions["mean"] = mean_action.to(raw).expand_as(raw)
    arm = relative_action_mask(raw.shape[-1]).to(raw.device)
    groups = {"arm": arm, "gripper": ~arm}
    B, F = scored.shape
    chunk_of = (torch.arange(F) // K).expand(B, F)  # (B, F)
    frame_of = (torch.arange(F) % K).expand(B, F)
    by_chunk, by_frame, overall = {}, {}, {}
    for name, predicted in predictions.items():
        error = (predicted - raw).square()  # (B, F, A, d)
        by_chunk[name], by_frame[name], overall[name] = {}, {}, {}
        for group, dims in groups.items():
            per_token = error[..., dims].mean((-1, -2))  # (B, F)
            by_chunk[name][group] = _grouped_rmse(per_token, scored, chunk_of, C)
            by_frame[name][group] = _grouped_rmse(per_token, scored, frame_of, K)
            overall[name][group] = float(per_token[scored].mean().sqrt())
    return ActionSkill(by_chunk, by_frame, overall, B, int(scored.sum()), draft)


def _teacher_forced_actions(
    model: WorldModel,
    batch: dict[str, Tensor],
    units: Tensor,
    references: Tensor,
    source: str,
    video_steps: int,
    action_steps: int,
    seed: int,
) -> Tensor:
    """Raw actions (B, F, A, d) denoised chunk by chunk on real or imagined video."""
    K = model.config.K
    video = batch["video"].to(model.device, model.dtype)  # (B, F, N, C)
    B, F = video.shape[:2]
    episode_start = ~batch["action_valid"][:, 0] & batch["valid"][:, 0]  # (B,) padded token
    generator = torch.Generator().manual_seed(seed)
    session = InferenceSession(model, B)
    predicted = []
    for c in range(F // K):
        frames = slice(c * K, (c + 1) * K)
        if source == "imagined":
            first = video[:, 0] if c == 0 else None
            imagined, _ = session.denoise_video(video_steps, generator, first_frame=first)
            session.append_video(imagined)
        else:
            session.append_video(video[:, frames])
        pad = episode_start if c == 0 else False
        actions = session.denoise_actions(action_steps, generator, pad_first=pad)
        predicted.append(model.decode_actions_raw(actions, references[:, frames]))
        if source == "imagined":
            session.replace_video(video[:, frames])
        session.append_actions(units[:, frames])
    return torch.cat(predicted, dim=1)


def _drafted_actions(
    model: WorldModel,
    batch: dict[str, Tensor],
    units: Tensor,
    references: Tensor,
    video_steps: int,
    action_steps: int,
    seed: int,
) -> tuple[Tensor, DraftError]:
    """Raw actions (B, F, A, d) denoised chunk by chunk on depth 1's drafts (chunk 0, which
    has none, on the backbone's), and the drafts' latent error (module docstring)."""
    K = model.config.K
    video = batch["video"].to(model.device, model.dtype)  # (B, F, N, C)
    B, F = video.shape[:2]
    chunks = F // K
    valid = batch["valid"].to(model.device)  # (B, F)
    episode_start = ~batch["action_valid"][:, 0] & batch["valid"][:, 0]  # (B,) padded token
    generator = torch.Generator().manual_seed(seed)
    session = InferenceSession(model, B, mode="mcp_parallel")
    errors = _DraftErrorSums(chunks, video_steps)
    predicted, draft, draft_trace = [], None, None
    for c in range(chunks):
        frames = slice(c * K, (c + 1) * K)
        real, mask = video[:, frames], valid[:, frames]  # (B, K, N, C), (B, K)
        trace: list[list[Tensor]] = []
        own, next_draft = session.denoise_video(
            video_steps,
            generator,
            first_frame=video[:, 0] if c == 0 else None,
            draft=c + 1 < chunks,
            trace=trace,
        )
        if draft is not None:  # chunk 0 has no draft; the others are scored against chunk c
            two_ahead = _two_chunks_ahead(model, batch, units, c, video_steps, action_steps, seed)
            own_traces = {"backbone": [step[0] for step in trace], "draft": draft_trace}
            own_traces["backbone_two_ahead"] = two_ahead[1]
            videos = {"backbone": own, "backbone_two_ahead": two_ahead[0], "draft": draft}
            errors.add(c, real, mask, videos, own_traces)
        session.append_video(own if draft is None else draft)
        pad = episode_start if c == 0 else False
        actions = session.denoise_actions(action_steps, generator, pad_first=pad)
        predicted.append(model.decode_actions_raw(actions, references[:, frames]))
        session.replace_video(real)
        session.append_actions(units[:, frames])
        draft, draft_trace = next_draft, [step[-1] for step in trace]
    return torch.cat(predicted, dim=1), errors.result(B)


def _two_chunks_ahead(
    model: WorldModel,
    batch: dict[str, Tensor],
    units: Tensor,
    c: int,
    video_steps: int,
    action_steps: int,
    seed: int,
) -> tuple[Tensor, list[Tensor]]:
    """The backbone's chunk ``c`` (B, K, N, C) two chunks ahead of the real context, and its
    clean estimate per Euler step: from real chunks < c - 1 it imagines chunk c - 1, decodes
    and appends its own actions, then imagines chunk c (module docstring)."""
    K = model.config.K
    video = batch["video"].to(model.device, model.dtype)  # (B, F, N, C)
    episode_start = ~batch["action_valid"][:, 0] & batch["valid"][:, 0]  # (B,)
    generator = torch.Generator().manual_seed(seed + c)
    session = InferenceSession(model, video.shape[0])
    for j in range(c - 1):  # the real context, joined in one pass at the first denoising
        session.append_video(video[:, j * K : (j + 1) * K])
        session.append_actions(units[:, j * K : (j + 1) * K])
    previous, _ = session.denoise_video(
        video_steps, generator, first_frame=video[:, 0] if c == 1 else None
    )
    session.append_video(previous)
    actions = session.denoise_actions(action_steps, generator, pad_first=episode_start & (c == 1))
    session.append_actions(actions)
    trace: list[list[Tensor]] = []
    imagined, _ = session.denoise_video(video_steps, generator, trace=trace)
    return imagined, [step[0] for step in trace]


class _DraftErrorSums:
    """Running sums of masked latent squared errors per chunk and per Euler step."""

    def __init__(self, chunks: int, steps: int) -> None:
        self.chunk = {k: torch.zeros(chunks) for k in (*DRAFT_SERIES, "draft_vs_backbone")}
        self.chunk_count = torch.zeros(chunks)
        self.step = {k: torch.zeros(steps) for k in DRAFT_SERIES}
        self.step_count = 0.0

    def add(
        self,
        c: int,
        real: Tensor,
        mask: Tensor,
        videos: dict[str, Tensor],
        traces: dict[str, list[Tensor]],
    ) -> None:
        """Chunk ``c``: real (B, K, N, C), mask (B, K), per series (``DRAFT_SERIES``) its
        video (B, K, N, C) and its clean estimate per Euler step."""

        def sse(a: Tensor, b: Tensor) -> float:
            return float(((a - b).square().mean((-1, -2)) * mask).sum())  # over valid frames

        for series in DRAFT_SERIES:
            self.chunk[series][c] += sse(videos[series], real)
            for s, estimate in enumerate(traces[series]):
                self.step[series][s] += sse(estimate, real)
        self.chunk["draft_vs_backbone"][c] += sse(videos["draft"], videos["backbone"])
        self.chunk_count[c] += float(mask.sum())
        self.step_count += float(mask.sum())

    def result(self, windows: int) -> DraftError:
        by_chunk = {k: (v / self.chunk_count).tolist() for k, v in self.chunk.items()}
        count = self.step_count or float("nan")
        by_step = {k: (v / count).tolist() for k, v in self.step.items()}
        return DraftError(by_chunk, by_step, windows)


def can_draft(model: WorldModel) -> bool:
    """Whether ``model`` runs mcp_parallel (MCP heads whose depth 1 drafts)."""
    try:
        check_mode(model, "mcp_parallel")
    except ValueError:
        return False
    return True


def _hold(raw: Tensor, references: Tensor, K: int) -> Tensor:
    """(B, F, A, d): per chunk, its previous chunk's last action, or the joint positions it
    starts from for chunk 0 (module docstring)."""
    B, F, A, d = raw.shape
    last = raw[:, K - 1 :: K, -1]  # (B, F/K, d) last action of every chunk
    previous = torch.cat([references[:, :1], last[:, :-1]], dim=1)  # (B, F/K, d)
    return previous.repeat_interleave(K, dim=1)[:, :, None].expand(B, F, A, d)


def _grouped_rmse(per_token: Tensor, scored: Tensor, group: Tensor, count: int) -> list[float]:
    """RMSE of the scored tokens of each group index 0..count-1 (NaN where none)."""
    out = []
    for g in range(count):
        keep = scored & (group == g)
        out.append(float(per_token[keep].mean().sqrt()) if keep.any() else float("nan"))
    return out


def mean_raw_action(episodes: list[EpisodeLatents]) -> Tensor:
    """(d,) mean of every real raw action of ``episodes``."""
    return torch.cat([e.actions[e.action_valid].flatten(0, 1) for e in episodes]).mean(0)
