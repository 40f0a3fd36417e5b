"""Tokenizers: camera frames <-> latent tokens (``patch``, ``conv_ae``) and a latent cache.

``encode({camera: (..., H, W, 3)}) -> (..., N, C)``, cameras concatenated along N in the
tokenizer's order; ``decode`` inverts it to floats in [0, 1]. See ``base.py`` for the glossary.
"""

from worldmodel.tokenizer.base import Tokenizer, psnr
from worldmodel.tokenizer.cache import (
    LatentCache,
    cache_path,
    encode_dataset,
    load_cached_latents,
)
from worldmodel.tokenizer.conv_ae import ConvAETokenizer, load_conv_ae, save_conv_ae
from worldmodel.tokenizer.factory import TOKENIZERS, TokenizerConfig, make_tokenizer
from worldmodel.tokenizer.patch import PatchTokenizer
from worldmodel.tokenizer.training import train_conv_ae

__all__ = [
    "TOKENIZERS",
    "ConvAETokenizer",
    "LatentCache",
    "PatchTokenizer",
    "Tokenizer",
    "TokenizerConfig",
    "cache_path",
    "encode_dataset",
    "load_cached_latents",
    "load_conv_ae",
    "make_tokenizer",
    "psnr",
    "save_conv_ae",
    "train_conv_ae",
]
