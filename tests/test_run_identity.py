"""The run identity defined once: the keys a resumed run may change (``RESUMABLE_KEYS``) are the
keys Hydra leaves out of a run folder's name (``conf/train.yaml``'s ``exclude_keys``), so that a
re-run with other infrastructure settings finds its folder and resumes there."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.config.registry import register_configs
from worldmodel.training.resume import RESUMABLE_KEYS

CONF = str(Path(__file__).resolve().parents[1] / "conf")
# Hydra keys that choose config files (a group override), not config values.
GROUP_CHOICES = {"experiment"}


def composed_train_config() -> tuple[dict, list[str]]:
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True)
    excluded = list(cfg.hydra.job.config.override_dirname.exclude_keys)
    config = OmegaConf.to_container(cfg, resolve=False)
    del config["hydra"]
    return config, excluded


def dotted_keys(node: dict, prefix: str = "") -> list[str]:
    """Every key of a nested config, inner nodes and leaves, dotted."""
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys


def resumable(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_KEYS)


def test_every_resumable_key_is_left_out_of_the_folder_name():
    config, excluded = composed_train_config()
    keys = dotted_keys(config)
    missing = [k for k in keys if resumable(k) and k not in excluded]
    assert not missing, f"add to conf/train.yaml's exclude_keys: {missing}"


def test_the_folder_name_leaves_out_only_resumable_keys():
    config, excluded = composed_train_config()
    keys = set(dotted_keys(config))
    identity = [k for k in excluded if k not in GROUP_CHOICES and not resumable(k)]
    assert not identity, f"a change of {identity} is refused on resume, so it must name the folder"
    unknown = [k for k in excluded if k not in GROUP_CHOICES and k not in keys]
    assert not unknown, f"not config keys: {unknown}"
