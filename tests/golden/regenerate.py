"""Golden values of a seeded tiny Next Forcing model: loss terms and gradient statistics.

``compute_golden()`` builds a float32 tiny backbone with ``next_forcing`` heads under
``torch.manual_seed(SEED)``, gives every parameter (and the relative action codec's
statistics) seeded random values (at the true init the
zero-initialised output heads block most gradients, which would leave the MCP path
unchecked), runs one training step's forward/backward on a fixed batch with a fixed noise
generator, and returns the loss terms, the global gradient norm and per-parameter sums of
absolute gradients.

Regenerate ``tests/golden/tiny_next_forcing.json`` (only after an intended change of the
numerics, e.g. of the heads, the flow maths or the draw order; say so in the commit):

    cd /work/main && .venv/bin/python -m tests.golden.regenerate

Checked by ``tests/test_heads_golden.py`` with rtol 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.tiny_models import tiny_config
from worldmodel.heads import WorldModelWithHeads, heads_preset
from worldmodel.training.windows import relative_action_mask

SEED = 1234
GOLDEN_PATH = Path(__file__).resolve().parent / "tiny_next_forcing.json"
NUM_CHUNKS, B = 5, 2
TRACKED = (  # parameters whose gradient |sum| is stored
    "video_in.weight",
    "blocks.0.attn.qkv.weight",
    "blocks.3.mlp.fc.weight",
    "video_head.out.weight",
    "action_head.out.0.weight",
    "heads.fusion.mlp.0.weight",
    "heads.depth_modules.0.proj.weight",
    "heads.depth_modules.0.blocks.2.attn.proj.weight",
    "heads.depth_modules.2.blocks.0.mlp.fc.weight",
)


def tiny_model() -> WorldModelWithHeads:
    torch.manual_seed(SEED)
    model = WorldModelWithHeads(tiny_config(), heads_preset("next_forcing")).float()
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    scale = 0.5 + torch.rand(model.config.action_dim, generator=g)
    model.action_codec.offset.copy_(0.1 * torch.randn(model.config.action_dim, generator=g))
    model.action_codec.scale.copy_(scale)
    model.action_codec.relative.copy_(relative_action_mask(model.config.action_dim))
    return model


def fixed_batch(model: WorldModelWithHeads) -> dict:
    cfg = model.config
    g = torch.Generator().manual_seed(SEED + 1)
    F = NUM_CHUNKS * cfg.K
    valid = torch.ones(B, F, dtype=torch.bool)
    valid[1, -cfg.K :] = False
    action_valid = valid.clone()
    action_valid[0, 0] = False  # the first window starts at an episode's frame 0: padding
    return {
        "video": torch.randn(B, F, cfg.tokens_per_frame, cfg.latent_dim, generator=g),
        "actions": torch.randn(B, F, cfg.actions_per_frame, cfg.action_dim, generator=g),
        "valid": valid,
        "action_valid": action_valid,
        "start_joint_pos": torch.randn(B, F, cfg.action_dim, generator=g),
    }


def compute_golden() -> dict[str, float]:
    """Loss terms (``loss/...``) and gradient statistics (``grad/...``) as plain floats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tiny_model()
        loss, metrics = model(fixed_batch(model), generator=torch.Generator().manual_seed(SEED))
        loss.backward()
    finally:
        torch.set_num_threads(threads)
    params = dict(model.named_parameters())
    grads = [p.grad for p in params.values() if p.grad is not None]
    golden = dict(metrics)
    golden["grad/global_norm"] = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads])
    ).item()
    for name in TRACKED:
        golden[f"grad/abs_sum/{name}"] = params[name].grad.abs().sum().item()
    return golden


def main() -> None:
    golden = compute_golden()
    GOLDEN_PATH.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(golden)} values to {GOLDEN_PATH}")


if __name__ == "__main__":
    main()
