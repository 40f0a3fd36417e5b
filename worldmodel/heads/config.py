"""``HeadsConfig``: the auxiliary heads trained jointly with the backbone (config group ``heads``).

Presets live in ``worldmodel/presets/heads/<name>.yaml``; each paper ablation is one override
of a preset:

    preset               kind    fusion_layers   chain   what it is
    single_step          none    -               -       LingBot-VA baseline, no heads
    next_forcing         mcp     null (spread)   true    Next Forcing MCP modules
    chain_last_layer     mcp     [-1]            true    DeepSeek-V3-style MTP chain
    parallel_heads       mcp     [-1]            false   Gloeckle et al. 2024
    linear_every_third   linear  -               -       a Linear per (layer, depth)

Next Forcing ablations: ``fusion_layers=[-1]`` (last-layer-only fusion),
``init_from_backbone=false``, ``mcp_shift=5``, ``blocks_per_depth=1|5``, ``mcp_depth=1..4``.

Layer indices count the backbone's blocks from 0 (``hidden_states[l]`` is the output of block
``l``) and may be negative like Python indices: ``-1`` is the last layer. The paper's layers
4/12/20/30 of 30 are ``fusion_layers=[3, 11, 19, 29]`` (next-forcing
``wan_va/configs/mcp_train_config.py``, ``mcp_hidden_collect_layers``); the default (``None``)
places ``num_fusion_layers`` by ``fusion_spread`` (``spread_layers``): ``reference`` at the
same fractions of any backbone (4/30, 12/30, 20/30, 30/30: [0, 2, 4, 7] of 8 blocks, every
block of 4), ``even`` evenly, ending at the last block ([7, 14, 21, 29] of 30; before
2026-12-07 the only rule).

Depth k only gets a signal from windows of more than k chunks: with ``num_chunks`` chunks per
window, ``loss/mcp{k}`` is exactly 0 for k >= num_chunks (no target inside the window).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from omegaconf import OmegaConf

from worldmodel.model.config import ModelConfig
from worldmodel.presets import PRESETS_DIR

PRESET_DIR = PRESETS_DIR / "heads"
KINDS = ("none", "mcp", "linear")
# Paper weights of depths 1..3; a 4th depth (our sweep axis, not in the paper) gets 0.05.
DEFAULT_LOSS_WEIGHTS = (0.5, 0.2, 0.1, 0.05)
# The reference's fused layers 4, 12, 20, 30 of 30 as fractions of the backbone's blocks.
REFERENCE_FUSION_FRACTIONS = (4 / 30, 12 / 30, 20 / 30, 30 / 30)
FUSION_SPREADS = ("reference", "even")


@dataclass
class HeadsConfig:
    """Auxiliary multi-chunk prediction heads; names follow ``worldmodel/model/layout.py``.

    Depth ``k`` (1..mcp_depth) predicts the video of chunk ``i + k`` at the noisy-video slots of
    chunk ``i``; targets past the window or the episode end are masked out of its loss.
    """

    kind: str = "none"  # none | mcp (MCP modules, chained or parallel) | linear (linear heads)
    mcp_depth: int = 3  # D: future chunks predicted (+1..+D); 0 = no heads
    fusion_layers: list[int] | None = None  # mcp: layers fused into h_0; None = spread
    num_fusion_layers: int = (
        4  # mcp: how many layers ``fusion_layers=None`` spreads over the blocks
    )
    # mcp: where ``fusion_layers=None`` puts them: reference (4/12/20/30 of 30, needs 4
    # layers) | even (evenly, ending at the last block)
    fusion_spread: str = "reference"
    chain: bool = True  # mcp: depth k>1 takes depth k-1's output (False: all take h_0)
    blocks_per_depth: int = 3  # mcp: transformer blocks of each depth
    init_from_backbone: bool = True  # mcp: blocks start as copies of the backbone's last blocks
    mcp_shift: float = 10.0  # timestep shift of the depths' own noise draws (video uses 5)
    # mcp, linear: depth k's noisy tokens carry the positions of the chunk they predict (i + k,
    # the reference); false: those of the slots' own chunk i (before 2026-12-07)
    target_positions: bool = True
    loss_weights: list[float] | None = None  # w_1..w_D; None = DEFAULT_LOSS_WEIGHTS[:D]
    layer_stride: int = 3  # linear: a head on every ``layer_stride``-th layer (3rd, 6th, ...)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not valid; choose one of: {', '.join(KINDS)}")
        for key in ("num_fusion_layers", "blocks_per_depth", "layer_stride"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} is not valid; must be >= 1")
        if self.mcp_depth < 0:
            raise ValueError(f"mcp_depth={self.mcp_depth} is not valid; must be >= 0")
        if self.mcp_depth > len(DEFAULT_LOSS_WEIGHTS) and self.loss_weights is None:
            raise ValueError(
                f"mcp_depth={self.mcp_depth} is not valid without explicit loss_weights; must "
                f"be in 0..{len(DEFAULT_LOSS_WEIGHTS)}"
            )
        if self.fusion_spread not in FUSION_SPREADS:
            raise ValueError(
                f"fusion_spread={self.fusion_spread!r} is not valid; choose one of: "
                f"{', '.join(FUSION_SPREADS)}"
            )
        if self.fusion_spread == "reference" and self.num_fusion_layers != len(
            REFERENCE_FUSION_FRACTIONS
        ):
            raise ValueError(
                f"num_fusion_layers={self.num_fusion_layers} is not valid with "
                f"fusion_spread=reference (the reference fuses {len(REFERENCE_FUSION_FRACTIONS)}"
                " layers); use fusion_spread=even or name fusion_layers"
            )
        if self.mcp_shift <= 0:
            raise ValueError(f"mcp_shift={self.mcp_shift} is not valid; must be > 0")
        if self.fusion_layers is not None:
            self.fusion_layers = list(self.fusion_layers)
            if not self.fusion_layers or len(set(self.fusion_layers)) != len(self.fusion_layers):
                raise ValueError(
                    f"fusion_layers={self.fusion_layers} is not valid; must be a non-empty "
                    "list of distinct layer indices, or None"
                )
        if self.loss_weights is not None:
            self.loss_weights = [float(w) for w in self.loss_weights]
            if len(self.loss_weights) != self.mcp_depth:
                raise ValueError(
                    f"loss_weights={self.loss_weights} is not valid; needs one weight per "
                    f"depth (mcp_depth={self.mcp_depth})"
                )
            if any(w < 0 for w in self.loss_weights):
                raise ValueError(f"loss_weights={self.loss_weights} is not valid; must be >= 0")

    @property
    def enabled(self) -> bool:
        return self.kind != "none" and self.mcp_depth > 0

    @property
    def depth(self) -> int:
        """D of these heads: the future chunks they predict, 0 when there are none."""
        return self.mcp_depth if self.enabled else 0

    @property
    def chained_mcp(self) -> bool:
        """Next Forcing's kind of heads: MCP modules in a causal chain (a depth-curve axis)."""
        return self.enabled and self.kind == "mcp" and self.chain

    @classmethod
    def from_record(cls, values: dict) -> HeadsConfig:
        """The heads of a run's recorded config (``config.yaml``, upgraded on read); keys this
        code no longer has are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    @property
    def weights(self) -> list[float]:
        """w_1..w_D of the total loss ``L_video + L_action + sum_k w_k L_mcp_k``."""
        if self.loss_weights is not None:
            return list(self.loss_weights)
        return list(DEFAULT_LOSS_WEIGHTS[: self.mcp_depth])

    def resolved_fusion_layers(self, model: ModelConfig) -> list[int]:
        """Fusion layers as block indices 0..num_blocks-1 (sorted as given; negatives resolved)."""
        check_layers("fusion_layers", self.fusion_layers, model.num_blocks)
        if self.fusion_layers is None:
            if self.fusion_spread == "reference":
                return reference_layers(model.num_blocks)
            return spread_layers(model.num_blocks, self.num_fusion_layers)
        return [layer % model.num_blocks for layer in self.fusion_layers]

    def linear_layers(self, model: ModelConfig) -> list[int]:
        """Block indices of the linear heads: every ``layer_stride``-th layer (1-based)."""
        layers = list(range(self.layer_stride - 1, model.num_blocks, self.layer_stride))
        if not layers:
            raise ValueError(
                f"layer_stride={self.layer_stride} is not valid for a backbone of num_blocks="
                f"{model.num_blocks}; must be <= {model.num_blocks}"
            )
        return layers

    def validate(self, model: ModelConfig) -> None:
        """Checks that need the backbone's size (called by ``make_heads``)."""
        if self.kind == "mcp":
            self.resolved_fusion_layers(model)
            if self.init_from_backbone and self.blocks_per_depth > model.num_blocks:
                raise ValueError(
                    f"blocks_per_depth={self.blocks_per_depth} is not valid with "
                    f"init_from_backbone for a backbone of num_blocks={model.num_blocks}; must "
                    f"be <= {model.num_blocks}"
                )
        if self.kind == "linear":
            self.linear_layers(model)


def check_layers(key: str, layers: list[int] | None, num_blocks: int) -> None:
    if layers is None:
        return
    bad = [layer for layer in layers if not -num_blocks <= layer < num_blocks]
    if bad:
        raise ValueError(
            f"{key}={layers} is not valid; layer indices must be in {-num_blocks}.."
            f"{num_blocks - 1} for a backbone of num_blocks={num_blocks}"
        )
    if len({layer % num_blocks for layer in layers}) != len(layers):
        raise ValueError(f"{key}={layers} is not valid; names the same layer twice")


def spread_layers(num_blocks: int, count: int) -> list[int]:
    """``count`` block indices spread evenly over ``num_blocks``, ending at the last block.

    30 blocks, count 4 -> [7, 14, 21, 29]; 4 blocks -> [0, 1, 2, 3]; 2 blocks -> [0, 1].
    """
    return sorted({max(0, round((j + 1) * num_blocks / count) - 1) for j in range(count)})


def reference_layers(num_blocks: int) -> list[int]:
    """The reference's fused layers 4/12/20/30 of 30 at the same fractions of ``num_blocks``
    blocks (0-based, distinct): 30 -> [3, 11, 19, 29]; 8 -> [0, 2, 4, 7]; 4 -> [0, 1, 2, 3]."""
    return sorted({max(0, round(f * num_blocks) - 1) for f in REFERENCE_FUSION_FRACTIONS})


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def heads_preset(name: str) -> HeadsConfig:
    """``HeadsConfig`` of the preset ``worldmodel/presets/heads/<name>.yaml``."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"heads preset {name!r} is not valid; choose one of: {', '.join(preset_names())}"
        )
    return HeadsConfig(**OmegaConf.to_container(OmegaConf.load(path), resolve=True))
