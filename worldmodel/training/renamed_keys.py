"""Runs written before keys were renamed or changed meaning, read under today's names.

Until 2026-12-04 the backbone's block count was ``model.depth``, the MCP depth D was
``heads.depths`` and a checkpoint held the MCP modules under ``heads.depths.<k>.``: one word
for three things. Until 2026-12-07 ``fps`` was the latent frame rate; it is now the paper's
video frame rate with ``frames_per_latent`` video frames per latent frame
(``worldmodel/timing.py``), so a run stored without ``frames_per_latent`` is read with 1 (the
same actions per latent frame it was trained with). The same day MCP and the losses moved to
the reference's scheme; a run stored without the new keys is read with the values it trained
with (``BEFORE_REFERENCE``: the bell loss weights, MCP tokens at their own chunk's positions,
evenly spread fusion layers, re-noised history at ``U(0, noisy_history_max_sigma)``).
Every reader of a stored run goes through here: ``config.yaml``, a checkpoint's ``config`` and
``build``, and its weights, so old runs and committed reports keep loading, resuming and
aggregating.
"""

from __future__ import annotations

from typing import Any

RENAMED_KEYS = {"model": {"depth": "num_blocks"}, "heads": {"depths": "mcp_depth"}}
RENAMED_WEIGHTS = {"heads.depths.": "heads.depth_modules."}  # old prefix -> new prefix
FRAMES_PER_LATENT_BEFORE = 1  # runs stored before frames_per_latent: fps was the latent rate
# section -> key -> the value a run stored without that key trained with (before 2026-12-07)
BEFORE_REFERENCE = {
    "model": {"loss_weighting": "bell", "noisy_history_shift": 1.0},
    "heads": {"target_positions": False, "fusion_spread": "even"},
}
# old key -> today's key whose meaning equals it under BEFORE_REFERENCE (U(0, x) = shift 1)
CHANGED_KEYS = {"model": {"noisy_history_max_sigma": "noisy_history_max_u"}}


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a run config or a checkpoint's build, with ``model`` and ``heads``
    sections) with the old key names replaced, in their order."""
    upgraded = dict(config)
    for section, renames in RENAMED_KEYS.items():
        values = upgraded.get(section)
        if isinstance(values, dict):
            upgraded[section] = {renames.get(key, key): value for key, value in values.items()}
    for section, before in BEFORE_REFERENCE.items():
        values = upgraded.get(section)
        if isinstance(values, dict) and not any(key in values for key in before):
            changed = CHANGED_KEYS.get(section, {})
            values = {changed.get(key, key): value for key, value in values.items()}
            upgraded[section] = {**values, **before}
    if "fps" in upgraded and "frames_per_latent" not in upgraded:
        upgraded["frames_per_latent"] = FRAMES_PER_LATENT_BEFORE
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
