"""``KVCache``: keys and values of the clean tokens an inference session has appended.

The cache holds clean segments only, in the order the training mask allows them to be seen
(``worldmodel/model/layout.py``): clean video of chunk 0, clean actions of chunk 0, clean video
of chunk 1, ... Noisy tokens are run against it and never appended. Several consecutive clean
segments may join in one pass (``CleanSegment``, ``KVCache.append_mask``): each then sees the
ones before it and itself, as it would have if appended alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from worldmodel.model.layout import (
    CLEAN_ACTION,
    CLEAN_VIDEO,
    TokenLayout,
    concat_layouts,
    empty_layout,
    first_visible_chunk,
    may_attend,
)


@dataclass(frozen=True)
class CleanSegment:
    """One clean chunk to append: video (B, K, N, C) or actions in model units (B, K, A, d);
    ``sigma`` (video only, float or (B, K)) marks re-noised history, default 0 (clean)."""

    kind: int  # CLEAN_VIDEO | CLEAN_ACTION
    values: Tensor
    sigma: Tensor | float | None = None


@dataclass
class KVCache:
    """Per-layer keys/values of the clean tokens so far, appended one segment at a time."""

    num_layers: int
    keys: list[Tensor | None] = field(default_factory=list)  # per layer (B, heads, T, hd)
    values: list[Tensor | None] = field(default_factory=list)
    layout: TokenLayout = field(default_factory=empty_layout)  # of the T cached tokens
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # (kind, chunk, length)
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [None] * self.num_layers
            self.values = [None] * self.num_layers

    @property
    def num_video_chunks(self) -> int:
        return sum(kind == CLEAN_VIDEO for kind, _, _ in self.segments)

    @property
    def num_action_chunks(self) -> int:
        return sum(kind == CLEAN_ACTION for kind, _, _ in self.segments)

    def __len__(self) -> int:
        return len(self.layout)

    def _start(self, first_chunk: int) -> int:
        return int((self.layout.chunk < first_chunk).sum())  # tokens are sorted by chunk

    def past(self, layer: int, first_chunk: int) -> tuple[Tensor, Tensor] | None:
        """Cached (keys, values) of ``layer`` from ``first_chunk`` on (the attention window)."""
        if self.keys[layer] is None:
            return None
        start = self._start(first_chunk)
        return self.keys[layer][:, :, start:], self.values[layer][:, :, start:]

    def append_mask(
        self, new: list[TokenLayout], attention_window: int | None
    ) -> tuple[int, Tensor | None]:
        """The oldest chunk of clean segments ``new`` appended in one pass, and their mask
        (T_new, T_past + T_new) over the cache from that chunk's window on and themselves
        (``may_attend``); None for one segment, which sees all of that."""
        oldest = min(int(layout.chunk.min()) for layout in new)
        if len(new) == 1:
            return oldest, None
        query = concat_layouts(new)
        start = self._start(first_visible_chunk(oldest, attention_window))
        key = concat_layouts([self.layout[start:], query])
        return oldest, may_attend(query, key, attention_window)

    def append(self, layer: int, kv: tuple[Tensor, Tensor]) -> None:
        k, v = kv  # each (B, heads, T_new, hd)
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)

    def add_segment(self, layout: TokenLayout) -> None:
        """Record the layout of one clean segment (one kind, one chunk) whose keys joined."""
        kind, chunk = int(layout.kind[0]), int(layout.chunk[0])
        self.layout = concat_layouts([self.layout, layout])
        self.segments.append((kind, chunk, len(layout)))

    def drop_last_segment(self) -> tuple[int, int, int]:
        """Forget the most recently appended segment (e.g. an imagined clean video chunk)."""
        kind, chunk, length = self.segments.pop()
        keep = len(self) - length
        self.layout = self.layout[:keep]
        for layer in range(self.num_layers):
            if keep == 0:
                self.keys[layer] = self.values[layer] = None
            else:
                self.keys[layer] = self.keys[layer][:, :, :keep]
                self.values[layer] = self.values[layer][:, :, :keep]
        return kind, chunk, length
