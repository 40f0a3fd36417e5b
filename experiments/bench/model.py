"""Model benchmark: training-step time and peak memory per heads variant, inference speed.

``python -m experiments.bench model --size tiny`` (through ``experiments.bench``). Synthetic
latents of the shapes a 64x64, three-camera conv_ae tokenizer gives; every variant is timed
in its own fresh process so peak-memory numbers do not leak between variants.

The rollout's cost model (``BlockWork``): one counted rollout per mode tallies the
transformer-block runs (backbone and MCP blocks alike) and the tokens they carry. On a
compute-bound device (a CPU) time follows the tokens, so mcp_parallel / standard should be
the ratio of their block-token work; on a latency-bound one (a GPU at batch 1, where a block
costs about the same whatever it carries) it should be the ratio of sequential block runs.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from worldmodel.heads import WorldModelWithHeads, heads_preset
from worldmodel.inference import rollout_open_loop
from worldmodel.inference.compiled import compile_denoising
from worldmodel.model import ModelConfig, model_preset
from worldmodel.model.transformer import Block

VARIANTS = (
    "single_step",
    "next_forcing",
    "parallel_heads",
    "chain_last_layer",
    "linear_every_third",
)
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak


@dataclass(frozen=True)
class BenchShape:
    """One training window and the rollout measured with it."""

    size: str
    batch: int
    num_chunks: int = 4  # > 3 so every MCP depth has targets
    K: int = 2
    tokens_per_frame: int = 48  # three cameras x 4x4 latent grid
    latent_dim: int = 8
    actions_per_frame: int = 2  # 25 fps
    horizon: int = 8
    denoise_steps: int = 10
    num_blocks: int | None = None  # backbone blocks; None = the size preset's
    blocks_per_depth: int | None = None  # MCP blocks per depth; None = the heads preset's
    # "denoised": the backbone denoises each chunk's actions after its video (policy rollout);
    # "given": the true future actions are appended (open-loop video prediction)
    actions: str = "denoised"
    rollout_batch: int = 1  # sequences rolled out together
    compile: bool = False  # denoising passes compiled (worldmodel/inference/compiled.py)


@dataclass
class BlockWork:
    """What one rollout ran: sequential transformer-block runs and the tokens they carried."""

    runs: int = 0
    tokens: int = 0  # summed over the batch


@dataclass
class VariantResult:
    variant: str
    params: int
    step_seconds: float
    peak_memory_mb: float
    flops_per_step: float
    chunks_per_second: dict[str, float]
    work: dict[str, BlockWork]  # per mode


@contextmanager
def counted_block_work(model: torch.nn.Module) -> Iterator[BlockWork]:
    """Tallies every transformer block of ``model`` run inside the block."""
    work = BlockWork()

    def hook(_module, inputs) -> None:
        work.runs += 1
        work.tokens += inputs[0].shape[0] * inputs[0].shape[1]  # x: (B, T, dim)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, Block)]
    try:
        yield work
    finally:
        for handle in handles:
            handle.remove()


def model_config(shape: BenchShape) -> ModelConfig:
    preset = model_preset(shape.size) | (
        {"num_blocks": shape.num_blocks} if shape.num_blocks else {}
    )
    return ModelConfig(
        **preset,
        K=shape.K,
        tokens_per_frame=shape.tokens_per_frame,
        latent_dim=shape.latent_dim,
        actions_per_frame=shape.actions_per_frame,
        max_chunks=shape.horizon + shape.num_chunks + 4,
    )


def synthetic_batch(shape: BenchShape, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    frames = shape.num_chunks * shape.K
    return {
        "video": torch.randn(
            shape.batch, frames, shape.tokens_per_frame, shape.latent_dim, generator=g
        ).to(device),
        "actions": torch.randn(shape.batch, frames, shape.actions_per_frame, 14, generator=g).to(
            device
        ),
        "valid": torch.ones(shape.batch, frames, dtype=torch.bool, device=device),
        "start_joint_pos": torch.randn(shape.batch, frames, 14, generator=g).to(device),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_mb(device: torch.device, rss_before_kb: int) -> float:
    """CUDA: peak allocated; CPU: growth of the peak resident set once model and batch exist."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024


def bare_train_step(
    model: torch.nn.Module, batch: dict, device: torch.device
) -> Callable[[], None]:
    """One AdamW step on ``batch`` and nothing else (bf16 autocast on CUDA): the bare loop."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def train_step() -> None:
        with autocast:
            loss, _ = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return train_step


def timed_steps(train_step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Wall seconds of ``steps`` calls, synchronised with the device before and after."""
    _sync(device)
    begin = time.perf_counter()
    for _ in range(steps):
        train_step()
    _sync(device)
    return time.perf_counter() - begin


def bench_variant(
    variant: str, shape: BenchShape, device_name: str, steps: int, threads: int
) -> VariantResult:
    """Runs in a fresh process: build, warm up, time ``steps`` optimizer steps, then rollouts."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device(device_name)
    heads = heads_preset(variant)
    if shape.blocks_per_depth and heads.kind == "mcp":
        heads = replace(heads, blocks_per_depth=shape.blocks_per_depth)
    model = WorldModelWithHeads(model_config(shape), heads).to(device)
    batch = synthetic_batch(shape, device)
    train_step = bare_train_step(model, batch, device)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and batch built
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_step()  # warm-up: allocator, kernels, optimizer state
    with FlopCounterMode(display=False) as counter:
        train_step()
    step_seconds = timed_steps(train_step, steps, device) / steps
    peak = _peak_memory_mb(device, rss_before)

    modes = ("standard", "mcp_parallel") if variant == "next_forcing" else ("standard",)
    rows = shape.rollout_batch
    context = {
        k: v[:1, : shape.K].repeat(rows, *[1] * (v.ndim - 1))  # (rows, K, ...)
        for k, v in batch.items()
        if k != "valid"
    }
    context["actions"] = model.window_actions(context, shape.K)[0]  # model units
    if shape.compile:
        compile_denoising(model)  # each mode's warm-up rollout compiles its shapes
    speeds, work = {}, {}
    for mode in modes:
        speeds[mode], work[mode] = rollout_speed(model, context, shape, mode, device)
    params = sum(p.numel() for p in model.parameters())
    flops = counter.get_total_flops()
    return VariantResult(variant, params, step_seconds, peak, flops, speeds, work)


@torch.no_grad()
def rollout_speed(
    model, context: dict, shape: BenchShape, mode: str, device: torch.device
) -> tuple[float, BlockWork]:
    """Imagined chunks per second of an open-loop rollout of ``rollout_batch`` sequences
    (median of 3 runs after a warm-up, which is also counted: its ``BlockWork``)."""
    seconds = []
    future = None  # actions denoised by the backbone
    if shape.actions == "given":
        g = torch.Generator().manual_seed(1)
        future_shape = (shape.rollout_batch, shape.horizon * shape.K, *context["actions"].shape[2:])
        future = torch.randn(future_shape, generator=g).to(device)  # (rows, horizon*K, A, 14)

    def rollout() -> None:
        rollout_open_loop(
            model,
            context["video"],
            context["actions"],
            shape.horizon,
            shape.denoise_steps,
            future_actions=future,
            mode=mode,
        )

    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        with counted_block_work(model) as work:
            rollout()  # warm-up
        for _ in range(3):
            _sync(device)
            begin = time.perf_counter()
            rollout()
            _sync(device)
            seconds.append(time.perf_counter() - begin)
    return shape.horizon / statistics.median(seconds), work


def run_model_bench(
    shape: BenchShape, device: str, steps: int, variants=VARIANTS, threads: int | None = None
) -> list[VariantResult]:
    threads = threads or torch.get_num_threads()
    context = multiprocessing.get_context("spawn")
    results = []
    for variant in variants:
        with context.Pool(1) as pool:
            results.append(pool.apply(bench_variant, (variant, shape, device, steps, threads)))
    return results


def markdown_table(results: list[VariantResult], shape: BenchShape, device: str) -> str:
    base = results[0]
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else ""
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in gpu), None)
    lines = [
        f"size {shape.size}"
        + (f" with {shape.num_blocks} blocks" if shape.num_blocks else "")
        + (f", {shape.blocks_per_depth} MCP block(s) per depth" if shape.blocks_per_depth else "")
        + f", {shape.denoise_steps} denoising steps, actions {shape.actions}"
        f", batch {shape.batch} (rollouts {shape.rollout_batch}), window {shape.num_chunks} "
        f"chunks x K={shape.K} "
        f"frames x N={shape.tokens_per_frame} tokens, device {gpu or device}"
        + (" (bf16 autocast)" if gpu else " (float32)")
        + (", denoising compiled" if shape.compile else ""),
        "",
        "| heads | params | step ms | vs single_step | peak MB | vs single_step | "
        "GFLOP/step | MFU | chunks/s standard | chunks/s mcp_parallel | "
        "cost model: block-token work / block runs ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mfu = f"{r.flops_per_step / r.step_seconds / peak:.1%}" if peak else "-"
        parallel = r.chunks_per_second.get("mcp_parallel")
        lines.append(
            f"| {r.variant} | {r.params / 1e6:.2f}M | {1e3 * r.step_seconds:.1f} | "
            f"{r.step_seconds / base.step_seconds:.2f} | {r.peak_memory_mb:.0f} | "
            f"{r.peak_memory_mb / max(base.peak_memory_mb, 1e-9):.2f} | "
            f"{r.flops_per_step / 1e9:.1f} | {mfu} | "
            f"{r.chunks_per_second['standard']:.2f} | "
            + (
                f"{parallel:.2f} ({parallel / r.chunks_per_second['standard']:.2f}x) | "
                + predicted_ratios(r.work)
                if parallel
                else " |"
            )
            + " |"
        )
    return "\n".join(lines)


def predicted_ratios(work: dict[str, BlockWork]) -> str:
    """mcp_parallel's speed-up over standard as the cost model predicts it: compute-bound
    (block-token work) and latency-bound (sequential block runs)."""
    standard, parallel = work["standard"], work["mcp_parallel"]
    return f"{standard.tokens / parallel.tokens:.2f}x / {standard.runs / parallel.runs:.2f}x"
