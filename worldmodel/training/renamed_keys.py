"""Runs written before two keys were renamed, read under today's names.

Until 2026-12-04 the backbone's block count was ``model.depth``, the MCP depth D was
``heads.depths`` and a checkpoint held the MCP modules under ``heads.depths.<k>.``: one word
for three things. Every reader of a stored run goes through here: ``config.yaml``, a
checkpoint's ``config`` and ``build``, and its weights, so old runs and committed reports keep
loading, resuming and aggregating.
"""

from __future__ import annotations

from typing import Any

RENAMED_KEYS = {"model": {"depth": "num_blocks"}, "heads": {"depths": "mcp_depth"}}
RENAMED_WEIGHTS = {"heads.depths.": "heads.depth_modules."}  # old prefix -> new prefix


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a run config or a checkpoint's build, with ``model`` and ``heads``
    sections) with the old key names replaced, in their order."""
    upgraded = dict(config)
    for section, renames in RENAMED_KEYS.items():
        values = upgraded.get(section)
        if isinstance(values, dict):
            upgraded[section] = {renames.get(key, key): value for key, value in values.items()}
    return upgraded


def renamed_key(dotted: str) -> str | None:
    """Today's name of an old dotted config key (``model.depth`` -> ``model.num_blocks``)."""
    section, _, key = dotted.partition(".")
    new = RENAMED_KEYS.get(section, {}).get(key)
    return f"{section}.{new}" if new else None


def upgrade_weights(state: dict[str, Any]) -> dict[str, Any]:
    """A model state dict with the old parameter prefixes replaced."""
    return {_renamed_weight(key): value for key, value in state.items()}


def _renamed_weight(key: str) -> str:
    for old, new in RENAMED_WEIGHTS.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def upgrade_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint dict whose config, build and model weights use today's names."""
    upgraded = dict(payload)
    for key in ("config", "build"):
        if isinstance(upgraded.get(key), dict):
            upgraded[key] = upgrade_config(upgraded[key])
    if isinstance(upgraded.get("model"), dict):
        upgraded["model"] = upgrade_weights(upgraded["model"])
    return upgraded
