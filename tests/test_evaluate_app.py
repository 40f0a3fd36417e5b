"""``python -m experiments.evaluate`` on a tiny trained run: eval.json, figures, videos."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import matplotlib.image
import pytest

from experiments.cli import APPS_CONF_DIR, check_overrides
from experiments.evaluate import evaluate_config_from

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained_run(tiny_data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "task=press_button",
        "data=tiny",
        "train=tiny",
        "train.steps=10",
        "heads=next_forcing",
        "logger=disabled",
        "logger.progress=false",
        "train.threads=1",
        f"data.dir={tiny_data_dir}",
        f"data.cache_dir={tiny_data_dir}/latents",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def evaluate(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "experiments.evaluate",
        f"checkpoint={run_dir}/last.pt",
        "episodes=2",
        "max_steps=44",  # 6 chunks at 12.5 fps: chunk 0 runs 4 steps (frame 0 observed), then 8
        "videos=1",
        "drift.horizon=2",
        "drift.steps=2",
        "video_steps=2",
        "action_steps=2",
        *overrides,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def test_evaluate_writes_eval_json_figures_and_videos(trained_run):
    result = evaluate(trained_run, "logger.mode=offline")
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = trained_run / "eval" / "step_0000010"
    report = json.loads((out_dir / "eval.json").read_text())
    assert report == json.loads((trained_run / "eval.json").read_text())  # final checkpoint
    assert report["step"] == 10 and report["run"]["variant"] == "next_forcing,data=tiny,train=tiny"
    assert set(report["closed_loop"]) == {"model", "model_mcp_parallel", "expert", "hold", "random"}
    for outcome in report["closed_loop"].values():
        assert outcome["n"] == 2 and [e["seed"] for e in outcome["episodes"]] == [100000, 100001]
        assert 0.0 <= outcome["wilson_low"] <= outcome["success_rate"] <= outcome["wilson_high"]
    standard, parallel = report["speed"]["standard"], report["speed"]["mcp_parallel"]
    # 6 chunks: mcp_parallel denoises chunk 0 alone, then 1 with 2, 3 with 4, 5 (unused draft)
    assert parallel["passes_per_chunk"]["video"] == pytest.approx(
        standard["passes_per_chunk"]["video"] * 4 / 6
    )
    assert report["speed"]["mcp_parallel_speedup"] > 0
    assert set(report["drift"]) == {"standard", "mcp_parallel", "heads_dropped"}
    horizon_curve = report["drift"]["standard"]["mean"]["open_loop"]["latent_mse"]
    assert len(horizon_curve) == 2
    for figure in report["files"]["figures"]:
        image = matplotlib.image.imread(figure)
        assert image.shape[0] > 100 and image.std() > 0
    videos = [Path(v).name for v in report["files"]["videos"]]
    assert "rollout_episode0.mp4" in videos
    assert "closed_loop_model_seed100000.mp4" in videos
    assert all(Path(v).stat().st_size > 0 for v in report["files"]["videos"])
    closed_loop = imageio.mimread(out_dir / "videos" / "closed_loop_model_seed100000.mp4")
    steps = report["closed_loop"]["model"]["episodes"][0]["steps"]
    assert len(closed_loop) == steps + 1 + 50  # 50 fps, the verdict held for a second
    assert closed_loop[0].shape == (16 + 256, 2 * 256, 3)  # real | imagined views
    rollout = imageio.mimread(out_dir / "videos" / "rollout_episode0.mp4")
    assert rollout[0].shape == (16 + 3 * 256, 256, 3)  # 32 px head camera upscaled 8x
    assert list(out_dir.glob("wandb/offline-run-*"))
    assert "model_mcp_parallel" in result.stdout


def test_evaluate_a_subset_of_suites(trained_run, tmp_path):
    result = evaluate(trained_run, "suites=[drift]", f"out_dir={tmp_path}", "threads=1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["torch_threads"] == 1
    assert report["closed_loop"] == {} and report["speed"] == {}
    assert report["drift"] and len(report["files"]["figures"]) == 4


def test_a_later_evaluation_keeps_the_runs_eval_json_unless_told(trained_run, tmp_path):
    run_eval = trained_run / "eval.json"
    run_eval.write_text(json.dumps({"made_by": "a sweep"}))
    other = ("suites=[closed_loop]", "episodes=1", "modes=[standard]", "threads=1")
    result = evaluate(trained_run, *other, f"out_dir={tmp_path / 'kept'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(run_eval.read_text()) == {"made_by": "a sweep"}
    assert "replace_run_eval=true" in result.stderr
    assert json.loads((tmp_path / "kept" / "eval.json").read_text())["closed_loop"]
    replaced = evaluate(trained_run, *other, "replace_run_eval=true", f"out_dir={tmp_path}")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert json.loads(run_eval.read_text()) == json.loads((tmp_path / "eval.json").read_text())


def test_diagnose_writes_action_skill_oracle_loop_and_figures(trained_run, tmp_path):
    result = evaluate(trained_run, "suites=[diagnose]", f"out_dir={tmp_path}", "threads=1")
    assert result.returncode == 0, result.stderr[-3000:]
    diagnosis = json.loads((tmp_path / "eval.json").read_text())["diagnose"]
    skill = diagnosis["action_skill"]
    chunks = 4  # data=tiny windows: 8 frames at K=2
    for predictor in ("real", "imagined", "drafted", "hold", "mean"):
        for group in ("arm", "gripper"):
            assert len(skill["by_chunk"][predictor][group]) == chunks
            assert len(skill["by_frame"][predictor][group]) == 2
    assert skill["tokens"] > 0 and len(skill["skill_by_chunk"]["real"]["arm"]) == chunks
    hold, real = skill["by_chunk"]["hold"]["arm"], skill["by_chunk"]["real"]["arm"]
    assert skill["skill_by_chunk"]["real"]["arm"][0] == pytest.approx(1 - real[0] / hold[0])
    # next_forcing drafts: chunk 0 has no draft; every later one is scored per Euler step
    draft = skill["draft"]
    assert draft["by_chunk"]["draft"][0] is None and draft["by_chunk"]["backbone"][0] is None
    assert all(v > 0 for key in draft["by_chunk"] for v in draft["by_chunk"][key][1:])
    assert [len(draft["by_step"][key]) for key in ("backbone", "backbone_two_ahead", "draft")] == [
        2,
        2,
        2,
    ]  # 2 Euler steps
    assert len(skill["skill_by_chunk"]["drafted"]["arm"]) == chunks
    oracle = diagnosis["oracle_closed_loop"]
    assert oracle["n"] == 2 and [e["seed"] for e in oracle["episodes"]] == [100000, 100001]
    assert all(0.0 <= e["progress"] <= 1.0 for e in oracle["episodes"])
    assert [Path(f).name for f in diagnosis["figures"]] == [
        "diagnose_actions_arm.png",
        "diagnose_actions_gripper.png",
        "diagnose_draft.png",
    ]
    for figure in diagnosis["figures"]:
        assert matplotlib.image.imread(figure).std() > 0
    assert "model_oracle_video" in result.stdout and "action skill by chunk" in result.stdout


def test_context_past_training_is_refused_in_one_line(trained_run, tmp_path):
    result = evaluate(
        trained_run, "suites=[closed_loop]", "context_chunks=4", f"out_dir={tmp_path}"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "context_chunks=4 is more context than training saw" in lines[0]
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], "checkpoint is required"),
        (["checkpoint=x.pt", "suites=[fast]"], "suites='fast' is not valid; choose one of"),
        (["checkpoint=x.pt", "modes=[turbo]"], "modes='turbo' is not valid"),
        (["checkpoint=x.pt", "threads=-1"], "threads=-1 is not valid; must be >= 0"),
    ],
)
def test_bad_evaluate_config_is_one_line(overrides, expected, capsys):
    with pytest.raises(SystemExit):
        check_overrides("evaluate", overrides, evaluate_config_from, conf_dir=APPS_CONF_DIR)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_missing_checkpoint_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", f"checkpoint={tmp_path}/none.pt"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}/none.pt: no such checkpoint; train one with python -m experiments.train"
    ]


def test_a_drift_rollout_longer_than_every_held_out_episode_is_refused_first(trained_run, tmp_path):
    """drift.horizon=50 asks for 102 latent frames; one line naming the keys to shorten, before
    any episode runs (it was a 22-line traceback after the closed loop)."""
    result = evaluate(trained_run, "suites=[closed_loop,drift]", "drift.horizon=50")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no held-out episode of ")
    assert "has 102 latent frames" in lines[0] and "shorten the drift.horizon=50" in lines[0]
    assert "eval press_button" not in result.stderr  # no episode ran


def test_a_read_only_run_folder_is_one_line_before_any_episode_and_out_dir_works(
    trained_run, tmp_path
):
    from tests.test_train_run import small_file_system

    with small_file_system(tmp_path / "mount", "20m") as mount:
        shutil.copytree(trained_run, mount / "run", ignore=shutil.ignore_patterns("step_*"))
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        run_dir = mount / "run"
        result = evaluate(run_dir, "suites=[closed_loop]")
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {run_dir / 'eval'}")
        assert lines[0].endswith("pass out_dir=<a writable folder>")
        assert "eval press_button" not in result.stderr  # no episode ran
        elsewhere = tmp_path / "evaluation"
        result = evaluate(run_dir, "suites=[closed_loop]", f"out_dir={elsewhere}")
        assert result.returncode == 0, result.stderr[-3000:]
        assert (elsewhere / "eval.json").is_file()
        assert f"the run folder {run_dir} is read-only: the evaluation is " in result.stderr
