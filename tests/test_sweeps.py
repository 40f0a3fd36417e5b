"""Sweeps with ``-m`` on the basic, joblib and submitit (local) launchers; a failed job does not
stop the others."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.cli import CONF_DIR
from tests.test_train_config import compose_train

pytestmark = pytest.mark.slow  # real trainings, sweeps or killed processes, each for seconds

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib"]}
LAUNCHERS["submitit_local"] = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_sweep_runs_every_job_and_a_failing_one_does_not_stop_the_others(
    launcher, tiny_data_dir, tmp_path
):
    sweep_dir = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "-m",
        "data=tiny",
        "train=tiny",
        "train.steps=2",
        "train.threads=1",
        "logger=disabled",
        "logger.progress=false",
        "eval.rollout_video=false",
        f"data.dir={tiny_data_dir}",
        f"data.cache_dir={tiny_data_dir}/latents",
        "task=handover_block,press_button",  # no handover_block dataset: that job fails
        f"hydra.sweep.dir={sweep_dir}",
        *LAUNCHERS[launcher],
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode != 0  # Hydra reports the failed job
    assert "handover_block_clean.h5: not found" in result.stderr + result.stdout + "".join(
        p.read_text() for p in sweep_dir.rglob("*.err")
    )
    finished = sorted(p.parent.name for p in sweep_dir.glob("*/last.pt"))
    assert finished == ["data=tiny,task=press_button,train=tiny"]


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*")))
def test_committed_sweeps_compose_at_every_value_of_every_axis(experiment):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    axes = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    values = {axis.key_or_group: list(axis.sweep_string_iterator()) for axis in axes}
    assert len(values["seed"]) >= 2, "a sweep runs several seeds"
    for key, options in values.items():
        for option in options:
            config = compose_train(f"experiment={experiment}", f"{key}={option}")
            assert config.name == experiment
