"""What every app does at its edges: one-line errors for user mistakes instead of tracebacks."""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf import CONF_DIR
from experiments.config.base import ConfigError
from worldmodel.command_line import override
from worldmodel.data.episodes import DatasetError
from worldmodel.folder_lock import FolderInUse
from worldmodel.presets import PRESETS_DIR
from worldmodel.training.checkpoint import CheckpointError
from worldmodel.training.renamed_keys import renamed_key
from worldmodel.training.stop_signals import EXIT_INTERRUPTED, Interrupted, stop_at_once
from worldmodel.training.trainer import TrainingError
from worldmodel.training.windows import MemoryBudgetError

T = TypeVar("T")
USER_ERRORS = (
    ConfigError,
    DatasetError,
    CheckpointError,
    TrainingError,
    MemoryBudgetError,
    FolderInUse,
)
# What to do when the file system refuses a write (by errno); what was written before is kept
FILE_SYSTEM_FIXES = {
    errno.ENOSPC: "free space on that disk or write elsewhere",
    errno.EDQUOT: "free space within your quota or write elsewhere",
    errno.EFBIG: "the file system refused the file's size: write elsewhere",
    errno.EACCES: "make it writable or write elsewhere",
    errno.EPERM: "make it writable or write elsewhere",
    errno.EROFS: "it is on a read-only file system: write elsewhere",
}
APPS_CONF_DIR = CONF_DIR / "apps"  # apps whose keys are plain values (conf/apps/README.md)


def to_config(cfg: DictConfig, schema: type[T]) -> T:
    """The composed config as its dataclass; validation errors become ``ConfigError`` whose
    message starts with the group of the bad key (``model: dim=63 is not valid; ...``)."""
    try:
        config = OmegaConf.to_object(cfg)
    except ValueError as exc:
        raise ConfigError(_with_group(cfg, exc)) from None
    if not isinstance(config, schema):
        raise ConfigError(f"config does not match {schema.__name__}")
    return config


def _with_group(cfg: DictConfig, exc: ValueError) -> str:
    """``exc``'s message prefixed with the first group whose node fails on its own."""
    for key in cfg:
        node = cfg[key]
        if isinstance(node, DictConfig):
            try:
                OmegaConf.to_object(node)
            except ValueError as group_exc:
                message = str(group_exc)
                return message if message.startswith(f"{key}.") else f"{key}: {message}"
    return str(exc)


class JobFailed(RuntimeError):
    """A multirun job stopped on a user error; the other jobs of the sweep go on."""


def exit_on_user_error(app: Callable[..., T]) -> Callable[..., T]:
    """Print ``error: <one line>`` and exit 2 for bad configs, unusable datasets and refused
    file-system writes (``os_error_line``); inside a
    multirun (``-m``) raise ``JobFailed`` instead, so Hydra marks only this job failed. A
    training stopped by SIGTERM or SIGINT prints ``stopped: <one line>`` and exits
    ``EXIT_INTERRUPTED``: its checkpoint is written and the same command resumes it; so does
    any app stopped at another point (``stop_at_once``)."""

    @functools.wraps(app)
    def wrapper(*args, **kwargs):
        try:
            with stop_at_once():
                return app(*args, **kwargs)
        except (*USER_ERRORS, OSError) as error:
            message = os_error_line(error) if isinstance(error, OSError) else str(error)
            print(f"error: {message}", file=sys.stderr)
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                raise JobFailed(message) from None
            sys.exit(2)
        except Interrupted as stopped:
            print(f"stopped: {stopped}", file=sys.stderr)
            stopped.hand_over()  # a scheduler's preemption handler requeues and exits here
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def os_error_line(exc: OSError) -> str:
    """``<path>: <cause>; <fix>`` for a file-system error on a user's path."""
    where = f"{exc.filename}: " if exc.filename else ""
    cause = exc.strerror or str(exc)
    fix = FILE_SYSTEM_FIXES.get(exc.errno, "check the path")
    return f"{where}{cause}; {fix}"


def check_overrides(
    config_name: str,
    argv: list[str],
    validate: Callable[[DictConfig], object],
    conf_dir: Path = CONF_DIR,
) -> None:
    """Compose ``conf/<config_name>`` with the command line's overrides before Hydra starts
    and run ``validate`` on it: a bad key, value or group option exits with one line
    (``error: ...``, status 2) instead of Hydra's multi-line report. Sweeps (``a=1,2``) are
    checked value by value; ``hydra`` overrides and flags are left to Hydra."""
    overrides = [
        arg for arg in argv if "=" in arg and not arg.startswith(("-", "hydra", "+hydra", "~hydra"))
    ]
    try:
        for variant in _override_variants(overrides):
            with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
                cfg = compose(config_name, overrides=variant)
            _check_added_keys(cfg, variant)
            validate(cfg)
        _check_output_folder(argv, conf_dir, config_name)
    except (HydraException, OmegaConfBaseException) as exc:
        _exit_with(_one_line(exc))
    except USER_ERRORS as exc:
        _exit_with(str(exc))


def _check_added_keys(cfg: DictConfig, overrides: list[str]) -> None:
    """Exit with one line when a ``+key=`` or ``++key=`` override adds a key that is not a
    field of the typed config (a misspelling Hydra would otherwise add and the app ignore);
    keys under a free-form dict field, such as ``logger.init``, stay allowed."""
    for text in overrides:
        if not text.startswith("+") or text.lstrip("+").startswith("hydra"):
            continue
        key = text.lstrip("+").split("=", 1)[0]
        parent_key, _, leaf = key.rpartition(".")
        parent = cfg if not parent_key else OmegaConf.select(cfg, parent_key)
        schema = OmegaConf.get_type(parent) if isinstance(parent, DictConfig) else None
        if dataclasses.is_dataclass(schema) and leaf not in {
            f.name for f in dataclasses.fields(schema)
        }:
            renamed = renamed_key(key)
            hint = (
                f"it was renamed: use {renamed}"
                if renamed
                else f"check the spelling (its keys are documented in the {schema.__name__} "
                "dataclass)"
            )
            _exit_with(f"{text}: {key} is not a config key of {schema.__name__}; {hint}")


def _check_output_folder(argv: list[str], conf_dir: Path, config_name: str) -> None:
    """Exit with one line when the folder Hydra is about to create cannot be written (Hydra
    itself would fail with a traceback)."""
    multirun = "-m" in argv or "--multirun" in argv
    overrides = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    if multirun:
        overrides = [o for o in overrides if o.startswith(("hydra", "+hydra", "~hydra"))]
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    folder = Path(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir)
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        _exit_with(
            f"{folder}: {existing} is not a writable folder; make it writable or choose "
            f"another with {key}=<dir>"
        )


def _exit_with(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _override_variants(overrides: list[str]) -> list[list[str]]:
    """The overrides with every sweep at its first value, then each other value in turn."""
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as exc:
        _exit_with(_unreadable_override(parser, overrides) or _one_line(exc))
    choices = []
    for item, text in zip(parsed, overrides, strict=True):
        if item.is_sweep_override():
            key = text.split("=", 1)[0]
            choices.append([f"{key}={value}" for value in item.sweep_string_iterator()])
        else:
            choices.append([text])
    base = [values[0] for values in choices]
    variants = [base]
    for i, values in enumerate(choices):
        variants += [base[:i] + [value] + base[i + 1 :] for value in values[1:]]
    return variants


def _unreadable_override(parser: OverridesParser, overrides: list[str]) -> str | None:
    """For the first ``key=value`` Hydra cannot read as written (a path with a space or a
    non-ASCII letter, say), the line that names it and the quoted word to paste instead."""
    for text in overrides:
        try:
            parser.parse_override(text)
        except HydraException:
            key, sep, value = text.partition("=")
            if sep and key and not key.startswith(("+", "~")):
                return (
                    f"{text}: Hydra cannot read this value unquoted; pass it as "
                    f"{override(key, value)}"
                )
    return None


def _one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line errors as one line naming the key and the choices."""
    message = str(exc)
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", message)
    if missing:
        group, option = missing.groups()
        folders = (CONF_DIR / group, PRESETS_DIR / group)  # model and heads: the library's
        options = sorted(p.stem for folder in folders for p in folder.glob("*.yaml"))
        return f"{group}={option} is not valid; choose one of: {', '.join(options)}"
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    detail = str(cause)
    full_key = re.search(r"full_key: (\S+)", detail)
    first = detail.strip().splitlines()[0] if detail.strip() else type(cause).__name__
    unknown = re.match(r"Key '([^']+)' not in '([^']+)'", first)
    if unknown and full_key:
        renamed = renamed_key(full_key.group(1))
        if renamed:
            return f"{full_key.group(1)} was renamed on 2026-12-04: use {renamed} instead"
        return (
            f"{full_key.group(1)} is not a config key of {unknown.group(2)}; check the "
            f"spelling (its keys are documented in the {unknown.group(2)} dataclass)"
        )
    if full_key:
        return f"{full_key.group(1)}: {first}"
    return first
