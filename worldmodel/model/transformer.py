"""Pre-norm transformer block with per-token AdaLN-zero conditioning and a KV-cache hook.

Every token carries its own conditioning vector ``cond`` (the embedding of its noise level
sigma), so one sequence can mix clean, re-noised and noisy tokens. A block runs either on a
whole sequence under a boolean mask, or on new tokens with the keys/values of earlier tokens
prepended (``past``); both paths share the same weights and arithmetic, which is what makes
the KV-cached inference loop equal to the teacher-forced training pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KeyValue = tuple[Tensor, Tensor]  # keys, values, each (B, heads, T, head_dim)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN: x * (1 + scale) + shift, all (B, T, dim)."""
    return x * (1 + scale) + shift


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, past: KeyValue | None = None
    ) -> tuple[Tensor, KeyValue]:
        """x (B, T, dim) new tokens; past keys/values of earlier tokens are prepended.

        attn_mask: (T, T_past + T) bool, True = may attend; None = attend to everything.
        Returns the output (B, T, dim) and the new tokens' own (keys, values).
        """
        B, T, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)  # each (B, T, dim)
        q, k, v = (t.view(B, T, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        # q, k, v: (B, heads, T, head_dim)
        all_k, all_v = (
            (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        )
        # all_k, all_v: (B, heads, T_past + T, head_dim)
        y = F.scaled_dot_product_attention(
            q, all_k, all_v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, heads, T, head_dim)
        y = y.transpose(1, 2).reshape(B, T, dim)  # (B, T, dim)
        return self.proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    """x + gate * attn(modulate(norm(x))), then x + gate * mlp(modulate(norm(x))).

    The six modulation vectors (shift, scale, gate for attention and MLP) come per token from
    ``cond`` through a zero-initialised linear layer, so a fresh block is the identity.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.adaln[1].weight)
        nn.init.zeros_(self.adaln[1].bias)

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        attn_mask: Tensor | None = None,
        past: KeyValue | None = None,
    ) -> tuple[Tensor, KeyValue]:
        """x, cond: (B, T, dim). Returns the new x (B, T, dim) and this block's (keys, values)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(cond).chunk(6, dim=-1)
        # each (B, T, dim)
        attn_out, kv = self.attn(modulate(self.norm1(x), shift1, scale1), attn_mask, past)
        x = x + gate1 * self.drop(attn_out)
        x = x + gate2 * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))
        return x, kv


def run_blocks(
    blocks: Sequence[Block],
    x: Tensor,
    cond: Tensor,
    attn_mask: Tensor | None,
    pasts: Sequence[KeyValue | None],
) -> tuple[list[Tensor], list[KeyValue]]:
    """New tokens x, cond (B, T, dim) through ``blocks``, each with its layer's cached keys and
    values (or None); every block's output (B, T, dim) and its new (keys, values). A pure
    tensor function, so the fixed-shape denoising step can be compiled (``torch.compile``)."""
    outputs, kvs = [], []
    for block, past in zip(blocks, pasts, strict=True):
        x, kv = block(x, cond, attn_mask, past)
        outputs.append(x)
        kvs.append(kv)
    return outputs, kvs


class FinalLayer(nn.Module):
    """AdaLN-modulated norm, then a linear map (or a one-hidden-layer MLP) to the outputs.

    The modulation and the last linear layer start at zero (AdaLN-zero, as in DiT).
    """

    def __init__(self, dim: int, out_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        if hidden is None:
            self.out = nn.Linear(dim, out_dim)
            last = self.out
        else:
            self.out = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))
            last = self.out[2]
        for layer in (self.adaln[1], last):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x, cond: (B, T, dim) -> (B, T, out_dim)."""
        shift, scale = self.adaln(cond).chunk(2, dim=-1)  # each (B, T, dim)
        return self.out(modulate(self.norm(x), shift, scale))
