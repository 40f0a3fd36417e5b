"""The compiled denoising step (``worldmodel/inference/compiled.py``) gives the eager numbers.

On this CPU the capture is ``torch.compile``'s default (inductor, C++ kernels); on CUDA the
same function is captured as CUDA graphs. Both replace ``WorldModel.denoising_blocks`` only.
"""

import pytest
import torch
from torch._dynamo.utils import counters

from tests.tiny_models import randomise, tiny_config
from worldmodel.heads import WorldModelWithHeads, heads_preset
from worldmodel.inference import rollout_open_loop
from worldmodel.inference.compiled import compile_denoising
from worldmodel.model.transformer import run_blocks

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def random_model() -> WorldModelWithHeads:
    torch.manual_seed(0)
    cfg = tiny_config(num_blocks=3, tokens_per_frame=3)  # depth 1 copies 3 backbone blocks
    model = WorldModelWithHeads(cfg, heads_preset("next_forcing")).eval()
    randomise(model, 0.3)
    return model


def imagine(model: WorldModelWithHeads):
    """Two chunks after one real chunk, mcp_parallel: a joint (drafting) pass, then actions
    denoised by the backbone; the same noise every call."""
    g = torch.Generator().manual_seed(1)
    cfg = model.config
    video = torch.randn(2, cfg.K, cfg.tokens_per_frame, cfg.latent_dim, generator=g)
    actions = torch.randn(2, cfg.K, cfg.actions_per_frame, cfg.action_dim, generator=g)
    return rollout_open_loop(
        model, video, actions, 2, 2, mode="mcp_parallel", generator=torch.Generator().manual_seed(2)
    )


@torch.no_grad()
def test_compiled_denoising_equals_eager():
    model = random_model()
    eager = imagine(model)
    counters.clear()
    compile_denoising(model)
    assert model.denoising_blocks is not run_blocks
    compiled = imagine(model)
    assert counters["stats"]["unique_graphs"] >= 3  # video + draft, draft's depth 1, actions
    assert compiled.passes == eager.passes and eager.video.std() > 0.1
    torch.testing.assert_close(compiled.video, eager.video, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled.actions, eager.actions, rtol=1e-4, atol=1e-4)
