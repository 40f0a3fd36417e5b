"""Token layout of a training window and the attention mask over it.

Glossary (shared with the rest of the model):
    chunk        K latent frames plus the actions executed after each of them.
    K            latent frames per chunk.
    N            video tokens per latent frame (the tokenizer's spatial tokens).
    action token one per latent frame: the ``actions_per_frame * action_dim`` actions
                 executed after that frame.
    window       ``num_chunks`` consecutive chunks of one episode.

A training window is one sequence of four blocks, each ordered chunk, frame, position:

    [ noisy video | clean video | noisy action | clean action ]
      C*K*N         C*K*N         C*K            C*K              (C = num_chunks)

Visibility (``may_attend``), for a query token of chunk i:

    query          sees clean video     sees clean action    sees noisy tokens
    clean video    chunks <= i          chunks < i           none
    clean action   chunks <= i          chunks <= i          none
    noisy video    chunks < i           chunks < i           noisy video of chunk i
    noisy action   chunks <= i          chunks < i           noisy action of chunk i

Nothing attends to noisy tokens of another chunk, and inside one block of one chunk
attention is bidirectional. This is exactly what the KV-cached inference loop sees: the
cache holds clean tokens only, appended in the order clean video i, clean action i, and the
noisy tokens of chunk i are run against it without being appended (clean video i is appended
before its actions are denoised, so noisy action i sees it and noisy video i does not).

With an attention window W, clean tokens of chunk j are visible from chunk i only when
``i - j <= W``: the W previous chunks plus the query's own chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Token kinds, in sequence order.
NOISY_VIDEO = 0
CLEAN_VIDEO = 1
NOISY_ACTION = 2
CLEAN_ACTION = 3
SEQUENCE_ORDER = (NOISY_VIDEO, CLEAN_VIDEO, NOISY_ACTION, CLEAN_ACTION)


@dataclass(frozen=True)
class TokenLayout:
    """Per-token bookkeeping of a token sequence; every field is a (T,) long tensor."""

    kind: torch.Tensor  # NOISY_VIDEO | CLEAN_VIDEO | NOISY_ACTION | CLEAN_ACTION
    chunk: torch.Tensor  # absolute chunk index
    frame: torch.Tensor  # latent frame inside its chunk, 0..K-1
    position: torch.Tensor  # token inside its frame, 0..N-1 (always 0 for action tokens)

    def __len__(self) -> int:
        return self.kind.numel()

    def slots(self, kind: int) -> torch.Tensor:
        """Indices (into this layout) of the tokens of one kind, in sequence order."""
        return torch.nonzero(self.kind == kind).flatten()

    def __getitem__(self, index: slice) -> TokenLayout:
        """The layout of a slice of the tokens."""
        return TokenLayout(
            kind=self.kind[index],
            chunk=self.chunk[index],
            frame=self.frame[index],
            position=self.position[index],
        )


def empty_layout() -> TokenLayout:
    """The layout of no tokens."""
    none = torch.zeros(0, dtype=torch.long)
    return TokenLayout(kind=none, chunk=none, frame=none, position=none)


def is_video(kind: int) -> bool:
    return kind in (NOISY_VIDEO, CLEAN_VIDEO)


def block_layout(kind: int, first_chunk: int, num_chunks: int, K: int, N: int) -> TokenLayout:
    """Layout of one block: chunks ``first_chunk .. first_chunk+num_chunks-1`` of one kind."""
    per_frame = N if is_video(kind) else 1
    chunk, frame, position = torch.meshgrid(
        torch.arange(first_chunk, first_chunk + num_chunks),
        torch.arange(K),
        torch.arange(per_frame),
        indexing="ij",
    )  # each (num_chunks, K, per_frame)
    return TokenLayout(
        kind=torch.full((chunk.numel(),), kind, dtype=torch.long),
        chunk=chunk.flatten(),
        frame=frame.flatten(),
        position=position.flatten(),
    )


def concat_layouts(layouts: list[TokenLayout]) -> TokenLayout:
    return TokenLayout(
        kind=torch.cat([lay.kind for lay in layouts]),
        chunk=torch.cat([lay.chunk for lay in layouts]),
        frame=torch.cat([lay.frame for lay in layouts]),
        position=torch.cat([lay.position for lay in layouts]),
    )


def sequence_layout(num_chunks: int, K: int, N: int) -> TokenLayout:
    """The training sequence ``[noisy video | clean video | noisy action | clean action]``."""
    return concat_layouts([block_layout(kind, 0, num_chunks, K, N) for kind in SEQUENCE_ORDER])


def may_attend(
    query: TokenLayout, key: TokenLayout, attention_window: int | None = None
) -> torch.Tensor:
    """(Tq, Tk) bool, True where a query token may attend to a key token (table above)."""
    q_kind, k_kind = query.kind[:, None], key.kind[None, :]  # (Tq, 1), (1, Tk)
    q_chunk, k_chunk = query.chunk[:, None], key.chunk[None, :]  # (Tq, 1), (1, Tk)
    earlier, same = k_chunk < q_chunk, k_chunk == q_chunk
    key_clean_video, key_clean_action = k_kind == CLEAN_VIDEO, k_kind == CLEAN_ACTION
    key_clean = key_clean_video | key_clean_action

    clean_video_query = key_clean_video & (earlier | same) | key_clean_action & earlier
    clean_action_query = key_clean & (earlier | same)
    noisy_video_query = key_clean & earlier | (k_kind == NOISY_VIDEO) & same
    noisy_action_query = (
        key_clean & earlier | key_clean_video & same | (k_kind == NOISY_ACTION) & same
    )
    visible = torch.where(
        q_kind == CLEAN_VIDEO,
        clean_video_query,
        torch.where(
            q_kind == CLEAN_ACTION,
            clean_action_query,
            torch.where(q_kind == NOISY_VIDEO, noisy_video_query, noisy_action_query),
        ),
    )
    if attention_window is not None:
        visible = visible & (~key_clean | (q_chunk - k_chunk <= attention_window))
    return visible


def training_mask(
    num_chunks: int, K: int, N: int, attention_window: int | None = None
) -> torch.Tensor:
    """(L, L) bool mask of the training sequence, True = may attend (module docstring)."""
    layout = sequence_layout(num_chunks, K, N)
    return may_attend(layout, layout, attention_window)


def first_visible_chunk(chunk: int, attention_window: int | None) -> int:
    """Oldest chunk whose clean tokens a token of ``chunk`` may see (the KV-cache crop)."""
    return 0 if attention_window is None else max(0, chunk - attention_window)
