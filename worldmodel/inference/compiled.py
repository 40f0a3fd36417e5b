"""The fixed-shape denoising step, compiled: ``compile_denoising(model)``.

Every Euler step of an inference session runs the same blocks over the same number of noisy
tokens against the same cache (``WorldModel.denoising_blocks``), so it can be captured once
per cache length and replayed. On CUDA the capture is a CUDA graph (``torch.compile`` with
``mode="reduce-overhead"``), which removes the per-kernel launch cost that dominates a pass at
batch 1; elsewhere ``torch.compile``'s default mode (fused CPU kernels through a C++
compiler). Clean appends (fused segments of varying length) stay eager. Compiling changes
float rounding only: the numbers equal the eager path's to float tolerance (tested on CPU).
"""

from __future__ import annotations

import torch

from worldmodel.model.transformer import run_blocks
from worldmodel.model.world_model import WorldModel


def compile_denoising(model: WorldModel) -> WorldModel:
    """Make ``model``'s denoising passes (backbone and MCP drafting blocks) run compiled; the
    first pass at each cache length compiles (seconds to a minute), later ones replay."""
    mode = "reduce-overhead" if model.device.type == "cuda" else None
    model.denoising_blocks = torch.compile(run_blocks, mode=mode, dynamic=False)
    # one capture per (blocks, tokens, cache length): video, action and drafting passes at
    # every context length a session reaches
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, 4 * model.config.max_chunks)
    return model
