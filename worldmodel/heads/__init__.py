"""Auxiliary heads trained with the backbone: Next Forcing MCP modules and the baselines.

``HeadsConfig`` (config group ``heads``, presets in ``worldmodel/presets/heads/``),
``make_heads`` and ``WorldModelWithHeads`` (the model the trainer sees); ``draft.py`` runs MCP
depth 1 as the drafter of the ``mcp_parallel`` inference mode (``worldmodel/inference/``).
"""

from worldmodel.heads.config import HeadsConfig, heads_preset
from worldmodel.heads.modules import (
    LinearHeads,
    MCPHeads,
    WorldModelWithHeads,
    future_valid,
    make_heads,
    shift_chunks,
)

__all__ = [
    "HeadsConfig",
    "LinearHeads",
    "MCPHeads",
    "WorldModelWithHeads",
    "future_valid",
    "heads_preset",
    "make_heads",
    "shift_chunks",
]
