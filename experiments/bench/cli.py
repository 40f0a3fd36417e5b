"""Benchmarks: ``python -m experiments.bench collect``, ``model``, ``train``, ``evaluate``
and ``tolerance``.

``collect``: control steps per second of the collect harness (expert, rendering, HDF5 writing)
with 1 and 2 workers, against a bare loop of ``mj_step`` plus ``Renderer.render`` on the same
scene, cameras and controls. Prints a markdown table for BENCHMARKS.md.

``train``: samples per second of the full train app (``experiments.train.run_training``)
against a bare loop with the same model and batch on synthetic tensors
(``experiments/bench/train.py``); ``--out`` also writes the result as JSON.

``evaluate``: closed-loop evaluation throughput (episodes per minute, control steps per
second, network passes per chunk) in ``standard`` and ``mcp_parallel`` mode, measured in one
run (``experiments/bench/evaluate.py``).

``tolerance``: the scripted expert's success and progress per task under a constant bias or
zero-mean noise on its arm-joint targets (``experiments/bench/tolerance.py``); ``--out`` also
writes the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from envs.tasks import TASKS
from experiments.bench.collect import collect_table
from experiments.bench.evaluate import EvalBenchSpec, eval_table, run_eval_bench
from experiments.bench.model import VARIANTS, BenchShape, markdown_table, run_model_bench
from experiments.bench.tolerance import MAGNITUDES, run_tolerance_bench, tolerance_table
from experiments.bench.train import TrainBenchSpec, run_train_bench, train_table
from worldmodel.training.provenance import git_state

COMPILE_HELP = (
    "compile the denoising passes (CUDA graphs on a GPU, inductor kernels on a CPU; the "
    "warm-up compiles)"
)


def bench_collect(args: argparse.Namespace) -> str:
    cameras = tuple(args.cameras.split(","))
    return collect_table(args.task, args.setting, cameras, args.size, args.episodes)


def bench_model(args: argparse.Namespace) -> str:
    shape = BenchShape(
        size=args.size,
        batch=args.batch,
        horizon=args.horizon,
        denoise_steps=args.denoise_steps,
        num_blocks=args.blocks,
        blocks_per_depth=args.blocks_per_depth,
        actions=args.actions,
        rollout_batch=args.rollout_batch,
        compile=args.compile,
    )
    variants = args.variants.split(",")
    results = run_model_bench(shape, args.device, args.steps, variants, args.threads)
    return markdown_table(results, shape, args.device)


def bench_train(args: argparse.Namespace) -> str:
    spec = TrainBenchSpec(
        model=args.model,
        heads=args.heads,
        steps=args.steps,
        batch_size=args.batch_size,
        repeats=args.repeats,
        device=args.device,
        threads=args.threads,
    )
    with tempfile.TemporaryDirectory() as work:
        result = run_train_bench(spec, Path(work) / "data", Path(work) / "runs")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return train_table(result)


def bench_evaluate(args: argparse.Namespace) -> str:
    spec = EvalBenchSpec(
        model=args.model,
        tokenizer=args.tokenizer,
        cameras=tuple(args.cameras.split(",")),
        image_size=(args.image_size, args.image_size),
        episodes=args.episodes,
        max_steps=args.max_steps,
        steps=args.steps,
        repeats=args.repeats,
        batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
        window_frames=args.window_frames,
        compile=args.compile,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    return eval_table(spec, run_eval_bench(spec))


def bench_tolerance(args: argparse.Namespace) -> str:
    tasks = args.tasks.split(",")
    magnitudes = [float(m) for m in args.magnitudes.split(",")]
    results = run_tolerance_bench(tasks, args.setting, magnitudes, args.episodes)
    if args.out:
        summary = {**git_state(), "results": [r.to_dict() for r in results]}
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return tolerance_table(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench", description=__doc__.splitlines()[0]
    )
    suites = parser.add_subparsers(dest="suite", required=True)
    collect = suites.add_parser("collect", help="collection throughput vs a bare loop")
    collect.add_argument("--task", default="handover_block")
    collect.add_argument("--setting", default="clean")
    collect.add_argument("--cameras", default="head,left_wrist,right_wrist")
    collect.add_argument("--size", type=int, default=64)
    collect.add_argument("--episodes", type=int, default=6, help="episodes per worker")
    collect.set_defaults(run=bench_collect)
    model = suites.add_parser(
        "model",
        help="train-step time/memory per heads variant, "
        "inference chunks/s standard vs mcp_parallel",
    )
    model.add_argument("--size", default="tiny", help="model preset: tiny, small, base")
    model.add_argument("--batch", type=int, default=8)
    model.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    model.add_argument("--horizon", type=int, default=8, help="imagined chunks per rollout")
    model.add_argument("--denoise-steps", type=int, default=10)
    model.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    model.add_argument("--threads", type=int, default=None)
    model.add_argument("--variants", default=",".join(VARIANTS))
    model.add_argument("--blocks", type=int, default=None, help="backbone blocks (default preset)")
    model.add_argument(
        "--blocks-per-depth", type=int, default=None, help="MCP blocks per depth (default preset)"
    )
    model.add_argument(
        "--actions",
        choices=("denoised", "given"),
        default="denoised",
        help="rollout actions: denoised by the backbone after each chunk's video (a policy), or "
        "the given future actions (open-loop video prediction)",
    )
    model.add_argument(
        "--rollout-batch", type=int, default=1, help="sequences rolled out together (inference)"
    )
    model.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    model.set_defaults(run=bench_model)
    train = suites.add_parser(
        "train", help="samples/s of the full train app vs a bare loop (same model and batch)"
    )
    train.add_argument("--model", default="tiny", help="model preset: tiny, small, base")
    train.add_argument(
        "--heads", default="single_step", help="heads preset (worldmodel/presets/heads)"
    )
    train.add_argument("--steps", type=int, default=100, help="timed optimizer steps per run")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--repeats", type=int, default=3, help="interleaved bare/app pairs")
    train.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    train.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = default")
    train.add_argument("--out", default=None, help="also write the result as JSON here")
    train.set_defaults(run=bench_train)
    evaluate = suites.add_parser(
        "evaluate", help="closed-loop evaluation throughput, standard vs mcp_parallel"
    )
    evaluate.add_argument("--model", default="tiny", help="model preset: tiny, small, base")
    evaluate.add_argument(
        "--tokenizer", default="patch", choices=("patch", "state"), help="pixel or state track"
    )
    evaluate.add_argument("--cameras", default="head", help="comma-separated cameras (patch)")
    evaluate.add_argument("--image-size", type=int, default=32)
    evaluate.add_argument("--episodes", type=int, default=4)
    evaluate.add_argument("--max-steps", type=int, default=200, help="control steps per episode")
    evaluate.add_argument("--steps", type=int, default=10, help="Euler steps per chunk")
    evaluate.add_argument("--repeats", type=int, default=3)
    evaluate.add_argument(
        "--batch-sizes", default="1", help="comma-separated episodes in lockstep, e.g. 1,4,16"
    )
    evaluate.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 = default")
    evaluate.add_argument(
        "--window-frames",
        type=int,
        default=None,
        help="training window the context is capped to, as a trained model's (data.window_frames:"
        " 16 state track, 8 pixel track); default none: max_chunks",
    )
    evaluate.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    evaluate.set_defaults(run=bench_evaluate)
    tolerance = suites.add_parser(
        "tolerance", help="expert success under arm-joint target bias and noise, per task"
    )
    tolerance.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    tolerance.add_argument("--setting", default="clean")
    tolerance.add_argument(
        "--magnitudes",
        default=",".join(f"{m:g}" for m in MAGNITUDES),
        help="comma-separated bias offsets and noise standard deviations (rad)",
    )
    tolerance.add_argument("--episodes", type=int, default=12, help="evaluation seeds per row")
    tolerance.add_argument("--out", default=None, help="also write the result as JSON here")
    tolerance.set_defaults(run=bench_tolerance)
    args = parser.parse_args(argv)
    print(args.run(args))


if __name__ == "__main__":
    main()
