"""The train app end to end on a tiny run: collect, train, checkpoint, resume, DDP, wandb."""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.wandb_offline import history_rows
from worldmodel.command_line import override
from worldmodel.training.build import load_trained
from worldmodel.training.checkpoint import load_checkpoint
from worldmodel.training.run_logger import read_metrics

pytestmark = pytest.mark.slow  # real trainings, sweeps or killed processes, each for seconds

REPO = Path(__file__).resolve().parents[1]
TINY = ["task=press_button", "data=tiny", "train=tiny", "train.threads=1", "logger.progress=false"]


def train_cmd(data_dir: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.train",
        *TINY,
        f"data.dir={data_dir}",
        f"data.cache_dir={data_dir}/latents",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def without_timing(rows: list[dict]) -> list[dict]:
    """Metrics rows without the wall-clock dependent keys."""
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


def test_tiny_run_collects_trains_checkpoints_resumes_and_logs(tmp_path):
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    run(train_cmd(data_dir, run_dir, "data.auto_collect=true", "eval.every=10", "logger=offline"))
    assert (data_dir / "press_button_clean.h5").is_file()
    for name in ("last.pt", "step_0000010.pt", "step_0000020.pt", "config.yaml", "run.json"):
        assert (run_dir / name).is_file(), name
    rows = read_metrics(run_dir / "metrics.jsonl")
    train_rows = [r for r in rows if "train/loss/total" in r]
    assert [r["step"] for r in train_rows] == list(range(2, 21, 2))
    val_rows = [r for r in rows if "val/loss_video_h1" in r]
    assert [r["step"] for r in val_rows] == [0, 10, 20]
    for row in train_rows:
        for key in ("train/loss/video", "train/loss/action", "train/grad_norm", "train/lr"):
            assert key in row and row[key] == row[key]  # present and not NaN
        assert row["perf/samples"] == 8 * row["step"] and row["perf/flops"] > 0
    # wandb offline run: exists, and its history holds the same values as metrics.jsonl
    assert list(run_dir.glob("wandb/offline-run-*"))
    logged = history_rows(run_dir)
    assert len(logged) == len(rows)
    for mine, theirs in zip(rows, logged, strict=True):
        assert theirs["train/step"] == mine["step"]
        for key, value in mine.items():
            if isinstance(value, str) and value.endswith(".mp4"):  # media: the file's path
                assert theirs[f"{key}/_type"] == "video-file" and (run_dir / value).is_file()
            elif key != "step":
                assert theirs[key] == pytest.approx(value, rel=1e-12), key
    run_info = json.loads((run_dir / "run.json").read_text())
    assert set(run_info["versions"]) == {"python", "torch", "mujoco", "numpy", "gymnasium"}
    assert len(run_info["git"]["commit"]) in (40, 7) and isinstance(run_info["git"]["dirty"], bool)

    # the checkpoint loads with weights_only and rebuilds the model without the config tree
    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["step"] == 20 and payload["config"]["task"]["name"] == "press_button"
    trained = load_trained(run_dir / "last.pt")
    assert trained.model.config.actions_per_frame == 4  # 50 Hz / 12.5 fps
    state = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, trained.model.state_dict()[k]) for k, v in state.items())

    # the same command again: already finished, nothing changes; more steps: it continues
    run(train_cmd(data_dir, run_dir, "eval.every=10", "logger=offline"))
    assert read_metrics(run_dir / "metrics.jsonl") == rows
    result = run(train_cmd(data_dir, run_dir, "eval.every=10", "logger=offline", "train.steps=24"))
    assert "resuming" in result.stderr and "from step 20" in result.stderr
    more = read_metrics(run_dir / "metrics.jsonl")
    assert more[: len(rows)] == rows and more[-1]["step"] == 24
    # one offline run per folder: the resumed one replayed the history and replaced the others
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    assert [r["train/step"] for r in history_rows(run_dir)] == [r["step"] for r in more]


def test_checkpoints_are_files_of_their_own_and_killed_writes_are_cleaned(tmp_path, tiny_data_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stale = run_dir / ".last.tmp4242.pt"  # what a write killed mid-way leaves
    stale.touch()
    result = run(train_cmd(tiny_data_dir, run_dir, "logger=disabled", "train.steps=2"))
    assert not stale.exists() and f"removed {stale}, left by a killed write" in result.stderr
    last, kept = run_dir / "last.pt", run_dir / "step_0000002.pt"
    assert not last.samefile(kept) and last.read_bytes() == kept.read_bytes()
    last.write_bytes(last.read_bytes()[:100])  # damaging last.pt leaves the step file whole
    assert load_checkpoint(kept)["step"] == 2


def test_changed_config_is_not_resumed_into_the_same_folder(tmp_path, tiny_data_dir):
    run_dir = tmp_path / "run"
    run(train_cmd(tiny_data_dir, run_dir, "logger=disabled", "train.steps=2"))
    result = subprocess.run(
        train_cmd(tiny_data_dir, run_dir, "logger=disabled", "train.lr=0.01"),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "holds a run with a different config (train.lr)" in result.stderr
    assert load_checkpoint(run_dir / "last.pt")["step"] == 2  # kept as it was


def failed(cmd: list[str], **kwargs) -> str:
    """The one-line error of a command that must exit 2."""
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, **kwargs)
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr[-3000:]
    return line


def test_a_lost_last_checkpoint_is_never_a_silent_restart(tmp_path, tiny_data_dir):
    run_dir = tmp_path / "run"
    common = ["logger=offline", "train.steps=10", "train.checkpoint_every=5", "eval.every=5"]
    run(train_cmd(tiny_data_dir, run_dir, *common))
    rows = read_metrics(run_dir / "metrics.jsonl")
    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # damaged: the error names the kept copy
    error = failed(train_cmd(tiny_data_dir, run_dir, *common))
    assert f"{last}: not a readable checkpoint" in error
    hint = override("resume_from", run_dir / "step_0000010.pt")
    assert error.endswith(f"use another checkpoint or retrain; or continue from {hint}")
    last.unlink()  # deleted: refused as well, and the history stays
    error = failed(train_cmd(tiny_data_dir, run_dir, *common))
    assert "holds checkpoints (step_0000010.pt, ...) but no last.pt" in error
    assert read_metrics(run_dir / "metrics.jsonl") == rows
    assert {p.name for p in run_dir.glob("step_*.pt")} == {"step_0000005.pt", "step_0000010.pt"}

    # rewind to step 5: the later rows are dropped, and the retrained steps log the same values
    rewind = f"resume_from={run_dir / 'step_0000005.pt'}"
    result = run(train_cmd(tiny_data_dir, run_dir, *common, rewind))
    dropped = sum(row["step"] > 5 for row in rows)
    assert f"from step_0000005.pt (step 5): the {dropped} metrics rows logged after step 5" in (
        result.stderr
    )
    again = read_metrics(run_dir / "metrics.jsonl")
    assert without_timing(again) == without_timing(rows)
    assert load_checkpoint(last)["step"] == 10
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    assert [r["train/step"] for r in history_rows(run_dir)] == [r["step"] for r in again]

    # every checkpoint deleted: the history past the first one is refused too, and kept
    for checkpoint in run_dir.glob("*.pt"):
        checkpoint.unlink()
    error = failed(train_cmd(tiny_data_dir, run_dir, *common))
    assert "holds the history of a run (metrics.jsonl to step 10) but no checkpoint" in error
    assert read_metrics(run_dir / "metrics.jsonl") == again
    (run_dir / "metrics.jsonl").unlink()  # as the line says: then it trains again from step 0
    run(train_cmd(tiny_data_dir, run_dir, *common))
    assert without_timing(read_metrics(run_dir / "metrics.jsonl")) == without_timing(rows)


def test_the_advice_after_a_diverged_run_is_one_command_that_works(tmp_path, tiny_data_dir):
    # no hydra.run.dir: Hydra names the folders after the overrides, as a user's runs are
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    diverging = train_cmd(tiny_data_dir, tmp_path, "logger=disabled", "train.checkpoint_every=2")
    diverging = [arg for arg in diverging if not arg.startswith("hydra.run.dir")]
    error = subprocess.run(
        [*diverging, "train.lr=1"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert error.returncode == 2
    line = error.stderr.strip().splitlines()[-1]
    assert line.startswith("error: non-finite training values at step 5"), line
    source = next(tmp_path.glob("outputs/train/default/*"))
    good = source / "step_0000002.pt"  # step 4's weights made step 5 fail: not good
    assert f"the last good checkpoint is {good} (step 2)" in line
    advised = shlex.split(line.split("the same command with ")[1])  # as the shell reads it
    assert advised == ["train.lr=0.1", f'resume_from="{good}"']  # quoted for Hydra: "=", ","
    result = subprocess.run(
        [*diverging, *advised], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fork = next(p for p in tmp_path.glob("outputs/train/default/*") if p != source)
    assert f"forking {good} (step 2) into {fork}" in result.stderr
    history, source_rows = (
        read_metrics(fork / "metrics.jsonl"),
        read_metrics(source / "metrics.jsonl"),
    )
    assert history[: len([r for r in source_rows if r["step"] <= 2])] == [
        r for r in source_rows if r["step"] <= 2
    ]
    trained = [r for r in history if "train/loss/total" in r]
    assert trained[-1]["step"] == 20 and all(
        r["train/loss/total"] == r["train/loss/total"] for r in trained
    )
    assert load_checkpoint(fork / "last.pt")["forked_from"] == {"checkpoint": str(good), "step": 2}
    again = subprocess.run(
        [*diverging, *advised], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert again.returncode == 0 and f"resuming {fork} from step 20" in again.stderr


@contextlib.contextmanager
def small_file_system(folder: Path, size: str, *options: str):
    """A real tmpfs of ``size`` mounted on ``folder`` for the test (needs mount rights)."""
    folder.mkdir(parents=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode:
        pytest.skip(f"this machine does not allow a test file system: {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, tiny_data_dir):
    # a tiny run's checkpoint is ~4.6 MB: last.pt and step_2 fit in 12 MB, the next write not
    with small_file_system(tmp_path / "disk", "12m") as disk:
        run_dir = disk / "run"
        error = failed(
            train_cmd(tiny_data_dir, run_dir, "logger=disabled", "train.checkpoint_every=2")
        )
        assert error == (
            f"error: {run_dir / 'last.pt'}: No space left on device; free space on that disk or "
            "write elsewhere"
        )
        assert load_checkpoint(run_dir / "last.pt")["step"] == 2
        assert not list(run_dir.glob(".*.tmp*"))  # the failed write left nothing behind
        rows = read_metrics(run_dir / "metrics.jsonl")
        assert max(r["step"] for r in rows) == 4  # step 4 was logged before its checkpoint failed


def test_an_unwritable_output_folder_is_one_line_before_hydra_starts(tmp_path, tiny_data_dir):
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o500)
    with contextlib.ExitStack() as stack:
        if os.access(parent, os.W_OK):  # root ignores modes: a read-only file system then
            parent.chmod(0o700)
            parent.rmdir()
            stack.enter_context(small_file_system(parent, "1m", "ro"))
        run_dir = parent / "run"
        error = failed(train_cmd(tiny_data_dir, run_dir, "logger=disabled"))
        assert error == (
            f"error: {run_dir}: {parent} is not a writable folder; make it writable or choose "
            "another with hydra.run.dir=<dir>"
        )


def interrupt(data_dir: Path, run_dir: Path, common: list[str], ready, sig: int):
    """Train into ``run_dir`` in a child process, send it ``sig`` once ``ready()`` holds;
    returns its exit code and stderr."""
    process = subprocess.Popen(
        train_cmd(data_dir, run_dir, *common),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ready():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def resumed_matches_uninterrupted(data_dir: Path, tmp_path: Path, run_dir: Path, common) -> None:
    run(train_cmd(data_dir, run_dir, *common))
    run(train_cmd(data_dir, tmp_path / "whole", *common))
    whole = without_timing(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    assert without_timing(read_metrics(run_dir / "metrics.jsonl")) == whole
    assert [r["step"] for r in whole if "train/loss/total" in r][-1] == 60


def test_killed_and_resumed_run_logs_what_an_uninterrupted_run_logs(tmp_path, tiny_data_dir):
    common = ["logger=disabled", "train.steps=60", "train.checkpoint_every=5", "eval.every=10"]
    killed = tmp_path / "killed"
    # mid-run: the lines past the checkpoint are dropped at the resume
    interrupt(tiny_data_dir, killed, common, (killed / "step_0000015.pt").exists, signal.SIGKILL)
    assert load_checkpoint(killed / "last.pt")["step"] < 60
    resumed_matches_uninterrupted(tiny_data_dir, tmp_path, killed, common)


def test_sigterm_checkpoints_the_step_it_stopped_at_and_the_resume_matches(tmp_path, tiny_data_dir):
    common = ["logger=disabled", "train.steps=60", "train.checkpoint_every=25", "eval.every=10"]
    stopped = tmp_path / "stopped"
    metrics = stopped / "metrics.jsonl"

    def evaluated_step_30() -> bool:
        return metrics.exists() and '"step": 30' in metrics.read_text()

    # SIGTERM: what SLURM preemption and kill send
    code, stderr = interrupt(tiny_data_dir, stopped, common, evaluated_step_30, signal.SIGTERM)
    assert code == 3, stderr[-2000:]
    step = load_checkpoint(stopped / "last.pt")["step"]
    assert 30 <= step < 60  # the step in progress, not the last periodic checkpoint (25)
    assert stderr.strip().splitlines()[-1] == (
        f"stopped: stopped by SIGTERM after step {step} of 60: checkpoint "
        f"{stopped / 'last.pt'} written; run the same command again to resume"
    )
    resumed_matches_uninterrupted(tiny_data_dir, tmp_path, stopped, common)


def submitit_job_process(launcher: psutil.Process) -> psutil.Process | None:
    """The process running the submitit job under a multirun launched with submitit_local."""
    for child in launcher.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "submitit.core._submit" in " ".join(child.cmdline()):
                return child
    return None


def test_submitit_preemption_checkpoints_requeues_and_resumes(tmp_path, tiny_data_dir):
    common = ["logger=disabled", "train.steps=60", "train.checkpoint_every=25", "eval.every=10"]
    sweep = tmp_path / "sweep"
    cmd = train_cmd(tiny_data_dir, tmp_path / "unused", *common, "seed=0")
    cmd[3:3] = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    cmd.append(f"hydra.sweep.dir={sweep}")
    run_dir = sweep / "data=tiny,seed=0,task=press_button,train.checkpoint_every=25,train=tiny"
    metrics = run_dir / "metrics.jsonl"
    launcher = psutil.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (metrics.exists() and '"step": 30' in metrics.read_text()):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.02)
    job = submitit_job_process(launcher)
    job.send_signal(signal.SIGUSR2)  # what submitit sends a job before preemption or timeout
    output, _ = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, output[-3000:]
    log = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    stopped = re.search(
        r"stopped: stopped by SIGUSR2 after step (\d+) of 60: checkpoint (\S+) "
        r"written; handed to the job scheduler's handler",
        log,
    )
    assert stopped, log[-3000:]
    assert 30 <= int(stopped[1]) < 60 and stopped[2] == str(run_dir / "last.pt")
    assert "Requeued job" in log  # submitit restarted the job, which resumed from the checkpoint
    assert f"resuming {run_dir} from step {stopped[1]}" in log
    whole = tmp_path / "whole"
    run(train_cmd(tiny_data_dir, whole, *common, "seed=0"))
    expected = without_timing(read_metrics(whole / "metrics.jsonl"))
    assert without_timing(read_metrics(metrics)) == expected
    assert load_checkpoint(run_dir / "last.pt")["step"] == 60


def test_ddp_two_processes_match_one_process_with_the_same_global_batch(tmp_path, tiny_data_dir):
    common = ["logger=disabled", "train.steps=6", "eval.every=3"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd = train_cmd(tiny_data_dir, tmp_path / "ddp", *common)
    run([*torchrun, "--master_port=29617", *cmd[1:]], env={**os.environ, "OMP_NUM_THREADS": "1"})
    run(train_cmd(tiny_data_dir, tmp_path / "one", *common, "train.grad_accum=2"))
    ddp = without_timing(read_metrics(tmp_path / "ddp" / "metrics.jsonl"))
    one = without_timing(read_metrics(tmp_path / "one" / "metrics.jsonl"))
    assert [r["step"] for r in ddp] == [r["step"] for r in one] and len(ddp) >= 5
    for a, b in zip(ddp, one, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            expected = b[key] if isinstance(b[key], str) else pytest.approx(b[key], 1e-5, 1e-7)
            assert a[key] == expected, (a["step"], key)


@pytest.mark.parametrize(
    ("app", "stop"),
    [
        ("train", signal.SIGTERM),
        ("train", signal.SIGINT),
        ("collect", signal.SIGTERM),
        ("evaluate", signal.SIGTERM),
        ("reproduce", signal.SIGTERM),
    ],
)
def test_a_stop_signal_while_an_app_starts_is_one_line_and_exit_3(tmp_path, app, stop):
    """Sent while the app imports mujoco or torch (it exited 143 in silence on SIGTERM, with
    a traceback on SIGINT)."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"experiments.{app}", f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    maps, deadline = Path(f"/proc/{process.pid}/maps"), time.monotonic() + 60
    while not re.search("mujoco|torch", maps.read_text()):  # its heavy imports have begun,
        assert time.monotonic() < deadline and process.poll() is None  # after the handler's
        time.sleep(0.01)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3
    assert stderr == (
        f"stopped: stopped by {stop.name} while starting; run the same command again\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_truncated_dataset_names_the_runs_own_collect_command_which_works(
    tmp_path, tiny_data_dir
):
    """The file alone cannot tell its cameras once truncated; the run's line names the run's
    (it named none, so the collection made three 64x64 cameras that training refused again)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    dataset = data_dir / "press_button_clean.h5"
    source = (tiny_data_dir / dataset.name).read_bytes()
    dataset.write_bytes(source[: len(source) // 2])
    cmd = train_cmd(data_dir, tmp_path / "run", "logger=disabled", "train.steps=2")
    line = failed(cmd)
    assert line.startswith(f"error: {dataset}: not a readable HDF5 file, truncated or corrupt")
    fix = line.split(" - delete it and re-run ")[1]
    assert fix == (
        f"python -m experiments.collect task=press_button setting=clean episodes=6 "
        f"eval_episodes=4 cameras=[head] image_size=[32,32] data_dir={data_dir}"
    )
    dataset.unlink()
    run([sys.executable, *shlex.split(fix)[1:]], timeout=600)
    run(cmd, timeout=600)
