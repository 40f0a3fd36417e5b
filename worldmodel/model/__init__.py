"""Chunk-causal video/action world model backbone: layout and mask, config, blocks, model."""

from worldmodel.model.config import ModelConfig, model_preset
from worldmodel.model.kv_cache import KVCache
from worldmodel.model.layout import sequence_layout, training_mask
from worldmodel.model.world_model import (
    TrainOutputs,
    WindowInputs,
    WindowOutputs,
    WorldModel,
)

__all__ = [
    "KVCache",
    "ModelConfig",
    "TrainOutputs",
    "WindowInputs",
    "WindowOutputs",
    "WorldModel",
    "model_preset",
    "sequence_layout",
    "training_mask",
]
