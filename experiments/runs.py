"""What names a run, in one place: which keys may change when a run resumes, which overrides
tell its model apart in a comparison (its variant), and the folder a command's overrides map
to.

- ``RESUMABLE_KEYS``: infrastructure (logging, evaluation, data paths, threads, the planned
  steps). A re-run that changes only these continues the run in its folder; any other change is
  refused (``worldmodel.training.resume`` receives this list).
- The variant: the heads preset plus every override that is neither the run's identity
  (task, setting, fps, seed) nor resumable (``variant_label``).
- The folder: Hydra's ``run.dir`` and a sweep's ``subdir`` are ``run_folder_name`` of the
  command's overrides (``conf/train.yaml`` calls it through the ``run_folder`` resolver):
  the overrides, sorted, without the resumable ones, so a resumed command finds its folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from worldmodel.training.resume import ResumeRules

# Keys a resumed run may change (a key covers its sub-keys); every other change is refused.
RESUMABLE_KEYS = ("name", "variant", "resume", "resume_from", "logger", "eval", "train.steps")
RESUMABLE_KEYS += ("train.device", "train.threads", "train.log_every", "data.auto_collect")
RESUMABLE_KEYS += ("data.collect_workers", "data.dir", "data.cache_dir", "data.max_memory_gb")
# What a fork may change on top of those: how the model is trained, not what it is.
FORKABLE_KEYS = ("train", "seed")


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The config as two runs are compared: a tokenizer checkpoint inside the data folder by
    its path relative to that folder, so a reproduction copied or moved elsewhere (its data,
    tokenizers and runs together) keeps its runs."""
    tokenizer, data = config.get("tokenizer") or {}, config.get("data") or {}
    checkpoint, data_dir = tokenizer.get("checkpoint"), data.get("dir")
    if not checkpoint or not data_dir or not Path(checkpoint).is_relative_to(data_dir):
        return config
    relative = str(Path(checkpoint).relative_to(data_dir))
    return {**config, "tokenizer": {**tokenizer, "checkpoint": f"<data.dir>/{relative}"}}


RESUME_RULES = ResumeRules(RESUMABLE_KEYS, FORKABLE_KEYS, comparable)  # for worldmodel's resume
# What the seeds of one group may differ in besides the seed: what a resumed run may change,
# except the planned steps, which set the curves (experiments/results/summary.py).
GROUP_FREE_KEYS = (*(k for k in RESUMABLE_KEYS if k != "train.steps"), "seed")
# Group choices that pick config files, not values: they name no folder.
FOLDER_FREE_CHOICES = ("experiment", "hydra")
# What a run is, apart from its variant: task, setting, frame rate and seed.
IDENTITY_KEYS = ("task", "fps", "seed")
# Settings a resume refuses to change that still name no other model: evaluation seeds and
# checkpoint cadence.
NOT_COMPARED_KEYS = ("data.eval_episodes", "train.checkpoint_every", "train.keep_checkpoints")
RESOLVER = "run_folder"


def covers(keys: Sequence[str], key: str) -> bool:
    """Whether ``key`` is one of ``keys`` or below one of them (``logger`` covers
    ``logger.mode``)."""
    return any(key == k or key.startswith(f"{k}.") for k in keys)


def _key(override: str) -> str:
    """The dotted key of an override line (``+``, ``++`` and ``~`` stripped)."""
    return override.lstrip("+~").split("=", 1)[0]


def run_folder_name(overrides: Iterable[str]) -> str:
    """The run folder of a command: its overrides, sorted and joined by ``,``, without the
    resumable keys and the file choices (Hydra's ``override_dirname`` with those excluded)."""
    kept = [o for o in overrides if not covers((*RESUMABLE_KEYS, *FOLDER_FREE_CHOICES), _key(o))]
    return ",".join(sorted(kept))


def variant_label(heads_name: str, overrides: Iterable[str]) -> str:
    """What tells this model apart in a comparison: the heads preset plus every override that
    is not the run's identity (task, setting, fps, seed) or infrastructure (data paths,
    logging, eval, ...); the data it trains on (``data=``, ``data.window_frames=``, ...) is
    named."""
    hidden = (*IDENTITY_KEYS, *RESUMABLE_KEYS, *FOLDER_FREE_CHOICES, *NOT_COMPARED_KEYS)
    kept = [  # heads= itself is named first; heads.* overrides change the model
        o for o in overrides if not covers(hidden, _key(o)) and _key(o) != "heads"
    ]
    return ",".join([heads_name, *sorted(kept)])


def register_run_resolvers() -> None:
    """Let ``conf/train.yaml`` name run folders with ``${run_folder:${hydra.overrides.task}}``
    (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, run_folder_name)
