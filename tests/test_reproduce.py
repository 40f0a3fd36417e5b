"""The reproduce pipeline end to end at the micro scale, and the claims' verdict rules."""

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments import reproduce
from experiments.cli import CONF_DIR
from experiments.config.base import ConfigError
from experiments.config.reproduce import ScalePreset, scale_preset
from experiments.reproduce import jobs_and_threads
from experiments.results.claims import (
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    convergence_claim,
    interval_verdict,
    relative_improvement_claim,
    speed_claim,
    success_claim,
)
from experiments.results.entries import RunValues
from experiments.results.fidelity import fidelity_rows, fidelity_table
from experiments.results.run_folders import load_runs, read_run_config
from tests.run_folder_factory import RunSpec, claim_runs, write_sweep
from worldmodel.command_line import hydra_override, override
from worldmodel.evaluation.statistics import Interval

REPO = Path(__file__).resolve().parents[1]
CLAIMS = ("Clean success", "Randomized success", "Relative improvement", "Faster convergence")
CLAIMS += ("mcp_parallel inference",)
SECTIONS = ("## Paper claims", "## Provenance", "## Missing runs", "## Closed-loop success")
SECTIONS += ("## Convergence", "## Validation loss", "## Rollout drift")


@pytest.fixture(scope="module")
def micro(tmp_path_factory, tiny_data_dir):
    """The micro reproduction, stopped by SIGTERM once its first runs train, then run again
    to the end; returns the folder, the finished run and the stopped run's exit code and
    stderr."""
    out_dir = tmp_path_factory.mktemp("reproduce sp ü")  # Hydra needs a space and ü quoted
    cmd = [
        sys.executable,
        "-m",
        "experiments.reproduce",
        "paper=next_forcing",
        "scale=micro",
        hydra_override("out_dir", out_dir),
        "jobs=2",  # two runs at a time in worker processes; the re-run below uses jobs=1
    ]
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not any("train/loss" in p.read_text() for p in out_dir.glob("runs/**/metrics.jsonl")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # to the parent only, as `kill` sends it
    _, stopped_stderr = process.communicate(timeout=600)
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir, result, (process.returncode, stopped_stderr.decode())


def test_sigterm_stops_the_runs_at_a_checkpoint_and_the_same_command_resumes(micro):
    out_dir, result, (code, stderr) = micro
    assert code == 3, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"stopped: stopped by SIGTERM: \d+ runs checkpointed in training, \d+ of 4 finished or "
        r"failed; run the same command again to resume",
        last,
    ), last
    assert "resuming" in result.stderr  # the re-run continued the stopped runs
    runs = load_runs(out_dir).runs
    for run in runs:
        steps = [row["step"] for row in run.metrics if "train/loss/total" in row]
        assert steps == sorted(set(steps)) and steps[-1] == run.steps  # nothing lost or twice


def test_micro_reproduction_writes_every_section_and_figure(micro):
    out_dir, result, _ = micro
    report = (out_dir / "REPORT.md").read_text()
    assert f"report: {out_dir / 'REPORT.md'}" in result.stdout
    for section in SECTIONS:
        assert section in report, section
    command = f"paper=next_forcing scale=micro {override('out_dir', out_dir)} jobs=2"
    assert f"Command: `python -m experiments.reproduce {command}`" in report
    for claim in CLAIMS:
        row = next(line for line in report.splitlines() if line.startswith(f"| {claim}"))
        assert re.search(r"\*\*(reproduced|not reproduced|inconclusive|not measured)\*\*", row)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert len(images) >= 5
    for image in images:
        pixels = matplotlib.image.imread(out_dir / image)
        assert pixels.std() > 0, image
    runs = load_runs(out_dir).runs
    assert len(runs) == 4 and all(run.finished and run.eval for run in runs)


def test_claim_numbers_come_from_the_runs(micro):
    out_dir, _, _ = micro
    runs = load_runs(out_dir).runs
    report = (out_dir / "REPORT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| Randomized success"))
    episodes = sum(
        json.loads((run.path / "eval.json").read_text())["closed_loop"]["model"]["n"]
        for run in runs
    )
    assert f"2 task-seed pairs, {episodes} episodes, fps 50" in row
    speedups = [run.eval.mcp_parallel_speedup for run in runs]
    speedups = [s for s in speedups if s is not None]
    assert f"{sum(speedups) / len(speedups):.2f}x" in report


def test_a_second_invocation_reuses_finished_runs(micro):
    out_dir, _, _ = micro
    before = {p: p.stat().st_mtime_ns for p in out_dir.glob("runs/**/last.pt")}
    cmd = [sys.executable, "-m", "experiments.reproduce", "scale=micro"]
    cmd.append(hydra_override("out_dir", out_dir))
    cmd.append("jobs=1")
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in out_dir.glob("runs/**/last.pt")} == before


def test_a_copied_reproduction_reuses_every_run(micro, tmp_path):
    """Datasets, tokenizers and runs copied together: the runs' configs name the tokenizer at
    the old folder, which compares by its path inside the data folder."""
    out_dir, _, _ = micro
    copy = tmp_path / "moved here"
    shutil.copytree(out_dir, copy, ignore=shutil.ignore_patterns("*.lock"))
    before = {p: p.stat().st_mtime_ns for p in copy.glob("runs/**/last.pt")}
    cmd = [sys.executable, "-m", "experiments.reproduce", "scale=micro", "jobs=1"]
    result = subprocess.run(
        [*cmd, hydra_override("out_dir", copy)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "error" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in copy.glob("runs/**/last.pt")} == before
    assert len(before) == len(list(out_dir.glob("runs/**/last.pt"))) > 0


def test_a_run_of_an_older_preset_names_the_fix(micro):
    """A folder trained with another version of the preset is refused with out_dir as the fix,
    and the run is left as it was."""
    out_dir, _, _ = micro
    run_dir = out_dir / "runs" / "single_step/press_button_randomized/fps50/seed0"
    overrides = json.loads((run_dir / "run.json").read_text())["overrides"]
    before = (run_dir / "last.pt").read_bytes()
    spec = reproduce.RunSpec("single_step", "press_button", "randomized", 50.0, 0, "single_step")
    with pytest.raises(ConfigError, match=r"another version .* \(train.lr\); pass out_dir="):
        reproduce.train_run(spec, run_dir, [*overrides, "train.lr=0.5"], steps=7)
    assert (run_dir / "last.pt").read_bytes() == before


def test_a_run_kept_without_its_checkpoints_counts_as_trained(micro, tmp_path):
    """A finished run's small files (config.yaml, metrics.jsonl, run.json, eval.json), e.g.
    committed to carry a reproduction over to another machine, are not trained again; one of
    another preset is refused as with its checkpoint."""
    out_dir, _, _ = micro
    source = out_dir / "runs" / "single_step/press_button_randomized/fps50/seed0"
    run_dir = tmp_path / "seed0"
    run_dir.mkdir()
    for name in ("config.yaml", "metrics.jsonl", "run.json", "eval.json"):
        shutil.copy(source / name, run_dir / name)
    overrides = json.loads((run_dir / "run.json").read_text())["overrides"]
    steps = json.loads((run_dir / "eval.json").read_text())["step"]
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    spec = reproduce.RunSpec("single_step", "press_button", "randomized", 50.0, 0, "single_step")
    assert reproduce.finished_step(run_dir) == steps
    reproduce.train_run(spec, run_dir, overrides, steps)
    assert not list(run_dir.glob("*.pt")) and (run_dir / "metrics.jsonl").read_bytes() == metrics
    with pytest.raises(ConfigError, match=r"another version .* \(train.lr\)"):
        reproduce.train_run(spec, run_dir, [*overrides, "train.lr=0.5"], steps)


def test_a_depth_curve_run_records_its_heads_preset_apart_from_its_variant(micro, tmp_path):
    """The depth curve pools D = 0 and the next_forcing heads at every D, found by the heads
    preset that run.json records, not by the variant's name."""
    out_dir, _, _ = micro
    source = out_dir / "runs" / "next_forcing/press_button_randomized/fps50/seed0"
    overrides = json.loads((source / "run.json").read_text())["overrides"]
    overrides = [o for o in overrides if not o.startswith(("variant=", "train.steps=", "eval."))]
    overrides += ["variant=next_forcing_d2", "heads.mcp_depth=2", "train.steps=1", "eval.every=0"]
    spec = reproduce.RunSpec(
        "next_forcing_d2",
        "press_button",
        "randomized",
        12.5,
        0,
        "next_forcing",
        ("heads.mcp_depth=2",),
    )
    reproduce.train_run(spec, tmp_path / "run", overrides, steps=1)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (info["heads"], info["variant"]) == ("next_forcing", "next_forcing_d2")
    (run,) = load_runs(tmp_path, require_eval=False).runs
    assert (run.heads, run.mcp_depth) == ("next_forcing", 2)


@pytest.mark.parametrize(
    "requested, preset_threads, expected",
    [(0, 1, (8, 1)), (0, 3, (2, 3)), (0, None, (1, 8)), (3, None, (3, 2)), (2, 1, (2, 1))],
)
def test_jobs_and_threads(monkeypatch, requested, preset_threads, expected):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    preset = scale_preset("next_forcing", "micro")
    preset.train = [o for o in preset.train if not o.startswith("train.threads=")]
    if preset_threads:
        preset.train.append(f"train.threads={preset_threads}")
    assert preset.threads == preset_threads
    assert jobs_and_threads(requested, preset) == expected


def depth_preset(**curve) -> ScalePreset:
    preset = scale_preset("next_forcing", "micro_state")
    fields = {
        **preset.__dict__,
        "seeds": [0, 1],
        "variant_overrides": {"next_forcing": ["heads.mcp_depth=1"]},
    }
    default = dict(task=preset.tasks[0], setting=preset.settings[0], fps=preset.fps[0])
    return ScalePreset(
        **fields | {"depth_curve": default | {"seeds": [0], "depths": [2, 4]} | curve}
    )


def test_the_depth_curve_adds_runs_of_each_depth_to_the_main_ones(tmp_path):
    preset = depth_preset()
    specs = reproduce.run_specs(preset)
    main = [s for s in specs if s.variant in preset.variants]
    extra = [s for s in specs if s.variant not in preset.variants]
    assert len(main) == 2 * len(preset.tasks) * len(preset.fps) * 2
    assert [(s.variant, s.seed) for s in extra] == [("next_forcing_d2", 0), ("next_forcing_d4", 0)]
    nf = next(s for s in main if s.variant == "next_forcing")
    assert nf.extra == ("heads.mcp_depth=1",)
    assert extra[1].extra == ("heads.mcp_depth=4",)  # the main variant's depth is replaced
    name, data = "reproduce_test", tmp_path / "data"
    for spec, depth in ((main[0], 0), (nf, 1), (extra[1], 4)):
        cfg = reproduce.compose_app(
            CONF_DIR, "train", spec.overrides(preset, name, data, "disabled")
        )
        assert (cfg.heads.kind == "none" and depth == 0) or cfg.heads.mcp_depth == depth
        assert cfg.variant == spec.variant
    order = [s.variant for s in sorted(specs, key=lambda s: reproduce.run_order(preset, s))]
    assert order[0] == "next_forcing" and order[len(main) - 1] == "single_step"
    assert order[len(main) :] == ["next_forcing_d4", "next_forcing_d2"]
    with pytest.raises(ConfigError, match=r"depth_curve.depths=\[5\]: MCP depths in 1..4"):
        depth_preset(depths=[5])
    with pytest.raises(ConfigError, match=r"depth_curve fps=7, seeds=\[0\]: must be among"):
        depth_preset(fps=7.0)


def test_periodic_evaluations_can_use_fewer_episodes_than_the_final_one(tmp_path):
    preset = scale_preset("next_forcing", "micro_state")
    fields = preset.__dict__ | {"eval_episodes": 4, "periodic_eval_episodes": 2}
    preset_with_fewer = ScalePreset(**fields)
    spec = reproduce.run_specs(preset_with_fewer)[0]
    overrides = spec.overrides(preset_with_fewer, "reproduce_test", tmp_path, "disabled")
    cfg = reproduce.compose_app(CONF_DIR, "train", overrides)
    assert (cfg.eval.episodes, cfg.data.eval_episodes) == (2, 4)
    with pytest.raises(ConfigError, match=r"periodic_eval_episodes=5: need 0 <"):
        ScalePreset(**fields | {"periodic_eval_episodes": 5})


def test_verdicts_follow_the_interval():
    assert interval_verdict(Interval(0.2, 0.1, 0.3), 0.0) == REPRODUCED
    assert interval_verdict(Interval(-0.2, -0.3, -0.1), 0.0) == NOT_REPRODUCED
    assert interval_verdict(Interval(0.1, -0.1, 0.3), 0.0) == INCONCLUSIVE
    assert interval_verdict(Interval(1.8, 1.6, 2.0), 1.5) == REPRODUCED


def known_sweep(tmp_path: Path, seeds: int = 3) -> list:
    """``seeds`` seeds per variant, randomized, 50 fps: the baseline's success curve rises to
    0.4 by step 400, Next Forcing's to 0.4 by step 200; finals 2/10, 4/10, 3/10 vs 6/10, 8/10,
    7/10."""
    specs = []
    for seed, (base_final, nf_final) in enumerate([(2, 6), (4, 8), (3, 7)][:seeds]):
        common = dict(setting="randomized", fps=50.0, seed=seed)
        specs.append(
            RunSpec(
                "single_step",
                **common,
                success=[0.0, 0.1, 0.2, 0.3, 0.4],
                final_successes=base_final,
            )
        )
        specs.append(
            RunSpec(
                "next_forcing",
                **common,
                success=[0.0, 0.2, 0.4, 0.4, 0.4],
                final_successes=nf_final,
                mcp_parallel_speedup=1.9,
            )
        )
    write_sweep(tmp_path, specs)
    return claim_runs(tmp_path)


def test_claims_on_runs_with_known_outcomes(tmp_path):
    runs = known_sweep(tmp_path)
    # final success: base 0.2, 0.4 (mean 30%), NF 0.6, 0.8 (mean 70%); both differences 0.4
    success = success_claim(runs, "single_step", "next_forcing", "randomized", 50.0, "x")
    assert success.verdict == REPRODUCED
    assert success.ours.startswith("70.0 [60.0, 80.0] vs 30.0 [20.0, 40.0]; difference 40.0 pts")
    clean = success_claim(runs, "single_step", "next_forcing", "clean", 50.0, "x")
    assert clean.verdict == NOT_MEASURED
    # at step 100: base 0.1, NF 0.2 in both seeds -> (0.2 - 0.1) / 0.1 = +100%
    early = relative_improvement_claim(runs, "single_step", "next_forcing", 50.0, 100)
    assert "20.0% vs 10.0%" in early.ours and "100.0%" in early.ours
    assert early.verdict == REPRODUCED
    # the baseline reaches its step-400 success 0.4 at 400, Next Forcing at 200: 2x
    converge = convergence_claim(runs, "single_step", "next_forcing", 50.0, 400)
    assert "2.00x" in converge.ours and converge.verdict == REPRODUCED
    assert "the baseline's success at step 400" in converge.claim
    # at a late step of 300 (the paper's 90%), the target is 0.3: Next Forcing at 150, 2x
    at_300 = convergence_claim(runs, "single_step", "next_forcing", 50.0, 300)
    assert "reaches 30.0% at step 300" in at_300.ours and "step 150" in at_300.ours
    # speed 1.9x in both seeds with the same success in both modes
    speed = speed_claim(runs, "next_forcing")
    assert speed.ours.startswith("1.90x [1.90, 1.90]; success change 0.0 pts")
    assert speed.verdict == REPRODUCED


@pytest.mark.parametrize("seeds", [1, 2])
def test_fewer_than_three_pairs_never_reproduce_a_claim(tmp_path, seeds):
    """The same clear effects as above on one or two seeds: a bootstrap over so few pairs
    has no width, so every claim that would be reproduced is inconclusive, and says why."""
    runs = known_sweep(tmp_path, seeds)
    claims = [
        success_claim(runs, "single_step", "next_forcing", "randomized", 50.0, "x"),
        relative_improvement_claim(runs, "single_step", "next_forcing", 50.0, 100),
        convergence_claim(runs, "single_step", "next_forcing", 50.0, 400),
        speed_claim(runs, "next_forcing"),
    ]
    for claim in claims:
        assert claim.verdict == INCONCLUSIVE, claim
        assert f"only {seeds} pair(s): 3 or more needed" in claim.reason


def test_base_scale_writes_the_gpu_command_lines(tmp_path, capsys):
    from experiments.reproduce import main

    out_dir = tmp_path / "gpu runs ü"  # every path in a command line stays one Hydra value
    main(["scale=base", "commands_only=true", hydra_override("out_dir", out_dir)])
    lines = (out_dir / "train_commands.sh").read_text().splitlines()
    assert capsys.readouterr().out.strip() == f"commands: {out_dir / 'train_commands.sh'}"
    runs = [line for line in lines if line.startswith("torchrun --nproc_per_node=${GPUS:-1}")]
    collects = [line for line in lines if line.startswith("python -m experiments.collect")]
    assert len(runs) == 2 * 6 * 2 * 3 * 3  # variants x tasks x settings x fps x seeds
    assert len(collects) == 6 * 2
    tokenizers = [
        line for line in lines if line.startswith("python -m experiments.train_tokenizer")
    ]
    # the tokenizer never sees the world model's validation episodes (data.val_episodes=5)
    assert len(tokenizers) == 6 * 2 and all("--held-out-last 5" in t for t in tokenizers)
    assert all("model=base" in line and "hydra.run.dir=" in line for line in runs)
    words = shlex.split(runs[0])[4:]  # after torchrun, its flag, -m and the module
    read = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(words)}
    assert Path(read["hydra.run.dir"]).parent.parent.parent.parent == out_dir / "runs"
    assert Path(read["data.dir"]).is_relative_to(out_dir)


def test_claim_steps_are_the_papers_ten_and_ninety_percent():
    base = scale_preset("next_forcing", "base")
    assert (base.early, base.late, base.steps) == (5000, 45000, 50000)  # the paper's 5k, 45k
    micro = scale_preset("next_forcing", "micro")  # 6 steps, evaluations every 3
    assert (micro.early, micro.late) == (3, 6)  # the nearest evaluation steps
    fields = base.__dict__ | {"early_step": 10000, "late_step": 40000}
    assert (ScalePreset(**fields).early, ScalePreset(**fields).late) == (10000, 40000)
    with pytest.raises(ConfigError, match="late_step=42000 must be an evaluation step"):
        ScalePreset(**base.__dict__ | {"late_step": 42000})
    with pytest.raises(ConfigError, match="need 0 < early_step < late_step"):
        ScalePreset(**base.__dict__ | {"early_step": 45000})


def test_the_fidelity_table_reads_the_runs_setting_beside_the_papers(tmp_path):
    runs = known_sweep(tmp_path)
    folder = next(tmp_path.glob("*heads=next_forcing*seed=0*"))
    rows = {
        setting: (item, paper, ours)
        for item, setting, paper, ours in fidelity_rows(
            read_run_config(folder), 400, 100, 300, runs, "single_step", "next_forcing"
        )
    }
    assert rows["frame rate of the 50 fps claims"][2] == (
        "fps 50 (4 actions per latent frame, 0.16 s per chunk of 2)"
    )
    assert rows["MCP depths D x blocks per depth"] == (
        "B",
        "3 x 3 (1-block ablation: 86.5 vs 85.8)",
        "3 x 3",
    )
    assert rows["fused layers (1-based)"][2] == "1, 2, 3, 4 of 4"
    assert rows["claim steps (early; late)"][2] == "100; 300 of 400"
    assert rows["Next Forcing FLOPs per step / baseline"][2] == "1.00x (measured per step)"
    assert rows["mcp_parallel: speed; success change"][2] == "1.90x; +0.0 pts (3 runs)"
    assert "| E | Next Forcing FLOPs per step" in fidelity_table(
        list((item, setting, *rest) for setting, (item, *rest) in rows.items())
    )


def test_runs_at_one_fps_get_its_own_overrides():
    preset = scale_preset("next_forcing", "micro_state")
    fields = preset.__dict__ | {
        "fps": [50.0, 12.5],
        "fps_overrides": {12.5: ["data.window_frames=12"]},
    }
    specs = reproduce.run_specs(ScalePreset(**fields))
    assert {s.extra for s in specs if s.fps == 12.5} == {("data.window_frames=12",)}
    assert {s.extra for s in specs if s.fps == 50.0} == {()}
    with pytest.raises(ConfigError, match="fps_overrides='25' is not valid"):
        ScalePreset(**fields | {"fps_overrides": {25: ["data.window_frames=12"]}})


def test_an_early_ratio_of_near_zero_rates_says_so():
    def run(variant: str, seed: int, early: float) -> RunValues:
        curve = [[0.0, 0.0], [100.0, early], [400.0, 0.5]]
        common = dict(task="press_button", setting="randomized", fps=50.0, seed=seed)
        return RunValues(path=f"{variant}{seed}", variant=variant, success_curve=curve, **common)

    runs = [run("single_step", s, e) for s, e in enumerate([0.1, 0.0, 0.0])]
    runs += [run("next_forcing", s, 0.0) for s in range(3)]
    claim = relative_improvement_claim(runs, "single_step", "next_forcing", 50.0, 100)
    assert claim.verdict == NOT_REPRODUCED and "0.0% vs 3.3%" in claim.ours
    assert "neither model succeeds in 5% of episodes" in claim.reason
    runs[0] = run("single_step", 0, 0.4)  # 13.3% on average: an early rate to speak of
    claim = relative_improvement_claim(runs, "single_step", "next_forcing", 50.0, 100)
    assert "near-zero" not in claim.reason
