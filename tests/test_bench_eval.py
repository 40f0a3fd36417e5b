"""Smoke test of the evaluation throughput bench (it measures speed; the test checks shapes)."""

import pytest

from experiments.bench.evaluate import EvalBenchSpec, eval_table, run_eval_bench

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def test_eval_bench_measures_both_modes():
    # fps 50: A = 4 control steps per latent frame, K = 2. Chunk 0 runs (K - 1) * A = 4
    # actions (its frame-0 token is padding), the others K * A = 8: an episode of 28 steps is
    # 4 chunks, three mcp_parallel steps (chunk 0 alone, as every sequence's first chunk;
    # chunk 1 and its draft chunk 2; chunk 3, whose draft is never used)
    spec = EvalBenchSpec(episodes=2, max_steps=28, steps=1, repeats=1, batch_sizes=(1, 2))
    results = run_eval_bench(spec)
    assert [(r.batch_size, r.mode) for r in results] == [
        (1, "standard"),
        (1, "mcp_parallel"),
        (2, "standard"),
        (2, "mcp_parallel"),
    ]
    standard, parallel = results[:2]
    assert results[2].passes_per_chunk == standard.passes_per_chunk  # a batch is no cheat
    assert all(r.episodes_per_minute > 0 and r.policy_steps_per_second > 0 for r in results)
    assert standard.passes_per_chunk["video"] == pytest.approx(spec.steps)
    assert parallel.passes_per_chunk["video"] == pytest.approx(
        standard.passes_per_chunk["video"] * 3 / 4
    )
    table = eval_table(spec, results)
    assert table.count("| mcp_parallel / standard |") == 2 and table.count("\n| ") == 7
    assert "| 2 | standard |" in table and table.splitlines()[5].endswith("| 1.00x |")


def test_eval_bench_runs_the_state_track_without_cameras():
    # a 6-frame training window: 3 chunk positions, so the 4 chunks of 28 steps slide
    spec = EvalBenchSpec(
        tokenizer="state", episodes=2, max_steps=28, steps=1, repeats=1, window_frames=6
    )
    standard, parallel = run_eval_bench(spec)
    assert standard.passes_per_chunk["video"] == pytest.approx(spec.steps)
    assert parallel.episodes_per_minute > 0 and standard.policy_steps_per_second > 0
    table = eval_table(spec, [standard, parallel])
    assert "state track (no cameras, one state token per frame)" in table
    assert "context capped by a 6-frame training window" in table
