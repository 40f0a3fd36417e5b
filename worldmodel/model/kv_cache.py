"""``KVCache``: keys and values of the clean tokens an inference session has appended.

The cache holds clean segments only, in the order the training mask allows them to be seen
(``worldmodel/model/layout.py``): clean video of chunk 0, clean actions of chunk 0, clean video
of chunk 1, ... Noisy tokens are run against it and never appended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from worldmodel.model.layout import CLEAN_ACTION, CLEAN_VIDEO


@dataclass
class KVCache:
    """Per-layer keys/values of the clean tokens so far, appended one segment at a time."""

    num_layers: int
    keys: list[Tensor | None] = field(default_factory=list)  # per layer (B, heads, T, hd)
    values: list[Tensor | None] = field(default_factory=list)
    chunk: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # (T,)
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
        return self.chunk.numel()

    def past(self, layer: int, first_chunk: int) -> tuple[Tensor, Tensor] | None:
        """Cached (keys, values) of ``layer`` from ``first_chunk`` on (the attention window)."""
        if self.keys[layer] is None:
            return None
        start = int((self.chunk < first_chunk).sum())  # tokens are sorted by chunk
        return self.keys[layer][:, :, start:], self.values[layer][:, :, start:]

    def append(self, layer: int, kv: tuple[Tensor, Tensor]) -> None:
        k, v = kv  # each (B, heads, T_new, hd)
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)

    def add_segment(self, kind: int, chunk: int, length: int) -> None:
        new = torch.full((length,), chunk, dtype=torch.long)
        self.chunk = torch.cat([self.chunk, new])
        self.segments.append((kind, chunk, length))

    def drop_last_segment(self) -> tuple[int, int, int]:
        """Forget the most recently appended segment (e.g. an imagined clean video chunk)."""
        kind, chunk, length = self.segments.pop()
        keep = len(self) - length
        self.chunk = self.chunk[:keep]
        for layer in range(self.num_layers):
            if keep == 0:
                self.keys[layer] = self.values[layer] = None
            else:
                self.keys[layer] = self.keys[layer][:, :, :keep]
                self.values[layer] = self.values[layer][:, :, :keep]
        return kind, chunk, length
