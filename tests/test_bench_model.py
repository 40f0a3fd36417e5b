"""``bench model``: each heads variant trains a step and rolls out in its modes."""

import pytest

from experiments.bench.model import BenchShape, markdown_table, run_model_bench

pytestmark = pytest.mark.slow  # real trainings, sweeps or killed processes, each for seconds


@pytest.mark.parametrize("actions", ["denoised", "given"])
def test_model_bench_times_training_and_both_rollout_modes(actions):
    shape = BenchShape(
        size="tiny", batch=2, horizon=2, denoise_steps=1, actions=actions, rollout_batch=3
    )
    results = run_model_bench(shape, "cpu", 1, ("single_step", "next_forcing"), threads=1)

    base, nf = results
    assert set(base.chunks_per_second) == {"standard"}
    assert set(nf.chunks_per_second) == {"standard", "mcp_parallel"}
    assert nf.params > base.params and nf.flops_per_step > base.flops_per_step > 0
    assert all(speed > 0 for r in results for speed in r.chunks_per_second.values())
    # the cost model counts every block run; each carries the 3 rollouts. Standard runs whole
    # passes of the tiny backbone's 4 blocks; mcp_parallel adds depth 1's on video tokens
    standard, parallel = nf.work["standard"], nf.work["mcp_parallel"]
    assert standard.tokens % 3 == 0 and parallel.tokens % 3 == 0
    assert standard.runs % 4 == 0 and parallel.runs > 0 and parallel.tokens != standard.tokens
    table = markdown_table(results, shape, "cpu")
    assert f"actions {actions}" in table and "(rollouts 3)" in table
    ratios = f"{standard.tokens / parallel.tokens:.2f}x / {standard.runs / parallel.runs:.2f}x |"
    assert "x) | " in table and table.endswith(ratios)  # measured, then predicted ratios
