"""What every app does at its edges: one-line errors for user mistakes instead of tracebacks."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

from experiments.configs import ConfigError
from worldmodel.data.episodes import DatasetError

T = TypeVar("T")
USER_ERRORS = (ConfigError, DatasetError)


def to_config(cfg: DictConfig, schema: type[T]) -> T:
    """The composed config as its dataclass; validation errors become ``ConfigError``."""
    config = OmegaConf.to_object(cfg)
    if not isinstance(config, schema):
        raise ConfigError(f"config does not match {schema.__name__}")
    return config


def exit_on_user_error(app: Callable[..., T]) -> Callable[..., T]:
    """Print ``error: <one line>`` and exit 2 for bad configs and unusable datasets."""

    @functools.wraps(app)
    def wrapper(*args, **kwargs):
        try:
            return app(*args, **kwargs)
        except USER_ERRORS as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper
