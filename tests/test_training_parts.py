"""Pieces of the training harness against hand-computed values, and divergence handling."""

import json

import pytest
import torch

from tests.tiny_models import tiny_config
from worldmodel.heads import WorldModelWithHeads
from worldmodel.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from worldmodel.training.config import TrainLoopConfig
from worldmodel.training.distributed import DistInfo
from worldmodel.training.optim import lr_factor
from worldmodel.training.run_logger import RunLogger, read_metrics, truncate_metrics, wandb_run_id
from worldmodel.training.trainer import Trainer, TrainingError, step_generator
from worldmodel.training.windows import EpisodeLatents, WindowSet, action_stats

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def episode(frames: int, offset: float, N: int = 4, C: int = 4, A: int = 2, d: int = 3):
    """Frame f of the episode has every latent value ``offset + f`` and every action ``f``."""
    f = torch.arange(frames, dtype=torch.float32)
    video = (offset + f)[:, None, None].expand(frames, N, C).clone()
    actions = f[:, None, None].expand(frames, A, d).clone()
    return EpisodeLatents(seed=int(offset), video=video, actions=actions)


def test_windows_start_every_frame_with_a_chunk_after_it_and_pad_past_the_end():
    windows = WindowSet([episode(5, 0.0), episode(3, 100.0)], window_frames=4, chunk=2)
    # episode 0: starts 0..3 (5 - 2 + 1 = 4), episode 1: starts 0..1 (3 - 2 + 1 = 2)
    assert len(windows) == 6
    batch = windows.batch(torch.tensor([3, 5]))  # ep 0 from frame 3; ep 1 from frame 1
    assert batch["valid"].tolist() == [[True, True, False, False], [True, True, False, False]]
    # padding repeats the last frame (4 and 102) and zeroes the actions
    assert batch["video"][:, :, 0, 0].tolist() == [[3, 4, 4, 4], [101, 102, 102, 102]]
    assert batch["actions"][:, :, 0, 0].tolist() == [[3, 4, 0, 0], [1, 2, 0, 0]]
    assert windows.spread(3).tolist() == [0, 2, 5]  # linspace(0, 5, 3) = 0, 2.5, 5 -> rounded
    ids = windows.sample(100, step_generator(0, 1, 0))
    assert torch.equal(ids, windows.sample(100, step_generator(0, 1, 0)))
    assert 0 <= int(ids.min()) and int(ids.max()) < 6


def test_action_stats_are_per_dimension_and_floored():
    mean, std = action_stats([episode(5, 0.0)])
    assert torch.allclose(mean, torch.full((3,), 2.0))  # actions 0..4
    # values 0,0,1,1,..,4,4 (A = 2 per frame): sample std sqrt(2 * (4 + 1 + 0 + 1 + 4) / 9)
    assert torch.allclose(std, torch.full((3,), (20 / 9) ** 0.5))
    _, flat = action_stats([episode(1, 0.0), episode(1, 0.0)])
    assert torch.equal(flat, torch.full((3,), 1e-2))


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
    assert f"{tmp_path / 'last.pt'} (step 4)" in message
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4
    assert not (tmp_path / "step_0000006.pt").exists()
