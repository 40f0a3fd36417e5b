"""Model size presets (``model/<name>.yaml``) and heads presets (``heads/<name>.yaml``): data
of the library, read by ``model_preset`` and ``heads_preset``; the apps' Hydra configs find
them as the config groups ``model`` and ``heads`` (``conf/train.yaml``: ``hydra.searchpath``)."""

from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent
