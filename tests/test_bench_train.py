"""``bench train``: the bare loop and the full train app run a few steps and report rates."""

import pytest

from experiments.bench.train import LOOPS, TrainBenchSpec, run_train_bench, train_table

pytestmark = pytest.mark.slow  # real trainings, sweeps or killed processes, each for seconds


def test_train_bench_measures_bare_loop_and_app(tmp_path, tiny_data_dir, one_torch_thread):
    spec = TrainBenchSpec(steps=2, batch_size=2, repeats=1, device="cpu", threads=1)
    result = run_train_bench(spec, tiny_data_dir, tmp_path)

    assert set(result["samples_per_second"]) == set(LOOPS)
    for key, rates in result["samples_per_second"].items():
        assert len(rates) == 1 and rates[0] > 0, key
        assert result["median_samples_per_second"][key] == rates[0]
    assert result["warmup_steps"] == 10  # the app's first log window (train.log_every)
    assert result["ratio"] > 0 and result["meets_target"] == (result["ratio"] >= 0.9)
    assert result["shape"]["batch"] == 2 and result["params"] > 0
    assert len(result["app_wall_seconds"]) == 1 and result["app_eval_seconds"][0] > 0
    assert list(tmp_path.iterdir()) == []  # run folders are removed
    table = train_table(result)
    assert all(label in table for label in LOOPS.values())
