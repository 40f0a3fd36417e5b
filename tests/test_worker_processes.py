"""Spawned workers end with their parent: a real parent killed with SIGKILL leaves no worker
running (collection's pool, the closed loop's pool and reproduce's runs share the helper)."""

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.test_collect import collect_cmd

pytestmark = pytest.mark.slow  # real trainings, sweeps or killed processes, each for seconds

REPO = Path(__file__).resolve().parents[1]


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a reaped or zombie process has ended)."""
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def kill_once_workers_run(cmd: list[str], workers: int) -> list[psutil.Process]:
    """Start ``cmd``, SIGKILL it once ``workers`` spawned workers run; returns its children."""
    parent = psutil.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while True:
        children = parent.children(recursive=True)
        spawned = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        if len(spawned) >= workers:
            break
        assert parent.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(2)  # the workers are inside their jobs
    parent.kill()
    parent.wait()
    return children


def test_collection_workers_exit_when_their_parent_is_killed(tmp_path):
    children = kill_once_workers_run(collect_cmd(tmp_path, "episodes=40", "workers=2"), 2)
    deadline = time.monotonic() + 10
    while running(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(children), [c.cmdline() for c in running(children)]


def test_reproduce_workers_exit_when_their_parent_is_killed(tmp_path):
    cmd = [sys.executable, "-m", "experiments.reproduce", "scale=micro", f"out_dir={tmp_path}"]
    children = kill_once_workers_run([*cmd, "jobs=2"], 2)
    deadline = time.monotonic() + 10
    while running(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(children), [c.cmdline() for c in running(children)]
