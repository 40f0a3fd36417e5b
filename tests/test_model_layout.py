"""The training-sequence layout and its attention mask, against hand-computed cases."""

import itertools

import pytest
import torch

from worldmodel.model.layout import (
    CLEAN_ACTION,
    CLEAN_VIDEO,
    NOISY_ACTION,
    NOISY_VIDEO,
    first_visible_chunk,
    sequence_layout,
    training_mask,
)


def test_layout_two_chunks_two_frames_two_tokens():
    layout = sequence_layout(num_chunks=2, K=2, N=2)
    # 2*2*2 noisy video, 8 clean video, 2*2 noisy action, 4 clean action
    assert len(layout) == 24
    assert layout.kind.tolist() == [0] * 8 + [1] * 8 + [2] * 4 + [3] * 4
    video_chunk = [0, 0, 0, 0, 1, 1, 1, 1]
    video_frame = [0, 0, 1, 1, 0, 0, 1, 1]
    video_pos = [0, 1, 0, 1, 0, 1, 0, 1]
    assert layout.chunk.tolist() == video_chunk * 2 + [0, 0, 1, 1] * 2
    assert layout.frame.tolist() == video_frame * 2 + [0, 1, 0, 1] * 2
    assert layout.position.tolist() == video_pos * 2 + [0] * 8
    blocks = {NOISY_VIDEO: (0, 8), CLEAN_VIDEO: (8, 16), NOISY_ACTION: (16, 20)}
    blocks[CLEAN_ACTION] = (20, 24)
    for kind, (start, stop) in blocks.items():
        assert layout.slots(kind).tolist() == list(range(start, stop))


def test_mask_two_chunks_one_frame_one_token_by_hand():
    # order: nv0 nv1 | cv0 cv1 | na0 na1 | ca0 ca1 (rows = queries, columns = keys)
    expected = torch.tensor(
        [
            # nv0 nv1 cv0 cv1 na0 na1 ca0 ca1
            [1, 0, 0, 0, 0, 0, 0, 0],  # nv0: own noisy video only
            [0, 1, 1, 0, 0, 0, 1, 0],  # nv1: clean video 0, clean action 0, itself
            [0, 0, 1, 0, 0, 0, 0, 0],  # cv0: clean video 0
            [0, 0, 1, 1, 0, 0, 1, 0],  # cv1: clean video 0..1, clean action 0
            [0, 0, 1, 0, 1, 0, 0, 0],  # na0: clean video 0, itself
            [0, 0, 1, 1, 0, 1, 1, 0],  # na1: clean video 0..1, clean action 0, itself
            [0, 0, 1, 0, 0, 0, 1, 0],  # ca0: clean video 0, clean action 0
            [0, 0, 1, 1, 0, 0, 1, 1],  # ca1: clean video 0..1, clean action 0..1
        ],
        dtype=torch.bool,
    )
    assert torch.equal(training_mask(2, 1, 1), expected)


def test_mask_window_one_three_chunks_by_hand():
    # order: nv0..2 | cv0..2 | na0..2 | ca0..2; window 1 = previous chunk + own chunk
    expected = torch.zeros(12, 12, dtype=torch.bool)
    nv, cv, na, ca = 0, 3, 6, 9
    for i in range(3):
        prev = [i - 1] if i > 0 else []
        expected[nv + i, [nv + i] + [cv + j for j in prev] + [ca + j for j in prev]] = True
        expected[cv + i, [cv + j for j in prev + [i]] + [ca + j for j in prev]] = True
        expected[na + i, [na + i] + [cv + j for j in prev + [i]] + [ca + j for j in prev]] = True
        expected[ca + i, [cv + j for j in prev + [i]] + [ca + j for j in prev + [i]]] = True
    assert torch.equal(training_mask(3, 1, 1, attention_window=1), expected)


def _visible(num_chunks, K, N, window=None):
    """A reference written token by token from the rules in the issue (slow, explicit)."""
    layout = sequence_layout(num_chunks, K, N)
    L = len(layout)
    mask = torch.zeros(L, L, dtype=torch.bool)
    for q, k in itertools.product(range(L), range(L)):
        qk, kk = int(layout.kind[q]), int(layout.kind[k])
        i, j = int(layout.chunk[q]), int(layout.chunk[k])
        rules = {
            CLEAN_VIDEO: {CLEAN_VIDEO: j <= i, CLEAN_ACTION: j < i},
            CLEAN_ACTION: {CLEAN_VIDEO: j <= i, CLEAN_ACTION: j <= i},
            NOISY_VIDEO: {CLEAN_VIDEO: j < i, CLEAN_ACTION: j < i, NOISY_VIDEO: j == i},
            NOISY_ACTION: {
                CLEAN_VIDEO: j <= i,
                CLEAN_ACTION: j < i,
                NOISY_ACTION: j == i,
            },
        }
        ok = rules[qk].get(kk, False)
        if window is not None and kk in (CLEAN_VIDEO, CLEAN_ACTION):
            ok = ok and i - j <= window
        mask[q, k] = ok
    return mask


@pytest.mark.parametrize("window", [None, 1, 2])
def test_mask_equals_token_by_token_reference(window):
    assert torch.equal(training_mask(4, 2, 3, window), _visible(4, 2, 3, window))


def test_mask_rules_as_properties():
    num_chunks, K, N = 5, 2, 3
    layout = sequence_layout(num_chunks, K, N)
    mask = training_mask(num_chunks, K, N)
    kind, chunk = layout.kind, layout.chunk
    noisy = (kind == NOISY_VIDEO) | (kind == NOISY_ACTION)
    # nothing attends to noisy tokens of another chunk, nor to noisy tokens of another kind
    cross = noisy[None, :] & ((chunk[:, None] != chunk[None, :]) | (kind[:, None] != kind[None, :]))
    assert not mask[cross].any()
    # no token ever sees the future
    assert not mask[chunk[None, :] > chunk[:, None]].any()
    # every block of one chunk is bidirectional (all-True square)
    for k, i in itertools.product(range(4), range(num_chunks)):
        idx = torch.nonzero((kind == k) & (chunk == i)).flatten()
        assert mask[idx][:, idx].all()
    # clean video of chunk i never sees clean action of chunk i (not yet generated then)
    same = chunk[:, None] == chunk[None, :]
    assert not mask[(kind[:, None] == CLEAN_VIDEO) & (kind[None, :] == CLEAN_ACTION) & same].any()
    # noisy video of chunk i sees no clean token of chunk i; noisy action sees clean video i
    q_nv, q_na = kind[:, None] == NOISY_VIDEO, kind[:, None] == NOISY_ACTION
    k_cv, k_ca = kind[None, :] == CLEAN_VIDEO, kind[None, :] == CLEAN_ACTION
    assert not mask[q_nv & (k_cv | k_ca) & same].any()
    assert mask[q_na & k_cv & same].all()
    assert not mask[q_na & k_ca & same].any()
    # every clean token of an earlier chunk is visible to every token (no window)
    assert mask[(k_cv | k_ca) & (chunk[None, :] < chunk[:, None])].all()
    # the diagonal is always visible (no empty attention row)
    assert mask.diagonal().all()


def test_attention_window_hides_old_clean_chunks_only():
    num_chunks, K, N, window = 6, 1, 2, 2
    layout = sequence_layout(num_chunks, K, N)
    full, windowed = training_mask(num_chunks, K, N), training_mask(num_chunks, K, N, window)
    age = layout.chunk[:, None] - layout.chunk[None, :]  # query chunk - key chunk
    assert not windowed[age > window].any()
    assert torch.equal(windowed[age <= window], full[age <= window])
    # a window covering the whole sequence changes nothing
    assert torch.equal(training_mask(num_chunks, K, N, num_chunks), full)


def test_first_visible_chunk():
    assert first_visible_chunk(5, None) == 0
    assert first_visible_chunk(5, 2) == 3
    assert first_visible_chunk(1, 3) == 0
