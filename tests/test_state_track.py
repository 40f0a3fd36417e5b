"""The state track: scene states read and written in MuJoCo, the state tokenizer on real
episodes, videos of imagined states from a briefly trained run, and the whole reproduction
pipeline on it (micro scale)."""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from envs.scene import VIEW_SIZE
from envs.state import rotation_6d, rotation_angle
from envs.tasks import TASKS
from tests.damage import overwrite_middle_of
from worldmodel.data.collection import CollectionJob, dataset_path, run_collection
from worldmodel.data.episodes import EpisodeFile
from worldmodel.evaluation.closed_loop import eval_seeds, evaluate_closed_loop
from worldmodel.evaluation.policies import ExpertPolicy
from worldmodel.evaluation.run_eval import (
    closed_loop_episode_video,
    model_policy_factory,
    run_closed_loop,
    state_views,
    video_twin,
)
from worldmodel.evaluation.videos import HEADER_PX
from worldmodel.tokenizer.factory import TokenizerConfig
from worldmodel.training.build import load_trained

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


def test_a_state_written_into_a_twin_renders_the_recorded_view_exactly(state_data):
    """The view a recorded episode keeps is what its scene state renders in a twin env: the
    state track's imagined panel is drawn the same way, so real and imagined compare."""
    task, seed, steps = "place_cup_coaster", eval_seeds(state_data)[0], 60
    kwargs = dict(task=task, setting="randomized", seeds=[seed], max_steps=steps, cameras=())
    (recorded,) = evaluate_closed_loop(ExpertPolicy, record_seeds=[seed], **kwargs).episodes
    (plain,) = evaluate_closed_loop(ExpertPolicy, **kwargs).episodes
    assert (recorded.steps, recorded.progress) == (plain.steps, plain.progress)  # untouched
    env = TabletopEnv(task, "randomized", cameras=())
    expert = ScriptedExpert(env)
    states = [env.reset(seed=seed)[0]["state"]]
    expert.reset()
    states += [env.step(expert.act())[0]["state"] for _ in range(steps)]
    shown = slice(0, steps + 1, 15)
    views = state_views(TabletopEnv(task, "randomized", cameras=()), seed, np.stack(states)[shown])
    np.testing.assert_array_equal(views, recorded.view[shown])
    assert np.abs(np.diff(views.astype(int), axis=0)).max() > 50  # the arms moved


@pytest.fixture(scope="module")
def state_run(state_data, tmp_path_factory):
    """A tiny state-track run trained for a few steps on ``state_data`` (rollout videos on)."""
    run_dir = tmp_path_factory.mktemp("state_run")
    data_dir = state_data.parent
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "task=place_cup_coaster",
        "task.setting=randomized",
        "model=tiny",
        "data=state",
        "data.episodes=4",
        "data.val_episodes=1",
        "data.eval_episodes=1",
        "tokenizer=state",
        "train=tiny",
        "train.steps=10",
        "train.threads=1",
        "heads=single_step",
        "eval.every=10",
        "eval.video_steps=2",
        "logger=disabled",
        "logger.progress=false",
        f"data.dir={data_dir}",
        f"data.cache_dir={data_dir}/latents",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def read_video(path: Path) -> np.ndarray:
    return np.stack(imageio.mimread(path, memtest=False))  # (T, H, W, 3)


def test_the_state_track_writes_an_open_loop_rollout_video(state_run):
    video = read_video(state_run / "videos" / "rollout_step_0000010.mp4")
    assert video.shape[1:] == (HEADER_PX + 3 * VIEW_SIZE[0], VIEW_SIZE[1], 3)  # real/imagined/diff
    real, imagined = (video[:, HEADER_PX + i * VIEW_SIZE[0] :][:, : VIEW_SIZE[0]] for i in (0, 1))
    assert np.abs(real[0].astype(int) - imagined[0]).mean() < 2  # frame 0 is context
    assert np.abs(real[-1].astype(int) - imagined[-1]).mean() > 2  # the model imagined the end


def test_a_closed_loop_video_of_imagined_states(state_run, tmp_path, one_torch_thread):
    trained = load_trained(state_run / "last.pt")
    build, seed = trained.build, eval_seeds(trained.build.dataset)[0]
    factory = model_policy_factory(
        trained.model, trained.tokenizer, build.latent_fps, "standard", 2, 2
    )
    A = trained.model.config.actions_per_frame  # K = 2: chunk 0 runs A steps, later ones 2A
    steps = A + 3 * 2 * A  # 4 chunks
    result = run_closed_loop(
        factory, build, [seed], needs_images=True, max_steps=steps, record_seeds=[seed]
    )
    (episode,) = result.episodes
    assert episode.frames is None and episode.chunk_starts == [0, A, 3 * A, 5 * A]
    assert episode.imagined.shape == (8, 1, trained.tokenizer.latent_dim)
    assert episode.imagined_steps.tolist() == [0, A, *range(2 * A, steps + 1, A)]
    twin = video_twin(trained.tokenizer, build.task, build.setting)
    path = closed_loop_episode_video(episode, trained.tokenizer, tmp_path / "cl.mp4", twin)
    video = read_video(path)
    assert video.shape == (steps + 1 + 50, HEADER_PX + VIEW_SIZE[0], 2 * VIEW_SIZE[1], 3)
    panels = video[: steps + 1, HEADER_PX + 40 : -40].astype(int)  # below the labels
    real, imagined = panels[:, :, 8 : VIEW_SIZE[1] - 8], panels[:, :, VIEW_SIZE[1] + 8 : -8]
    assert np.abs(real[: A - 1] - imagined[: A - 1]).mean() < 2  # frame 0 is observed
    assert np.abs(real[-1] - imagined[-1]).mean() > 2  # imagined states differ from real ones
    assert imagined.std() > 20 and imagined[-1].std() > 20  # a rendered scene, not blank


def test_damaged_states_stop_training_before_the_optimizer_and_the_fix_works(
    state_data, state_run, tmp_path
):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    damaged = data_dir / state_data.name
    shutil.copy(state_data, damaged)
    overwrite_middle_of(damaged, "episodes/ep_000002/state")
    run_dir = tmp_path / "run"
    config = (state_run / ".hydra" / "overrides.yaml").read_text().splitlines()
    cmd = [sys.executable, "-m", "experiments.train"]
    cmd += [o[2:] for o in config if o.startswith("- ") and "dir=" not in o]
    cmd += [
        f"data.dir={data_dir}",
        f"data.cache_dir={data_dir}/latents",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {damaged}: /episodes/ep_000002 has "), line
    assert not (run_dir / "metrics.jsonl").exists()  # no step, no optimizer
    fix = line.split(" - delete it and re-run ")[1]
    # the run's own collection: its cameras (none), size and episodes, so training takes it
    assert "cameras=[] image_size=[32,32]" in fix and "episodes=4 eval_episodes=1" in fix
    damaged.unlink()
    python, *words = shlex.split(fix)  # "python", as in the user's activated environment
    assert python == "python"
    collected = subprocess.run(
        [sys.executable, *words], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert collected.returncode == 0, collected.stderr[-3000:]
    trained = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]


@pytest.mark.slow
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
