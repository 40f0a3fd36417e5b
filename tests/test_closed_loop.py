"""Closed-loop evaluation with the real env: the expert through the policy interface matches
its own success, the floors fail, 1 and 2 workers agree seed by seed, eval seeds from a file."""

import functools
import json

import numpy as np
import pytest

from envs.env import TabletopEnv
from envs.expert import ScriptedExpert
from worldmodel.data.collection import CollectionJob, expert_solves, run_collection
from worldmodel.evaluation.closed_loop import eval_seeds, evaluate_closed_loop
from worldmodel.evaluation.policies import ExpertPolicy, HoldPolicy, RandomPolicy
from worldmodel.evaluation.run_eval import closed_loop_metrics

TASK = "press_button"  # the shortest expert episodes (140 steps)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A collected press_button file: 1 episode, 3 expert-checked eval seeds."""
    job = CollectionJob(
        task=TASK,
        setting="clean",
        episodes=1,
        cameras=("head",),
        image_size=(16, 16),
        data_dir=tmp_path_factory.mktemp("data"),
        eval_episodes=3,
    )
    return run_collection(job).out_path


@pytest.fixture(scope="module")
def seeds(dataset):
    return eval_seeds(dataset)


def expert_first_success(seed: int) -> int:
    """The scripted expert's own first success step on ``seed`` (run outside the interface)."""
    env = TabletopEnv(TASK, "clean", cameras=())
    assert expert_solves(env, ScriptedExpert(env), seed)
    return env.first_success_step


def outcomes(result) -> list[tuple]:
    return [(e.seed, e.success, e.first_success_step, e.steps) for e in result.episodes]


def test_eval_seeds_are_the_dataset_attrs(seeds):
    assert seeds == [100000, 100001, 100002]


def test_expert_policy_matches_the_expert(seeds):
    result = evaluate_closed_loop(ExpertPolicy, TASK, "clean", seeds[::-1], cameras=())
    assert [e.seed for e in result.episodes] == seeds  # sorted by seed
    assert result.success_rate == 1.0 and result.n == 3
    for episode in result.episodes:
        assert episode.first_success_step == expert_first_success(episode.seed)
        assert episode.steps == episode.chunks == episode.first_success_step
        assert episode.progress == 1.0
    low, high = result.wilson
    assert 0.3 < low < 1.0 and high == 1.0
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["successes"] == 3 and len(summary["episodes"]) == 3
    assert summary["mean_progress"] == 1.0 and summary["episodes"][0]["progress"] == 1.0
    assert closed_loop_metrics(result)["eval/progress"] == 1.0
    assert summary["steps_per_second"] > 0


def test_expert_in_chunks_still_succeeds(seeds):
    result = evaluate_closed_loop(
        functools.partial(ExpertPolicy, chunk=5), TASK, "clean", seeds[:1], cameras=()
    )
    (episode,) = result.episodes
    assert episode.success and episode.chunks == -(-episode.steps // 5)


def test_hold_policy_fails(seeds):
    result = evaluate_closed_loop(HoldPolicy, TASK, "clean", seeds[:2], cameras=())
    assert result.success_rate == 0.0 and result.wilson[0] == 0.0
    assert all(e.steps == 250 and e.first_success_step == -1 for e in result.episodes)
    assert all(0.0 <= e.progress < 1.0 for e in result.episodes) and result.mean_progress < 1.0


@pytest.mark.parametrize(
    "factory", [ExpertPolicy, functools.partial(RandomPolicy, seed=7)], ids=["expert", "random"]
)
def test_one_and_two_workers_agree(seeds, factory):
    kwargs = dict(task=TASK, setting="clean", seeds=seeds, max_steps=150, cameras=())
    one = evaluate_closed_loop(factory, workers=1, **kwargs)
    two = evaluate_closed_loop(factory, workers=2, **kwargs)
    assert outcomes(one) == outcomes(two)


class ExpertOnOddSeeds(ExpertPolicy):
    """The expert on odd seeds, holding still on even ones: episodes of different lengths."""

    def reset(self, obs: dict, seed: int) -> None:
        super().reset(obs, seed)
        self.acts = seed % 2 == 1

    def act(self, obs: dict) -> np.ndarray:
        return super().act(obs) if self.acts else HoldPolicy(chunk=self.chunk).act(obs)


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_give_the_per_seed_outcomes_of_one_episode_at_a_time(seeds, workers):
    """Episodes of one batch end at different steps; each is its own."""
    kwargs = dict(task=TASK, setting="clean", seeds=seeds, max_steps=200, cameras=())
    alone = evaluate_closed_loop(ExpertOnOddSeeds, **kwargs)
    batched = evaluate_closed_loop(ExpertOnOddSeeds, workers=workers, batch_size=2, **kwargs)
    assert outcomes(batched) == outcomes(alone)
    assert [e.steps for e in alone.episodes] == [200, 140, 200]
    with pytest.raises(ValueError, match="batch_size=0 is not valid"):
        evaluate_closed_loop(ExpertPolicy, batch_size=0, **kwargs)


def test_random_policy_depends_on_episode_seed_only(seeds):
    kwargs = dict(task=TASK, setting="clean", max_steps=20, cameras=())
    factory = functools.partial(RandomPolicy, seed=7)
    both = evaluate_closed_loop(factory, seeds=seeds[:2], **kwargs)
    alone = evaluate_closed_loop(factory, seeds=seeds[1:2], **kwargs)
    assert outcomes(both)[1] == outcomes(alone)[0]
    env = TabletopEnv(TASK, "clean", cameras=())
    policy = RandomPolicy(env, seed=7)
    policy.reset({}, seeds[0])
    first = policy.act({})
    policy.reset({}, seeds[0])
    assert (policy.act({}) == first).all()
    assert env.action_space.contains(first[0])


def test_recorded_frames(seeds):
    result = evaluate_closed_loop(
        HoldPolicy,
        TASK,
        "clean",
        seeds[:2],
        max_steps=10,
        cameras=("head", "left_wrist"),
        image_size=(16, 16),
        record_seeds=seeds[:1],
    )
    recorded, plain = result.episodes
    assert recorded.frames.shape == (11, 16, 32, 3) and plain.frames is None
    assert recorded.view.shape == (11, 256, 256, 3) and plain.view is None
    assert recorded.view.std() > 10  # the viewing camera sees the scene
    assert recorded.chunk_starts == list(range(10)) and plain.chunk_starts is None
    assert recorded.imagined is None and recorded.imagined_steps is None  # no imagination
    assert set(recorded.to_dict()) == set(plain.to_dict())  # recordings stay out of eval.json


def test_recording_without_cameras_renders_the_view_only(seeds):
    """The state track: no camera input, the viewing camera at the size asked for."""
    result = evaluate_closed_loop(
        functools.partial(ExpertPolicy, chunk=4),
        TASK,
        "clean",
        seeds[:1],
        max_steps=10,
        cameras=(),
        record_seeds=seeds[:1],
        video_size=(96, 128),
    )
    (episode,) = result.episodes
    assert episode.frames is None and episode.view.shape == (11, 96, 128, 3)
    assert episode.chunk_starts == [0, 4, 8]
    assert np.abs(np.diff(episode.view.astype(int), axis=0)).max() > 0  # the arms move


def test_bad_input_names_the_culprit(seeds):
    with pytest.raises(ValueError, match=r"record_seeds \[7\] are not in seeds"):
        evaluate_closed_loop(HoldPolicy, TASK, "clean", seeds, cameras=(), record_seeds=[7])
    with pytest.raises(ValueError, match="policy_factory cannot be pickled"):
        evaluate_closed_loop(lambda env: HoldPolicy(env), TASK, "clean", seeds, workers=2)
    with pytest.raises(ValueError, match=r"policy.act returned shape \(5, 7\)"):
        evaluate_closed_loop(BadShapePolicy, TASK, "clean", seeds[:1], cameras=())
    with pytest.raises(ValueError, match="seeds="):
        evaluate_closed_loop(HoldPolicy, TASK, "clean", [1, 1], cameras=())


class BadShapePolicy(HoldPolicy):
    def act(self, obs):
        return super().act(obs)[:, :7].repeat(5, axis=0)
