"""Tiny world-model configs, batches and random weights for the model and heads tests."""

import torch

from worldmodel.model import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    keys = dict(
        dim=32,
        num_blocks=4,
        heads=4,
        K=2,
        tokens_per_frame=4,
        latent_dim=4,
        action_dim=3,
        actions_per_frame=2,
        max_chunks=8,
    )
    keys.update(overrides)
    return ModelConfig(**keys)


def tiny_batch(
    cfg: ModelConfig,
    num_chunks: int,
    batch: int = 2,
    seed: int = 0,
    action_mean: float = 0.0,
    action_std: float = 1.0,
) -> dict:
    """Random latents, actions and the joint positions they start from; the second episode
    ends one chunk before the window."""
    g = torch.Generator().manual_seed(seed)
    F = num_chunks * cfg.K
    valid = torch.ones(batch, F, dtype=torch.bool)
    valid[1, -cfg.K :] = False
    actions = torch.randn(batch, F, cfg.actions_per_frame, cfg.action_dim, generator=g)
    return {
        "video": torch.randn(batch, F, cfg.tokens_per_frame, cfg.latent_dim, generator=g),
        "actions": action_mean + action_std * actions,
        "valid": valid,
        "start_joint_pos": torch.randn(batch, F, cfg.action_dim, generator=g),
    }


def randomise(model: torch.nn.Module, std: float) -> None:
    """Random weights everywhere: AdaLN-zero output heads would hide bugs and block gradients."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
