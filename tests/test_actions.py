"""Action units: relative/absolute round trips, quantile and z-score statistics against hand
values, the chunk references and the "actions leading into frame f" alignment."""

import pytest
import torch

from tests.tiny_models import tiny_batch, tiny_config
from worldmodel.model import WorldModel
from worldmodel.model.actions import (
    PAD_ACTION,
    TRAIN_CLIP,
    ActionCodec,
    aligned_actions,
    chunk_reference,
    start_joint_positions,
)

RELATIVE = torch.tensor([True, True, False])  # two joints and a gripper


def fitted(space: str, norm: str) -> ActionCodec:
    """Actions 0..100 on every dim, references 10 (relative dims lose 10), one per step."""
    codec = ActionCodec(3, space, norm)
    actions = torch.arange(101.0)[:, None, None].expand(101, 1, 3)  # (M, A=1, d)
    codec.fit(actions, torch.full((101, 3), 10.0), RELATIVE)
    return codec


def test_quantile_statistics_map_q01_q99_to_minus_one_and_one():
    codec = fitted("absolute", "quantile")  # q01 = 1, q99 = 99 of 0..100
    torch.testing.assert_close(codec.offset, torch.full((3,), 50.0))
    torch.testing.assert_close(codec.scale, torch.full((3,), 49.0))
    relative = fitted("relative", "quantile")  # joints: 0..100 minus 10 -> q01 -9, q99 89
    torch.testing.assert_close(relative.offset, torch.tensor([40.0, 40.0, 50.0]))
    torch.testing.assert_close(relative.scale, torch.tensor([49.0, 49.0, 49.0]))


def test_zscore_statistics_and_the_scale_floor():
    codec = fitted("absolute", "zscore")
    torch.testing.assert_close(codec.offset, torch.full((3,), 50.0))
    expected_std = torch.arange(101.0).std()
    torch.testing.assert_close(codec.scale, torch.full((3,), float(expected_std)))
    still = ActionCodec(3, "absolute", "zscore")
    still.fit(torch.ones(5, 2, 3), torch.zeros(5, 3), RELATIVE)
    torch.testing.assert_close(still.scale, torch.full((3,), 1e-2))  # a dim that never moves


@pytest.mark.parametrize("space", ["relative", "absolute"])
@pytest.mark.parametrize("norm", ["quantile", "zscore"])
def test_encode_decode_round_trip(space, norm):
    codec = fitted(space, norm)
    g = torch.Generator().manual_seed(0)
    raw = 100 * torch.rand(2, 4, 2, 3, generator=g)  # (B, F, A, d)
    reference = torch.rand(2, 4, 3, generator=g)  # (B, F, d)
    units = codec.encode(raw, reference)
    torch.testing.assert_close(codec.decode(units, reference), raw)


def test_relative_actions_subtract_the_reference_on_joints_only():
    codec = fitted("relative", "quantile")
    raw = torch.tensor([[[[50.0, 50.0, 50.0]]]])  # (1, 1, 1, 3)
    at_zero = codec.encode(raw, torch.zeros(1, 1, 3))
    moved = codec.encode(raw, torch.full((1, 1, 3), 49.0))
    # joints: (50 - 0 - 40) / 49 and (50 - 49 - 40) / 49; the gripper does not move
    torch.testing.assert_close(at_zero[0, 0, 0], torch.tensor([10 / 49, 10 / 49, 0.0]))
    torch.testing.assert_close(moved[0, 0, 0], torch.tensor([-39 / 49, -39 / 49, 0.0]))


def test_chunk_reference_takes_each_chunks_first_frame():
    start = torch.arange(6.0)[None, :, None].expand(1, 6, 2)  # frame f holds f
    reference = chunk_reference(start, K=2)
    assert reference[0, :, 0].tolist() == [0.0, 0.0, 2.0, 2.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="not whole chunks of K=4"):
        chunk_reference(start, K=4)


def test_actions_lead_into_their_frame_and_frame_zero_is_padding():
    after = torch.tensor([[[1.0]], [[2.0]], [[3.0]]])  # (F=3, A=1, d=1): after frames 0, 1, 2
    into, valid = aligned_actions(after)  # frames 0..3
    assert into[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert valid.tolist() == [False, True, True, True]
    joint_pos = torch.tensor([[5.0], [6.0], [7.0], [8.0]])  # observed at frames 0..3
    assert start_joint_positions(joint_pos)[:, 0].tolist() == [5.0, 5.0, 6.0, 7.0]


def test_training_window_pads_clips_and_masks_actions():
    cfg = tiny_config()
    model = WorldModel(cfg)
    batch = tiny_batch(cfg, num_chunks=2, action_std=100.0)
    batch["start_joint_pos"] = torch.zeros(2, 4, cfg.action_dim)
    batch["action_valid"] = batch["valid"].clone()
    batch["action_valid"][0, 0] = False  # window 0 starts at an episode's frame 0
    units, mask = model.window_actions(batch, cfg.K)
    assert units.abs().max() == TRAIN_CLIP  # big raw actions are clipped
    assert torch.equal(units[0, 0], torch.full_like(units[0, 0], PAD_ACTION))
    assert mask[0].tolist() == [False, True, True, True]
    assert mask[1].tolist() == [True, True, False, False]  # episode 1 ends after chunk 0
    with pytest.raises(ValueError, match="relative actions need batch\\['start_joint_pos'\\]"):
        model.window_actions({k: v for k, v in batch.items() if k != "start_joint_pos"}, 2)


def test_codec_statistics_travel_in_the_state_dict():
    cfg = tiny_config()
    model = WorldModel(cfg)
    model.action_codec.fit(torch.randn(50, 2, 3), torch.randn(50, 3), RELATIVE)
    copy = WorldModel(cfg)
    copy.load_state_dict(model.state_dict())
    for name in ("offset", "scale", "relative"):
        assert torch.equal(getattr(copy.action_codec, name), getattr(model.action_codec, name))
