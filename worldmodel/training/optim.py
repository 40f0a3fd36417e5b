"""AdamW with decoupled weight decay on matrices only, and a warmup-cosine learning rate."""

from __future__ import annotations

import math

import torch
from torch import nn

from worldmodel.training.config import TrainLoopConfig


def make_optimizer(model: nn.Module, config: TrainLoopConfig) -> torch.optim.AdamW:
    """Weight decay on weights of 2+ dims; none on biases, norms, embeddings-as-vectors."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


def lr_factor(step: int, config: TrainLoopConfig) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based): linear warmup over
    ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``steps``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainLoopConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
