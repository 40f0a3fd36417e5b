"""The state track: scene states read and written in MuJoCo, the state tokenizer on real
episodes, and the whole reproduction pipeline on it (micro scale)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from envs.state import rotation_6d, rotation_angle
from envs.tasks import TASKS
from worldmodel.data.collection import CollectionJob, dataset_path, run_collection
from worldmodel.data.episodes import EpisodeFile
from worldmodel.tokenizer.factory import TokenizerConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_written_state_reads_back_and_moves_the_scene(task):
    """The state 40 steps into an expert episode, written into the episode's reset scene, is
    read back exactly and puts the objects where they were."""
    env = TabletopEnv(task, "randomized", cameras=())
    expert = ScriptedExpert(env)
    start, _ = env.reset(seed=3)
    expert.reset()
    for _ in range(40):
        later, *_ = env.step(expert.act())
    object_pose = env.data.qpos.copy()
    env.reset(seed=3)
    env.scene_state.write(env.model, env.data, later["state"])
    reread = env.scene_state.read(env.model, env.data, env.joint_state()[0])
    np.testing.assert_allclose(reread, later["state"], atol=1e-5)
    assert env.scene_state.dim == len(env.scene_state.names) == later["state"].shape[0]
    moved = np.abs(later["state"] - start["state"]).max()
    assert moved > 1e-3  # the arms moved, so writing the state changed the scene
    free = [env.model.jnt_qposadr[j] for j in range(env.model.njnt) if env.model.jnt_type[j] == 0]
    for address in free:  # free bodies sit where the episode had them
        np.testing.assert_allclose(
            env.data.qpos[address : address + 3], object_pose[address : address + 3], atol=1e-5
        )


def test_rotation_angle_of_a_known_yaw():
    yaw = np.array([np.cos(0.25), 0.0, 0.0, np.sin(0.25)])  # 0.5 rad about z
    angle = rotation_angle(rotation_6d(yaw), rotation_6d([1.0, 0.0, 0.0, 0.0]))
    assert angle == pytest.approx(0.5, abs=1e-9)


@pytest.fixture(scope="module")
def state_data(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("state_data")
    job = CollectionJob(
        task="place_cup_coaster",
        setting="randomized",
        episodes=4,
        cameras=(),
        image_size=(32, 32),
        data_dir=data_dir,
        eval_episodes=1,
    )
    run_collection(job)
    return dataset_path(data_dir, "place_cup_coaster", "randomized")


def test_state_tokenizer_round_trips_real_episodes(state_data):
    config = TokenizerConfig(name="state").fitted(state_data, train_episodes=3)
    tokenizer = config.build([], [32, 32])
    with EpisodeFile(state_data) as dataset:
        assert dataset.cameras == []
        names = dataset.state_names
        train = torch.cat([torch.from_numpy(dataset.state_at_fps(i, 50)) for i in range(3)])
        held_out = torch.from_numpy(dataset.state_at_fps(3, 12.5))
    assert list(tokenizer.channels) == names and tokenizer.latent_dim == len(names) == 14 + 9 + 3
    latents = tokenizer.encode_state(train)  # (T, 1, S)
    assert latents.shape == (len(train), 1, len(names))
    moving = train.std(0) > 1e-3  # channels with real spread are unit-variance latents
    np.testing.assert_allclose(latents[:, 0, moving].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(latents[:, 0, moving].std(0, correction=0), 1.0, atol=1e-4)
    for states in (train, held_out):
        decoded = tokenizer.decode_state(tokenizer.encode_state(states))
        np.testing.assert_allclose(decoded, states, atol=1e-5)
    with pytest.raises(ValueError, match="tokenizer.mean is fitted on the training episodes"):
        TokenizerConfig(name="state", mean=[0.0] * len(names)).fitted(state_data, 3)


def test_micro_reproduction_on_the_state_track(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.reproduce",
        "scale=micro_state",
        f"out_dir={tmp_path}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "REPORT.md").read_text()
    for section in ("## Paper claims", "## Closed-loop success", "## Convergence"):
        assert section in report
    evals = sorted(tmp_path.glob("runs/*/*/*/*/eval.json"))
    assert len(evals) == 4
    for path in evals:
        results = json.loads(path.read_text())
        assert {"model", "expert", "hold", "random"} <= set(results["closed_loop"])
        assert results["closed_loop"]["model"]["n"] == 2
        drift = results["drift"]["standard"]["curves"]["open_loop"]
        assert np.isfinite(drift["object_position_mm"]).all()
        assert np.isfinite(drift["joint_deg"]).all()
    assert not any(Path(tmp_path).glob("data/*.parts"))
