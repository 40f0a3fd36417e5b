"""The Hydra configs and presets (YAML files), a package so that an installed copy finds them."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent
