"""``bench model``: each heads variant trains a step and rolls out in its modes."""

import pytest

from experiments.bench.model import BenchShape, markdown_table, run_model_bench


@pytest.mark.parametrize("actions", ["denoised", "given"])
def test_model_bench_times_training_and_both_rollout_modes(actions):
    shape = BenchShape(size="tiny", batch=2, horizon=2, denoise_steps=1, actions=actions)
    results = run_model_bench(shape, "cpu", 1, ("single_step", "next_forcing"), threads=1)

    base, nf = results
    assert set(base.chunks_per_second) == {"standard"}
    assert set(nf.chunks_per_second) == {"standard", "mcp_parallel"}
    assert nf.params > base.params and nf.flops_per_step > base.flops_per_step > 0
    assert all(speed > 0 for r in results for speed in r.chunks_per_second.values())
    table = markdown_table(results, shape, "cpu")
    assert f"actions {actions}" in table and "x) |" in table  # the mcp_parallel ratio
