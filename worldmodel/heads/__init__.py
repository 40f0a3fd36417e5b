"""Auxiliary heads trained with the backbone: Next Forcing MCP modules and the baselines.

``HeadsConfig`` (config group ``heads``, presets in ``conf/heads/``), ``make_heads``,
``WorldModelWithHeads`` (the model the trainer sees) and the open-loop rollout with the
``mcp_parallel`` inference mode.
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
from worldmodel.heads.rollout import RolloutResult, rollout_open_loop

__all__ = [
    "HeadsConfig",
    "LinearHeads",
    "MCPHeads",
    "RolloutResult",
    "WorldModelWithHeads",
    "future_valid",
    "heads_preset",
    "make_heads",
    "rollout_open_loop",
    "shift_chunks",
]
