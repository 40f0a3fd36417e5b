"""Smoke test of the evaluation throughput bench (it measures speed; the test checks shapes)."""

import pytest

from experiments.bench_eval import EvalBenchSpec, eval_table, run_eval_bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_eval_bench_measures_both_modes():
    # fps 12.5: A = 4 control steps per latent frame, K = 2. Chunk 0 runs (K - 1) * A = 4
    # actions (its frame-0 token is padding), chunk 1 runs K * A = 8: an episode of 12 steps
    # is 2 chunks, one mcp_parallel step (chunk 0 denoised, chunk 1 its draft)
    spec = EvalBenchSpec(episodes=1, max_steps=12, steps=1, repeats=1)
    results = run_eval_bench(spec)
    assert [r.mode for r in results] == ["standard", "mcp_parallel"]
    standard, parallel = results
    assert all(r.episodes_per_minute > 0 and r.policy_steps_per_second > 0 for r in results)
    assert standard.passes_per_chunk["video"] == pytest.approx(spec.steps)
    assert parallel.passes_per_chunk["video"] == pytest.approx(
        standard.passes_per_chunk["video"] / 2
    )
    table = eval_table(spec, results)
    assert "| mcp_parallel / standard |" in table and table.count("\n| ") >= 4
