"""Pieces of the training harness against hand-computed values, and divergence handling."""

import json
import os

import pytest
import torch

from tests.tiny_models import tiny_config
from worldmodel.heads import WorldModelWithHeads
from worldmodel.model.actions import MIN_SCALE, ActionCodec, aligned_actions, start_joint_positions
from worldmodel.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from worldmodel.training.config import TrainLoopConfig
from worldmodel.training.distributed import DistInfo
from worldmodel.training.optim import lr_factor
from worldmodel.training.resume import good_checkpoint
from worldmodel.training.run_logger import RunLogger, read_metrics, truncate_metrics, wandb_run_id
from worldmodel.training.trainer import Trainer, TrainingError, step_generator
from worldmodel.training.windows import (
    EpisodeLatents,
    WindowSet,
    fit_action_codec,
    relative_action_mask,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def episode(frames: int, offset: float, N: int = 4, C: int = 4, A: int = 2, d: int = 3):
    """Frame f of the episode has every latent value ``offset + f``, every action leading into
    it ``f`` (frame 0: the padded token) and joint positions ``1000 + offset + f``; built with
    the helpers the dataset loader uses."""
    f = torch.arange(frames, dtype=torch.float32)
    video = (offset + f)[:, None, None].expand(frames, N, C).clone()
    executed = f[1:, None, None].expand(frames - 1, A, d).clone()  # between frames t and t+1
    actions, action_valid = aligned_actions(executed)  # (frames, A, d), (frames,)
    joint_pos = (1000 + offset + f)[:, None].expand(frames, d).clone()
    return EpisodeLatents(
        int(offset), video, actions, action_valid, start_joint_positions(joint_pos)
    )


def test_episode_alignment_and_window_batch_on_a_hand_made_episode():
    """Token f holds the actions executed between frames f - 1 and f, its actions start from
    the joint positions of frame f - 1; frame 0 is a padded token."""
    A, d = 2, 3
    executed = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]], [[5.0], [6.0]]]).expand(3, A, d)
    joint_pos = torch.tensor([[10.0], [20.0], [30.0], [40.0]]).expand(4, d)  # frames 0..3
    actions, action_valid = aligned_actions(executed)
    start = start_joint_positions(joint_pos)
    assert actions[:, :, 0].tolist() == [[0, 0], [1, 2], [3, 4], [5, 6]]
    assert action_valid.tolist() == [False, True, True, True]
    assert start[:, 0].tolist() == [10, 10, 20, 30]  # frame 0: its own joint positions
    video = torch.arange(4.0)[:, None, None].expand(4, 1, 1)
    windows = WindowSet(
        [EpisodeLatents(0, video, actions, action_valid, start)], window_frames=4, chunk=2
    )
    assert len(windows) == 3  # starts 0, 1, 2
    batch = windows.batch(torch.tensor([0, 2]))
    assert set(batch) == {"video", "actions", "valid", "action_valid", "start_joint_pos"}
    assert batch["video"][:, :, 0, 0].tolist() == [[0, 1, 2, 3], [2, 3, 3, 3]]
    assert batch["valid"].tolist() == [[True] * 4, [True, True, False, False]]
    # the window from frame 0 holds the padded token; past the end there is no real token
    assert batch["action_valid"].tolist() == [[False, True, True, True], [True, True, False, False]]
    assert batch["actions"][:, :, :, 0].tolist() == [
        [[0, 0], [1, 2], [3, 4], [5, 6]],
        [[3, 4], [5, 6], [0, 0], [0, 0]],
    ]
    assert batch["start_joint_pos"][:, :, 0].tolist() == [[10, 10, 20, 30], [20, 30, 30, 30]]
    assert batch["actions"].shape == (2, 4, A, d) and batch["start_joint_pos"].shape == (2, 4, d)


def test_windows_start_every_frame_with_a_chunk_after_it_and_pad_past_the_end():
    windows = WindowSet([episode(5, 0.0), episode(3, 100.0)], window_frames=4, chunk=2)
    # episode 0: starts 0..3 (5 - 2 + 1 = 4), episode 1: starts 0..1 (3 - 2 + 1 = 2)
    assert len(windows) == 6
    batch = windows.batch(torch.tensor([3, 5]))  # ep 0 from frame 3; ep 1 from frame 1
    assert batch["valid"].tolist() == [[True, True, False, False], [True, True, False, False]]
    assert batch["action_valid"].tolist() == batch["valid"].tolist()
    # padding repeats the last frame (4 and 102) and zeroes the actions
    assert batch["video"][:, :, 0, 0].tolist() == [[3, 4, 4, 4], [101, 102, 102, 102]]
    assert batch["actions"][:, :, 0, 0].tolist() == [[3, 4, 0, 0], [1, 2, 0, 0]]
    # the joint positions of the frame before (1000 + offset + f - 1), the last one repeated
    assert batch["start_joint_pos"][:, :, 0].tolist() == [
        [1002, 1003, 1003, 1003],
        [1100, 1101, 1101, 1101],
    ]
    first = windows.batch(torch.tensor([0, 4]))  # both from an episode's frame 0
    assert first["action_valid"].tolist() == [
        [False, True, True, True],
        [False, True, True, False],  # episode 1 has 3 frames
    ]
    assert windows.spread(3).tolist() == [0, 2, 5]  # linspace(0, 5, 3) = 0, 2.5, 5 -> rounded
    ids = windows.sample(100, step_generator(0, 1, 0))
    assert torch.equal(ids, windows.sample(100, step_generator(0, 1, 0)))
    assert 0 <= int(ids.min()) and int(ids.max()) < 6


def test_relative_action_mask_keeps_the_grippers_absolute():
    assert relative_action_mask(14).tolist() == [d not in (6, 13) for d in range(14)]
    assert relative_action_mask(3).all()  # no gripper dims among 3


def codec_episode(tokens: range, e: int, d: int = 14) -> EpisodeLatents:
    """An episode of ``len(tokens) + 1`` frames (A = 1) whose real token f holds value
    j = tokens[f - 1]: on the relative dims j above its chunk's reference (K = 2), on dim 5
    the reference itself, on the grippers 2 j (absolute). The references are large and differ
    frame by frame, so a wrong reference or a relative gripper would move every statistic."""
    M = len(tokens) + 1
    start = 1000.0 * torch.arange(M)[:, None].expand(M, d) + 7.0 + e  # (M, d)
    chunk_reference = start[torch.arange(M) // 2 * 2]  # (M, d) the chunk's first frame
    j = torch.tensor([0.0, *tokens])[:, None].expand(M, d)
    actions = j + chunk_reference
    actions[:, 5] = chunk_reference[:, 5]
    actions[:, [6, 13]] = 2 * j[:, [6, 13]]
    actions[0] = 0.0  # frame 0's padded token
    valid = torch.ones(M, dtype=torch.bool)
    valid[0] = False
    return EpisodeLatents(e, torch.zeros(M, 1, 1), actions[:, None], valid, start)


def test_fit_action_codec_hand_values():
    # 101 real tokens over two episodes: j = 0..100
    episodes = [codec_episode(range(0, 51), 0), codec_episode(range(51, 101), 1)]
    codec = ActionCodec(14)  # relative, quantile
    fit_action_codec(codec, episodes, K=2)
    assert torch.equal(codec.relative, relative_action_mask(14))
    # quantiles of 0..100 (linear interpolation at positions 1 and 99): q01 = 1, q99 = 99
    offset, scale = torch.full((14,), 50.0), torch.full((14,), 49.0)
    offset[5], scale[5] = 0.0, MIN_SCALE  # a dim that never moves relative to the reference
    offset[[6, 13]], scale[[6, 13]] = 100.0, 98.0  # grippers: 0..200 -> q01 2, q99 198
    torch.testing.assert_close(codec.offset, offset)
    torch.testing.assert_close(codec.scale, scale)
    # episode 0's frame 2 (j = 1, the first frame of chunk 1, so its own start is the chunk's
    # reference): q01 -> -1 on every moving dim, (1 - 50) / 49 and gripper (2 - 100) / 98
    e = episodes[0]
    units = codec.encode(e.actions[None, 2:3], e.start_joint_pos[None, 2:3])  # (1, 1, 1, 14)
    expected = torch.full((14,), -1.0)
    expected[5] = 0.0
    torch.testing.assert_close(units[0, 0, 0], expected)

    zscore = ActionCodec(14, norm="zscore")
    fit_action_codec(zscore, episodes, K=2)
    std = (101 * 102 / 12) ** 0.5  # sample std of 0..100
    mean, spread = torch.full((14,), 50.0), torch.full((14,), std)
    mean[5], spread[5] = 0.0, MIN_SCALE
    mean[[6, 13]], spread[[6, 13]] = 100.0, 2 * std
    torch.testing.assert_close(zscore.offset, mean)
    torch.testing.assert_close(zscore.scale, spread)


def test_lr_warms_up_linearly_then_decays_to_the_floor():
    config = TrainLoopConfig(steps=12, warmup_steps=2, min_lr_ratio=0.1)
    assert lr_factor(0, config) == 0.5 and lr_factor(1, config) == 1.0
    assert lr_factor(2, config) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_factor(7, config) == pytest.approx(0.55)  # half-way: 0.1 + 0.9 * 0.5
    assert lr_factor(12, config) == pytest.approx(0.1)


def test_generators_are_pure_functions_of_seed_step_stream():
    draw = lambda *key: torch.rand(3, generator=step_generator(*key))  # noqa: E731
    assert torch.equal(draw(0, 5, 1), draw(0, 5, 1))
    assert not torch.equal(draw(0, 5, 1), draw(0, 5, 2))
    assert not torch.equal(draw(0, 5, 1), draw(1, 5, 1))


def test_metrics_lines_after_the_checkpoint_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"step": s, "x": s}) + "\n" for s in (0, 5, 10, 15)) + '{"step": 2'
    )
    truncate_metrics(path, 10)
    assert [row["step"] for row in read_metrics(path)] == [0, 5, 10]
    assert wandb_run_id(tmp_path) == wandb_run_id(tmp_path / "." / "")
    assert wandb_run_id(tmp_path / "a") != wandb_run_id(tmp_path / "b")


def test_corrupt_checkpoint_gives_one_line_error(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 3})
    assert load_checkpoint(path)["step"] == 3
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickled_payload_is_refused_naming_the_global_and_never_advising_unsafe_loading(
    tmp_path,
):
    path = tmp_path / "last.pt"
    torch.save({"step": 1, "payload": RunsACommand()}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a readable checkpoint (refused to unpickle: ")
    assert "GLOBAL posix.system" in message and "\n" not in message
    assert "weights_only" not in message and not (tmp_path / "pwned").exists()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(max_chunks=4)
    episodes = [episode(12, float(i), N=4, C=4, A=2, d=3) for i in range(3)]
    windows = WindowSet(episodes, window_frames=4, chunk=2)
    torch.manual_seed(0)
    model = WorldModelWithHeads(cfg)
    config = TrainLoopConfig(steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2)
    logger = RunLogger(tmp_path, mode="disabled")
    trainer = Trainer(
        model,
        windows,
        config,
        run_dir=tmp_path,
        logger=logger,
        dist=DistInfo(0, 1, 0, torch.device("cpu")),
        seed=0,
        checkpoint_extra={},
        progress_bar=False,
    )
    trainer.fit()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4
    windows.video[:] = float("nan")  # the data goes bad after step 4
    trainer.config = TrainLoopConfig(steps=8, batch_size=4, warmup_steps=1, checkpoint_every=2)
    with pytest.raises(TrainingError) as error:
        trainer.fit()
    message = str(error.value)
    assert "non-finite training values at step 5" in message and "\n" not in message
    # step 4's weights made the non-finite step, so they do not count as good
    assert f"the last good checkpoint is {tmp_path / 'step_0000002.pt'} (step 2)" in message
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4
    assert not (tmp_path / "step_0000006.pt").exists()
    # a fork of step 2 that fails before a checkpoint of its own goes back to its source
    fork, source = tmp_path / "fork", tmp_path / "step_0000002.pt"
    fork.mkdir()
    assert good_checkpoint(fork, 4, forked_from=source) == (source, 2)
    assert good_checkpoint(fork, 3, forked_from=source) is None  # step 2's weights failed
    assert good_checkpoint(fork, 4) is None


def test_episode_start_windows_are_oversampled_as_configured():
    episodes = [episode(20, 0.0), episode(20, 100.0)]
    uniform = WindowSet(episodes, window_frames=4, chunk=2)
    boosted = WindowSet(episodes, window_frames=4, chunk=2, episode_start_prob=0.5)
    share = {}
    for name, windows in (("uniform", uniform), ("boosted", boosted)):
        ids = windows.sample(4000, torch.Generator().manual_seed(0))
        share[name] = float((windows.windows[ids, 1] == 0).float().mean())
    assert share["uniform"] == pytest.approx(2 / len(uniform), abs=0.01)  # 2 of the windows
    assert share["boosted"] == pytest.approx(0.5 + 0.5 * 2 / len(boosted), abs=0.03)
    again = boosted.sample(4000, torch.Generator().manual_seed(0))
    assert torch.equal(again, boosted.sample(4000, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="episode_start_prob=1.5 is not valid"):
        WindowSet(episodes, window_frames=4, chunk=2, episode_start_prob=1.5)
