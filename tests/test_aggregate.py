"""Aggregation of sweep run folders, on factory-made runs with hand-computed numbers."""

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest

from experiments.aggregate import main
from experiments.results.aggregate import aggregate_sweep
from experiments.results.claims import BUDGETS, convergence_claim
from experiments.results.figures import select
from experiments.results.run_folders import RunFolderError, find_run_dirs, load_runs
from experiments.results.summary import ACROSS_TASKS, LOSS, SPEEDUP, SUCCESS, Summary
from experiments.runs import variant_label
from tests.run_folder_factory import RunSpec, claim_runs, depth_specs, write_run, write_sweep
from worldmodel.evaluation.statistics import wilson_interval

REPS = 200  # bootstrap replicates: enough for the hand-checkable intervals, and fast


def summarise(sweep, **kwargs) -> Summary:
    return aggregate_sweep(sweep, bootstrap_reps=REPS, **kwargs)


def one(entries: list, **match):
    found = select(entries, **match)
    assert len(found) == 1, (match, found)
    return found[0]


def test_two_seeds_give_the_mean_with_its_interval_episode_counts_and_sources(tmp_path):
    specs = [
        RunSpec(seed=0, final_successes=4, val_loss=[1.0, 0.8, 0.6, 0.4, 0.3]),
        RunSpec(seed=1, final_successes=6, val_loss=[1.0, 0.8, 0.6, 0.5, 0.5]),
    ]
    write_sweep(tmp_path, specs)
    summary = summarise(tmp_path)
    success = one(summary.estimates, quantity="success/model", task="press_button")
    # Resampling two seeds gives means 0.4, 0.5 or 0.6: the 95% interval spans 0.4 to 0.6.
    assert (success.point, success.low, success.high) == pytest.approx((0.5, 0.4, 0.6))
    assert (success.successes, success.episodes, success.n_runs) == (10, 20, 2)
    assert success.runs == [spec.dirname for spec in specs]
    loss = one(summary.estimates, quantity=f"final/{LOSS}")
    assert loss.point == pytest.approx(0.4)  # (0.3 + 0.5) / 2
    assert one(summary.estimates, quantity="success/expert").point == 1.0


def test_provenance_separates_runs_made_with_other_library_versions(tmp_path):
    older = {"python": "3.12.3", "torch": "2.13.0", "mujoco": "3.1.6"}
    write_sweep(tmp_path, [RunSpec(seed=0), RunSpec(seed=1), RunSpec(seed=2, versions=older)])
    entries = summarise(tmp_path).provenance.commits
    assert [(e.versions, e.runs) for e in entries] == [
        ("mujoco 3.1.6, python 3.12.3, torch 2.13.0", 1),
        ("mujoco 3.3.0, python 3.12.3, torch 2.13.0", 2),
    ]


BASE_SEEDS = ([0.0, 0.0, 0.1, 0.2, 0.3], [0.0, 0.2, 0.3, 0.4, 0.5])  # mean 0, .1, .2, .3, .4
NF_SEEDS = ([0.0, 0.1, 0.3, 0.4, 0.5], [0.0, 0.3, 0.5, 0.6, 0.7])  # mean 0, .2, .4, .5, .6
BASE_LOSS = [1.0, 0.9, 0.8, 0.7, 0.6]
NF_LOSS = [1.0, 0.8, 0.6, 0.5, 0.4]


def write_comparison(sweep, **extra) -> None:
    specs = [
        RunSpec(variant=variant, seed=seed, success=success, val_loss=loss, **extra)
        for variant, curves, loss in (
            ("single_step", BASE_SEEDS, BASE_LOSS),
            ("next_forcing", NF_SEEDS, NF_LOSS),
        )
        for seed, success in enumerate(curves)
    ]
    write_sweep(sweep, specs)


def test_convergence_speedup_and_relative_improvement_follow_the_paper(tmp_path):
    write_comparison(tmp_path)
    summary = summarise(tmp_path)
    success = one(summary.convergence, metric=SUCCESS, variant="next_forcing")
    # The baseline reaches its step-400 value 0.4 at step 400, Next Forcing at step 200.
    assert success.late_step == 400
    assert success.target == pytest.approx(0.4)
    assert success.base_steps_to_target == pytest.approx(400)
    assert success.variant_steps_to_target == pytest.approx(200)
    assert success.speedup == pytest.approx(2.0)
    assert success.relative_improvement.value == pytest.approx((0.6 - 0.4) / 0.4)
    episodes = [getattr(success.relative_improvement, f"{k}_episodes") for k in ("variant", "base")]
    assert episodes == [20, 20]  # two seeds of ten episodes each
    by_step = success.relative_improvement_by_step
    assert [r.step for r in by_step] == [0, 100, 200, 300, 400]
    assert by_step[0].value is None and "baseline is 0" in by_step[0].reason
    assert [r.value for r in by_step[1:]] == pytest.approx([1.0, 1.0, 2 / 3, 0.5])
    assert success.runs and success.baseline_runs
    loss = one(summary.convergence, metric=LOSS, variant="next_forcing")
    # Lower is better: the baseline's 0.6 at step 400 is reached by Next Forcing at step 200.
    assert loss.speedup == pytest.approx(2.0)
    assert loss.relative_improvement.value == pytest.approx((0.4 - 0.6) / 0.6)
    curve = one(summary.curves, metric=SUCCESS, variant="next_forcing")
    assert curve.point == pytest.approx([0.0, 0.2, 0.4, 0.5, 0.6])
    assert all(lo <= p <= hi for lo, p, hi in zip(curve.low, curve.point, curve.high, strict=True))


def test_the_depth_curve_also_reads_the_area_and_the_baselines_flops(tmp_path):
    """Every run's success curve rises linearly from 0 to 0.4 over 400 steps: its area is a
    mean success of 0.2. A D=2 step costs 2x the baseline's FLOPs, so at the baseline's
    budget it has trained 200 steps: success 0.2 there, area 0.1; D=1 costs 1.25x (320
    steps: 0.32 and 0.16). D=0 reads the same at matched steps and FLOPs."""
    cost = {0: 1.0, 1: 1.25, 2: 2.0}
    specs = [
        dataclasses.replace(
            spec, success=[0.0, 0.1, 0.2, 0.3, 0.4], flops_per_step=1.2e9 * cost[spec.mcp_depth]
        )
        for spec in depth_specs({0: (4, 6), 1: (6, 8), 2: (7, 7)})
    ]
    write_sweep(tmp_path, specs)
    points = {(e.quantity, e.depth): e.point for e in summarise(tmp_path).depth}
    expected = {
        "success_auc": [0.2, 0.2, 0.2],
        "success_at@baseline_flops": [0.4, 0.32, 0.2],
        "success_auc@baseline_flops": [0.2, 0.16, 0.1],
    }
    for quantity, values in expected.items():
        assert [points[(quantity, d)] for d in (0, 1, 2)] == pytest.approx(values), quantity


def test_matched_budgets_convert_the_speedup_by_the_cost_per_step(tmp_path):
    """Next Forcing reaches the target in half the steps, but its step costs 2x the FLOPs:
    at matched FLOPs (and wall-clock) the speed-up is 1x; at matched samples still 2x."""
    specs = [
        RunSpec(variant=v, seed=seed, success=curve, flops_per_step=cost, setting="randomized")
        for v, curves, cost in (
            ("single_step", BASE_SEEDS, 1.2e9),
            ("next_forcing", NF_SEEDS, 2.4e9),
        )
        for seed, curve in enumerate(curves)
    ]
    write_sweep(tmp_path, specs)
    curve = one(summarise(tmp_path).curves, metric=SUCCESS, variant="next_forcing")
    assert curve.budgets["perf/flops"] == pytest.approx([s * 2.4e9 for s in curve.steps])
    assert curve.budgets["perf/samples"] == [s * 8 for s in curve.steps]
    runs = claim_runs(tmp_path)
    speedups = {
        budget: convergence_claim(runs, "single_step", "next_forcing", 50, 400, budget).ours
        for budget in BUDGETS
    }
    assert speedups["steps"].endswith(": 2.00x [2.00, 2.00]")
    assert speedups["samples"].endswith(": 2.00x [2.00, 2.00]")
    assert "costs 2.00x the baseline's FLOPs: 1.00x [1.00, 1.00]" in speedups["FLOPs"]
    assert speedups["training wall-clock"].endswith(": 1.00x [1.00, 1.00]")


def test_the_depth_curve_is_final_success_per_mcp_depth(tmp_path):
    successes = {0: (4, 6), 1: (6, 8), 2: (7, 7)}  # of 10 episodes, seeds 0 and 1
    write_sweep(tmp_path / "three", depth_specs(successes))
    summary = summarise(tmp_path / "three")
    final = [e for e in summary.depth if e.quantity == "success/model"]
    assert [e.depth for e in final] == [0, 1, 2]
    assert [e.point for e in final] == pytest.approx([0.5, 0.7, 0.7])
    assert [e.successes for e in final] == [10, 14, 14]
    assert [e.variants for e in final][1] == ["next_forcing,d1"]
    assert all(e.low <= e.point <= e.high for e in summary.depth)
    write_sweep(tmp_path / "two", depth_specs({0: (4, 6), 1: (6, 8)}))
    assert summarise(tmp_path / "two").depth == []  # two depths are a comparison, no curve


def test_any_chained_mcp_sweep_gives_a_depth_curve_of_one_kind_of_heads(tmp_path):
    successes = {0: (4, 6), 1: (6, 8), 2: (7, 7)}
    write_sweep(tmp_path / "chain", depth_specs(successes, heads="chain_last_layer"))
    final = [e for e in summarise(tmp_path / "chain").depth if e.quantity == "success/model"]
    assert [e.depth for e in final] == [0, 1, 2]  # read from the heads config, not the name
    specs = depth_specs(successes)
    for spec in specs:
        if spec.mcp_depth == 2 and spec.variant != "single_step":
            spec.config_changes = {"heads.fusion_spread": "even"}
    write_sweep(tmp_path / "mixed", specs)
    with pytest.raises(RunFolderError, match=r"the depth curve of press_button clean fps 50 "):
        summarise(tmp_path / "mixed")


def test_late_step_sets_the_target_and_undefined_speedups_carry_a_reason(tmp_path):
    write_comparison(tmp_path)
    at_300 = one(summarise(tmp_path, late_step=300).convergence, metric=SUCCESS)
    # Baseline value 0.3 at step 300; Next Forcing passes 0.3 halfway between 100 and 200.
    assert at_300.variant_steps_to_target == pytest.approx(150)
    assert at_300.speedup == pytest.approx(2.0)
    beyond = one(summarise(tmp_path, late_step=500).convergence, metric=SUCCESS)
    assert beyond.speedup is None and "late_step=500" in beyond.reason
    reversed_roles = one(summarise(tmp_path, baseline="next_forcing").convergence, metric=SUCCESS)
    assert reversed_roles.speedup is None and "never reaches" in reversed_roles.reason


def test_unfinished_run_is_listed_missing_with_the_command_that_continues_it(tmp_path):
    write_sweep(tmp_path, [RunSpec(seed=0), RunSpec(seed=1, last_step=200)])
    summary = summarise(tmp_path)
    assert [run["seed"] for run in summary.runs] == [0]
    (gap,) = summary.missing
    assert gap.scope == "run"
    assert "metrics.jsonl ends at step 200 of train.steps=400 (unfinished)" in gap.reason
    assert "hydra.run.dir=" in gap.reason
    with open(tmp_path / "aggregate" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["status"]) for r in rows] == [("0", "ok"), ("1", "missing")]


def test_cut_last_line_is_skipped_and_a_corrupt_line_names_file_and_fix(tmp_path):
    write_run(tmp_path, RunSpec(seed=0, cut_last_line=True))
    broken = write_run(tmp_path, RunSpec(seed=1))
    path = broken / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:10]
    path.write_text("\n".join(lines) + "\n")
    summary = summarise(tmp_path)
    assert [run["seed"] for run in summary.runs] == [0]
    (gap,) = summary.missing
    assert gap.reason == f"{path}:4 is not valid JSON; delete that line or re-run the training"


def test_diverged_and_misevaluated_runs_are_listed_not_used(tmp_path):
    diverged = write_run(tmp_path, RunSpec(seed=0, val_loss=[1.0, 0.9, math.nan, 0.7, 0.6]))
    early = write_run(tmp_path, RunSpec(seed=1))
    data = json.loads((early / "eval.json").read_text())
    (early / "eval.json").write_text(json.dumps(data | {"step": 200}))
    summary = summarise(tmp_path)
    reasons = {gap.path: (gap.scope, gap.reason) for gap in summary.missing}
    assert reasons[diverged.name][0] == "run" and "diverged" in reasons[diverged.name][1]
    assert reasons[early.name][0] == "eval"
    assert "evaluates step 200, not the final step 400" in reasons[early.name][1]


def test_run_without_eval_keeps_its_curves_and_is_missing_from_final_results(tmp_path):
    write_sweep(tmp_path, [RunSpec(seed=0, final_successes=3), RunSpec(seed=1, with_eval=False)])
    summary = summarise(tmp_path)
    (gap,) = summary.missing
    assert gap.scope == "eval" and "python -m experiments.evaluate checkpoint=" in gap.reason
    success = one(summary.estimates, quantity="success/model")
    assert (success.point, success.n_runs) == (0.3, 1)
    assert one(summary.curves, metric=SUCCESS).n_runs == 2
    assert summarise(tmp_path, require_eval=False).missing == []


def test_iqm_across_tasks_pools_the_runs_with_a_stratified_interval(tmp_path):
    specs = [
        RunSpec(task=task, seed=seed, final_successes=successes)
        for task, counts in (("press_button", (2, 4)), ("handover_block", (6, 8)))
        for seed, successes in enumerate(counts)
    ]
    write_sweep(tmp_path, specs)
    summary = summarise(tmp_path)
    pooled = one(summary.estimates, quantity="success/model", task="all")
    # IQM of 0.2, 0.4, 0.6, 0.8 drops one value at each end: (0.4 + 0.6) / 2.
    assert pooled.point == pytest.approx(0.5)
    assert pooled.statistic == ACROSS_TASKS
    assert pooled.tasks == ["handover_block", "press_button"]
    assert (pooled.successes, pooled.episodes, pooled.n_runs) == (20, 40, 4)
    assert pooled.low <= 0.5 <= pooled.high
    assert one(summary.estimates, quantity="success/model", task="handover_block").point == 0.7
    assert not [e for e in summary.estimates if e.task == "all" and "loss" in e.quantity]


def test_speed_ratio_is_the_mean_of_the_per_run_ratios(tmp_path):
    specs = [
        RunSpec(variant="next_forcing", seed=s, mcp_parallel_speedup=r)
        for s, r in ((0, 1.8), (1, 2.2))
    ]
    write_sweep(tmp_path, [*specs, RunSpec(variant="single_step")])
    summary = summarise(tmp_path)
    assert one(summary.estimates, quantity=SPEEDUP).point == pytest.approx(2.0)
    standard = one(
        summary.estimates, quantity="speed/standard/chunks_per_second", variant="single_step"
    )
    assert standard.point == 8.0


def test_cli_writes_tidy_tables_and_a_summary_that_loads_back(tmp_path, capsys):
    write_comparison(tmp_path, final_successes=4)
    main([str(tmp_path), "--bootstrap-reps", str(REPS), "--late-step", "300"])
    folder = tmp_path / "aggregate"
    summary = Summary.load(folder / "summary.json")
    assert summary.to_dict() == json.loads((folder / "summary.json").read_text())
    assert summary.settings.late_step == 300 and summary.settings.bootstrap_reps == REPS
    assert "wrote" in capsys.readouterr().out
    with open(folder / "success.csv") as f:
        model = [r for r in csv.DictReader(f) if r["policy"] == "model"]
    assert len(model) == 4
    low, high = wilson_interval(4, 10)
    assert (float(model[0]["wilson_low"]), float(model[0]["wilson_high"])) == (low, high)
    with open(folder / "curves.csv") as f:
        curves = [r for r in csv.DictReader(f) if r["metric"] == SUCCESS]
    assert len(curves) == 4 * 5  # four runs, five evaluations each
    with open(folder / "drift.csv") as f:
        drift = list(csv.DictReader(f))
    assert {r["mode"] for r in drift} == {"standard", "mcp_parallel", "heads_dropped"}
    with open(folder / "speed.csv") as f:
        assert {r["mode"] for r in csv.DictReader(f)} == {"standard", "mcp_parallel"}


def test_bad_sweeps_give_one_line_messages(tmp_path, capsys):
    with pytest.raises(RunFolderError, match="holds no run folder"):
        load_runs(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is not a folder" in err and "\n" not in err
    write_sweep(tmp_path, [RunSpec(variant="next_forcing"), RunSpec(variant="parallel_heads")])
    summary = summarise(tmp_path)
    assert summary.convergence == []
    (note,) = summary.notes
    assert "--baseline" in note and "next_forcing, parallel_heads" in note


def test_run_folders_are_found_at_any_depth_but_not_in_hydra_wandb_or_outputs(tmp_path):
    deep = write_run(tmp_path / "group" / "more", RunSpec(seed=0))
    top = write_run(tmp_path, RunSpec(seed=1))
    (tmp_path / "report" / "wandb" / "run" / "files").mkdir(parents=True)
    (tmp_path / "report" / "wandb" / "run" / "files" / "config.yaml").write_text("a: 1\n")
    assert find_run_dirs(tmp_path) == sorted([deep, top])
    info = json.loads((top / "run.json").read_text())
    del info["variant"]  # written before run.json had a variant: the heads preset names it
    (top / "run.json").write_text(json.dumps(info | {"heads": "next_forcing"}))
    assert {run.variant for run in load_runs(tmp_path).runs} == {"single_step", "next_forcing"}


def test_every_entry_of_a_committed_summary_reads_back_to_the_same_json():
    """The readers on a real reproduction's summary.json (with a depth curve and
    provenance): every entry's ``to_dict`` is the file's entry, absent fields left out."""
    path = Path(__file__).parents[1] / "reports/next_forcing_small/aggregate/summary.json"
    written = json.loads(path.read_text())
    summary = Summary.load(path)
    assert summary.depth and summary.convergence and summary.drift
    assert summary.settings.to_dict() == written["settings"]
    assert summary.provenance.to_dict() == written["provenance"]
    for kind in ("estimates", "curves", "convergence", "drift", "missing", "depth"):
        assert [e.to_dict() for e in getattr(summary, kind)] == written[kind], kind
    assert any(e.successes is not None for e in summary.estimates)
    assert any(e.successes is None and "successes" not in e.to_dict() for e in summary.estimates)


def test_runs_that_differ_in_their_data_are_never_pooled_as_seeds_of_one_group(tmp_path, capsys):
    """Two single_step runs, one trained on 12-frame windows: seeds of two experiments."""
    other = RunSpec(seed=1, extra_overrides=["data.window_frames=12"])
    other.config_changes = {"data.window_frames": 12, "data.episode_start_prob": 0.0}
    first, second = write_sweep(tmp_path, [RunSpec(seed=0), other])
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path)])
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line == (
        f"error: {first} and {second} would be seeds of single_step (press_button clean, fps "
        "50) but differ in data.episode_start_prob (None vs 0.0), data.window_frames (8 vs "
        "12); tell them apart with variant=<name>, or aggregate them separately"
    )
    # the train app names them apart: their data is part of the variant's name
    assert variant_label(
        "single_step", ["data.window_frames=12", "data.episode_start_prob=0.0"]
    ) == ("single_step,data.episode_start_prob=0.0,data.window_frames=12")
    assert variant_label("single_step", ["data.dir=/d", "data.cache_dir=/c", "seed=3"]) == (
        "single_step"
    )


def test_a_seed_twice_in_one_group_is_refused_naming_both_folders(tmp_path, capsys):
    first, second = write_sweep(
        tmp_path, [RunSpec(seed=0), RunSpec(seed=0, extra_overrides=["train.threads=2"])]
    )
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert capsys.readouterr().err.strip() == (
        f"error: {first} and {second} are both seed 0 of single_step (press_button clean, fps "
        "50); leave one out, or tell them apart with variant=<name>"
    )
