"""One process per run folder and per dataset: real processes hold the lock, get killed, and
real train and collect runs are refused while it is held."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_collect import job
from tests.test_train_run import REPO, train_cmd
from worldmodel.data.collection import run_collection
from worldmodel.folder_lock import RUN_LOCK, FolderInUse, exclusive

HOLD = (
    "import sys, time\n"
    "from worldmodel.folder_lock import exclusive\n"
    "with exclusive(sys.argv[1], 'the test holder'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


@pytest.fixture
def hold():
    """Start a live process that holds the lock at a path; killed at the end of the test."""
    started = []

    def start(path: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_held_lock_names_its_holder_and_a_killed_holder_leaves_none(tmp_path, hold):
    path = tmp_path / "run" / RUN_LOCK
    holder = hold(path)
    with pytest.raises(FolderInUse, match=rf"run x is in use by process {holder.pid} .*kill"):
        with exclusive(path, "run x"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with exclusive(path, "run x"):  # the OS released the dead holder's lock
        assert path.read_text().strip() == str(os.getpid())


@pytest.mark.slow
def test_a_second_training_in_a_run_folder_stops_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    live = {".hydra/config.yaml": "seed: 0\n", ".hydra/overrides.yaml": "- seed=0\n"}
    for name, text in live.items():  # the live run's record of itself
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(text)
    with exclusive(run_dir / RUN_LOCK, "the test"):
        result = subprocess.run(
            train_cmd(tmp_path / "data", run_dir, "seed=3", "train.lr=0.01"),
            capture_output=True,
            text=True,
            cwd=REPO,
        )
    assert result.returncode == 2  # a user error (experiments/cli.py)
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: run folder {run_dir} is in use by process {os.getpid()} (lock "
        f"{run_dir / RUN_LOCK}); wait for it to finish or stop it (kill {os.getpid()}), then "
        "run this again"
    )
    assert not (run_dir / "metrics.jsonl").exists() and not (tmp_path / "data").exists()
    assert {name: (run_dir / name).read_text() for name in live} == live  # Hydra's copy is off
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == sorted(
        Path(name).name for name in live
    )


def test_a_second_collection_of_a_dataset_is_refused(tmp_path):
    collect = job(tmp_path, episodes=1)
    lock = collect.out_path.parent / f".{collect.out_path.stem}.lock"
    with exclusive(lock, "the test"), pytest.raises(FolderInUse, match="dataset .* in use"):
        run_collection(collect)
    assert not collect.out_path.exists()
    assert run_collection(collect).out_path.exists()  # released: the next one collects
