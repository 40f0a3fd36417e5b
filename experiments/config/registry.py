"""Every app's typed config registered with Hydra's ConfigStore (``<app>_schema``)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from experiments.config.collect import CollectConfig, PreviewConfig
from experiments.config.evaluate import EvaluateConfig
from experiments.config.reproduce import ReproduceConfig
from experiments.config.train import TrainConfig
from experiments.runs import register_run_resolvers


def register_configs() -> None:
    """The apps' typed configs, and the resolver that names run folders (experiments/runs.py)."""
    register_run_resolvers()
    store = ConfigStore.instance()
    store.store(name="collect_schema", node=CollectConfig)
    store.store(name="preview_schema", node=PreviewConfig)
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="reproduce_schema", node=ReproduceConfig)
