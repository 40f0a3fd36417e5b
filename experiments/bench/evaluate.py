"""Evaluation throughput: ``python -m experiments.bench evaluate --model tiny|small``.

A world model with Next Forcing heads (random weights: speed does not depend on them, and a
random policy never succeeds, so every episode runs the full ``max_steps``) acts in closed
loop through the real evaluation code (``evaluate_closed_loop`` with ``WorldModelPolicy``,
MuJoCo physics and rendering), once per inference mode, interleaved over ``repeats`` so that
machine load affects both modes alike, at each batch size B (``batch_size`` episodes in
lockstep, one batched world-model pass; ``evaluate_closed_loop``), on the pixel track
(``tokenizer="patch"``: the cameras rendered every control step) or the state track
(``tokenizer="state"``: no cameras, one scene-state token per frame). Reported per (B, mode),
medians over repeats:

- episodes per minute, end to end (physics, rendering, tokenizer and model), counted as
  episodes of ``max_steps`` control steps (a random model occasionally presses the button
  early, which would otherwise make episode counts depend on luck rather than speed);
- control steps per second of the policy alone (``ClosedLoopResult.steps_per_second``) and
  of the whole loop;
- network passes per chunk (backbone, head, video-denoising);
and ``mcp_parallel`` / ``standard`` for each rate at each B, and each B's episodes/min over
B=1's.
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass

import torch

from envs.env import CONTROL_HZ, TabletopEnv
from worldmodel.data.collection import EVAL_SEED_BASE
from worldmodel.evaluation.closed_loop import ClosedLoopResult, evaluate_closed_loop
from worldmodel.evaluation.policies import WorldModelPolicy
from worldmodel.heads import WorldModelWithHeads, heads_preset
from worldmodel.inference.compiled import compile_denoising
from worldmodel.inference.session import MODES
from worldmodel.model import ModelConfig, model_preset
from worldmodel.timing import FrameRate
from worldmodel.tokenizer.base import Tokenizer
from worldmodel.tokenizer.patch import PatchTokenizer
from worldmodel.tokenizer.state import StateTokenizer

ACTION_DIM = 14


@dataclass(frozen=True)
class EvalBenchSpec:
    model: str = "tiny"
    tokenizer: str = "patch"  # patch: pixel track (cameras); state: state track (no cameras)
    task: str = "press_button"
    cameras: tuple[str, ...] = ("head",)
    image_size: tuple[int, int] = (32, 32)
    patch: int = 8
    fps: float = 50.0  # the paper's video fps: 4 actions per latent frame (worldmodel/timing.py)
    K: int = 2
    episodes: int = 4
    max_steps: int = 200
    steps: int = 10  # Euler steps per video and per action chunk
    repeats: int = 3
    batch_sizes: tuple[int, ...] = (1,)  # closed-loop episodes in lockstep
    window_frames: int | None = None  # a trained model's window (caps the context); None: none
    compile: bool = False  # denoising passes compiled (worldmodel/inference/compiled.py)


@dataclass
class ModeResult:
    mode: str
    batch_size: int
    episodes_per_minute: float
    policy_steps_per_second: float
    loop_steps_per_second: float
    passes_per_chunk: dict[str, float]


def make_model(spec: EvalBenchSpec, tokenizer: Tokenizer) -> WorldModelWithHeads:
    config = ModelConfig(
        **model_preset(spec.model),
        K=spec.K,
        tokens_per_frame=tokenizer.tokens_per_frame,
        latent_dim=tokenizer.latent_dim,
        action_dim=ACTION_DIM,
        actions_per_frame=FrameRate(spec.fps, control_hz=CONTROL_HZ).actions_per_latent_frame,
        train_window_frames=spec.window_frames,
    )
    torch.manual_seed(0)
    return WorldModelWithHeads(config, heads_preset("next_forcing")).eval()


def make_tokenizer(spec: EvalBenchSpec) -> Tokenizer:
    """The bench's tokenizer; the state track's statistics are the identity (random weights)."""
    if spec.tokenizer == "patch":
        return PatchTokenizer(spec.cameras, spec.image_size, patch=spec.patch)
    if spec.tokenizer == "state":
        names = TabletopEnv(spec.task, "clean", cameras=()).scene_state.names
        return StateTokenizer(names, [0.0] * len(names), [1.0] * len(names))
    raise ValueError(f"tokenizer {spec.tokenizer!r}: use patch or state")


def run_mode(
    spec: EvalBenchSpec,
    model: WorldModelWithHeads,
    tokenizer: Tokenizer,
    mode: str,
    batch_size: int = 1,
) -> tuple[ClosedLoopResult, float]:
    factory = functools.partial(
        WorldModelPolicy,
        model=model,
        tokenizer=tokenizer,
        latent_fps=FrameRate(spec.fps, control_hz=CONTROL_HZ).latent_fps,
        video_steps=spec.steps,
        action_steps=spec.steps,
        mode=mode,
    )
    seeds = [EVAL_SEED_BASE + i for i in range(spec.episodes)]
    started = time.perf_counter()
    result = evaluate_closed_loop(
        factory,
        spec.task,
        "clean",
        seeds,
        max_steps=spec.max_steps,
        cameras=tokenizer.cameras,
        image_size=spec.image_size,
        batch_size=batch_size,
    )
    return result, time.perf_counter() - started


def run_eval_bench(spec: EvalBenchSpec) -> list[ModeResult]:
    tokenizer = make_tokenizer(spec)
    model = make_model(spec, tokenizer)
    if spec.compile:
        compile_denoising(model)  # the warm-up below compiles every shape
    cases = [(b, mode) for b in spec.batch_sizes for mode in MODES]
    samples: dict[tuple[int, str], list[tuple[ClosedLoopResult, float]]] = {c: [] for c in cases}
    with torch.no_grad():
        for b, mode in cases:  # warm-up: allocations, renderer
            run_mode(spec, model, tokenizer, mode, b)
        for _ in range(spec.repeats):
            for b, mode in cases:
                samples[(b, mode)].append(run_mode(spec, model, tokenizer, mode, b))
    results = []
    for (b, mode), runs in samples.items():
        loop = statistics.median(sum(e.steps for e in r.episodes) / s for r, s in runs)
        results.append(
            ModeResult(
                mode=mode,
                batch_size=b,
                episodes_per_minute=loop * 60 / spec.max_steps,
                policy_steps_per_second=statistics.median(r.steps_per_second for r, _ in runs),
                loop_steps_per_second=loop,
                passes_per_chunk=runs[0][0].passes_per_chunk,
            )
        )
    return results


def eval_table(spec: EvalBenchSpec, results: list[ModeResult]) -> str:
    """Markdown rows per (B, mode), the mcp_parallel / standard ratios per B and each B's
    episodes/min over B=1's (when B=1 was measured)."""
    by_case = {(r.batch_size, r.mode): r for r in results}
    track = (
        f"cameras {list(spec.cameras)} at {spec.image_size[0]}x{spec.image_size[1]} "
        f"(patch {spec.patch})"
        if spec.tokenizer == "patch"
        else "state track (no cameras, one state token per frame)"
    )
    window = (
        "no training window"
        if spec.window_frames is None
        else f"context capped by a {spec.window_frames}-frame training window"
    ) + (", denoising compiled" if spec.compile else "")
    lines = [
        f"model `{spec.model}` + next_forcing heads, {spec.task}, {track}, fps {spec.fps:g}, "
        f"K={spec.K}, {spec.steps} Euler steps, {window}, {spec.episodes} episodes x "
        f"{spec.max_steps} steps, median of {spec.repeats}",
        "",
        "| B | mode | episodes/min | policy control steps/s | loop control steps/s | "
        "passes/chunk (backbone, head, video) | episodes/min over B=1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in spec.batch_sizes:
        for r in (by_case[(b, mode)] for mode in MODES):
            passes = r.passes_per_chunk
            one = by_case.get((1, r.mode))
            over = f"{r.episodes_per_minute / one.episodes_per_minute:.2f}x" if one else "-"
            lines.append(
                f"| {b} | {r.mode} | {r.episodes_per_minute:.1f} | "
                f"{r.policy_steps_per_second:.0f} | {r.loop_steps_per_second:.0f} | "
                f"{passes.get('backbone', 0):.1f}, {passes.get('head', 0):.1f}, "
                f"{passes.get('video', 0):.1f} | {over} |"
            )
        base, fast = by_case[(b, "standard")], by_case[(b, "mcp_parallel")]
        lines.append(
            f"| {b} | mcp_parallel / standard | "
            f"{fast.episodes_per_minute / base.episodes_per_minute:.2f}x | "
            f"{fast.policy_steps_per_second / base.policy_steps_per_second:.2f}x | "
            f"{fast.loop_steps_per_second / base.loop_steps_per_second:.2f}x | | |"
        )
    return "\n".join(lines)
