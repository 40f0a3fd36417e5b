"""The collect app end to end: real MuJoCo rendering, real HDF5 files, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from envs.env import TabletopEnv
from experiments.cli import EXIT_INTERRUPTED
from experiments.config.base import ConfigError
from experiments.config.collect import CollectConfig
from experiments.config.registry import register_configs
from worldmodel.data.collection import CollectionJob, run_collection
from worldmodel.data.episodes import EpisodeFile, finished_parts

CONF = str(Path(__file__).resolve().parents[1] / "conf" / "apps")
TASK = "pick_dual_cylinders"


def collect_cmd(data_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.collect",
        f"task={TASK}",
        f"data_dir={data_dir}",
        "image_size=[32,32]",
        "cameras=[head,right_wrist]",
        "eval_episodes=2",
        f"hydra.run.dir={data_dir}/hydra",
        *overrides,
    ]


def job(data_dir: Path, episodes: int, workers: int = 1) -> CollectionJob:
    return CollectionJob(
        task=TASK,
        setting="clean",
        episodes=episodes,
        cameras=("head",),
        image_size=(32, 32),
        data_dir=data_dir,
        eval_episodes=2,
        workers=workers,
    )


def test_collected_episodes_replay_exactly(tmp_path):
    result = run_collection(job(tmp_path, episodes=2))
    with EpisodeFile(result.out_path) as dataset:
        assert list(dataset.seeds) == [0, 1]
        assert list(dataset.attrs["eval_seeds"]) == [100000, 100001]
        record = dataset.episode(1)
    assert record.success and record.first_success_step == record.length
    assert record.images["head"].shape == (record.length + 1, 32, 32, 3)
    env = TabletopEnv(TASK, "clean", cameras=("head",), image_size=(32, 32))
    observation, _ = env.reset(seed=record.seed)
    np.testing.assert_array_equal(observation["images"]["head"], record.images["head"][0])
    for t, action in enumerate(record.action):
        observation, *_ = env.step(action)
        np.testing.assert_array_equal(env.data.qpos, record.qpos[t + 1])
    np.testing.assert_array_equal(observation["images"]["head"], record.images["head"][-1])


@pytest.mark.slow
def test_two_workers_collect_the_same_dataset_as_one(tmp_path):
    one = run_collection(job(tmp_path / "one", episodes=3, workers=1))
    two = run_collection(job(tmp_path / "two", episodes=3, workers=2))
    assert one.seeds == two.seeds
    with EpisodeFile(one.out_path) as a, EpisodeFile(two.out_path) as b:
        for i in range(3):
            np.testing.assert_array_equal(a.episode(i).images["head"], b.episode(i).images["head"])


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_kill_then_resume_keeps_finished_episodes(tmp_path, stop):
    """SIGKILL leaves no word; SIGTERM and Ctrl-C stop with one line and exit 3."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        collect_cmd(tmp_path, "episodes=6"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    parts_dir = tmp_path / f"{TASK}_clean.parts"
    deadline = time.time() + 120
    while len(finished_parts(parts_dir)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(stop)
    _, stderr = process.communicate()
    if stop != signal.SIGKILL:
        assert process.returncode == EXIT_INTERRUPTED, stderr[-3000:]
        assert stderr.strip().splitlines()[-1] == (
            f"stopped: stopped by {stop.name}: every file written so far is complete; run the "
            "same command again to continue"
        )
    done_before = finished_parts(parts_dir)
    assert len(done_before) >= 2, "collection produced no part before the kill"
    assert not (tmp_path / f"{TASK}_clean.h5").exists()
    finished = subprocess.run(
        collect_cmd(tmp_path, "episodes=6"), capture_output=True, text=True, check=False
    )
    assert finished.returncode == 0, finished.stderr
    resumed = len(done_before)
    assert f"6 episodes ({6 - resumed} new, {resumed} resumed)" in finished.stdout
    with EpisodeFile(tmp_path / f"{TASK}_clean.h5") as dataset:
        assert list(dataset.seeds) == [0, 1, 2, 3, 4, 5]
        assert all(dataset.episode(i).success for i in range(6))
    assert not parts_dir.exists()


def test_corrupt_dataset_gives_one_line_error_and_is_kept(tmp_path):
    target = tmp_path / f"{TASK}_clean.h5"
    target.write_bytes(b"\x89HDF\r\n garbage, truncated")
    result = subprocess.run(
        collect_cmd(tmp_path, "episodes=1"), capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(target) in lines[0]
    assert target.read_bytes() == b"\x89HDF\r\n garbage, truncated"


def compose_collect(*overrides: str) -> CollectConfig:
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="collect", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


def test_collect_config_composes_and_validates():
    config = compose_collect("task=stack_blocks_two", "setting=randomized", "workers=2")
    assert (config.task, config.setting, config.workers) == ("stack_blocks_two", "randomized", 2)
    for override, message in [
        ("task=fold_towel", "task='fold_towel' is not valid"),
        ("setting=dusty", "setting='dusty'"),
        ("cameras=[top]", "cameras='top'"),
        ("episodes=0", "episodes=0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            compose_collect(override)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("epsiodes=5", "epsiodes is not a config key of CollectConfig"),
        ("+epsiodes=5", "+epsiodes=5: epsiodes is not a config key of CollectConfig"),
        ("task=foo", "task='foo' is not valid; choose one of: handover_block"),
    ],
)
def test_a_bad_collect_command_gives_one_line_and_leaves_nothing(tmp_path, override, expected):
    """Run from an empty folder: one line, status 2 and no outputs/collect/... folder (Hydra's
    6-line error advised +epsiodes=5, which then collected the default 50 episodes)."""
    result = subprocess.run(
        [sys.executable, "-m", "experiments.collect", override],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "culprit"),
    [("128k", "press_button_clean.parts/ep_000000.h5"), ("320k", "press_button_clean.h5")],
)
def test_a_full_disk_stops_collection_with_one_line_and_keeps_finished_parts(
    tmp_path, size, culprit
):
    """An episode (~210 KB at 32x32) fills 128k while its part file is written; 320k holds
    the part but not the consolidated copy beside it."""
    from tests.test_train_run import small_file_system

    with small_file_system(tmp_path / "disk", size) as disk:
        cmd = [sys.executable, "-m", "experiments.collect", "task=press_button"]
        cmd += ["episodes=1", "eval_episodes=0", "cameras=[head]", "image_size=[32,32]"]
        cmd += [f"data_dir={disk}", f"hydra.run.dir={tmp_path}/hydra"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2
        line = result.stderr.strip().splitlines()[-1]
        assert "Traceback" not in result.stderr  # the line is whole: its start and its end
        assert line.startswith(f"error: {disk / culprit}: No space left on device"), line
        assert line.endswith("; free space on that disk or write elsewhere")
        parts = finished_parts(disk / "press_button_clean.parts")
        assert len(parts) == (culprit.endswith("clean.h5"))  # a finished part is kept
        assert not [p for p in disk.rglob("*") if ".tmp" in p.name]
