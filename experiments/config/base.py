"""What every app's config shares: the error a bad value raises and the check of a choice.

Values are checked in ``__post_init__``, which runs when an app turns the composed config
into its dataclass (``OmegaConf.to_object``): a bad value fails before any work, with one
line naming the key and the valid choices. Unknown keys are rejected by Hydra itself.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and the valid choices."""


def check_choice(key: str, value: object, valid) -> None:
    if value not in valid:
        raise ConfigError(
            f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}"
        )
