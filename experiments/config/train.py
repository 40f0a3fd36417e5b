"""Typed config of ``python -m experiments.train`` (``TrainConfig``), one dataclass per group.

Groups mirror code: ``task``, ``data``, ``tokenizer`` (``TokenizerConfig``), ``model``
(``ModelConfig``), ``heads`` (``HeadsConfig``), ``train``, ``eval``, ``logger`` and the named
``experiment`` presets under ``conf/experiment/``. Every key is documented where it is
declared. ``check_train_config`` runs the checks that need more than one group (the fps
divides the control rate, the window holds a chunk, ...) before any work starts.

Model keys derived from the data are not config keys a user sets: ``tokens_per_frame`` and
``latent_dim`` come from the tokenizer, ``action_dim`` from the dataset and
``actions_per_frame`` from the frame rate (``fps`` and ``frames_per_latent``,
``worldmodel/timing.py``) and ``train_window_frames`` from
``data.window_frames`` (``worldmodel/training/build.py``); a run that sets one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envs.env import CONTROL_HZ
from envs.scene import CAMERA_ALIASES, SETTINGS
from envs.tasks import TASKS
from experiments.config.base import ConfigError, check_choice
from worldmodel.heads.config import HeadsConfig
from worldmodel.inference.session import MODES as INFERENCE_MODES
from worldmodel.inference.session import check_context, chunks_per_step
from worldmodel.model.config import ModelConfig
from worldmodel.timing import FRAMES_PER_LATENT, FrameRate
from worldmodel.tokenizer.factory import TokenizerConfig
from worldmodel.training.build import DERIVED_MODEL_KEYS, derived_keys_set
from worldmodel.training.config import TrainLoopConfig

WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class TaskConfig:
    """Group ``task``: which manipulation task and setting the run learns."""

    name: str = "handover_block"  # one of envs.tasks.TASKS
    setting: str = "clean"  # clean | randomized (dataset and evaluation episodes)

    def __post_init__(self) -> None:
        check_choice("task.name", self.name, sorted(TASKS))
        check_choice("task.setting", self.setting, SETTINGS)


@dataclass
class DataConfig:
    """Group ``data``: the expert dataset and the training windows cut from it."""

    dir: str = "data"  # datasets live at <dir>/<task>_<setting>.h5
    episodes: int = 50  # episodes to collect when the dataset is missing (auto_collect)
    eval_episodes: int = 20  # expert-checked evaluation seeds to collect with them
    val_episodes: int = 5  # last episodes of the file held out for validation loss
    cameras: list[str] = field(default_factory=lambda: ["head", "left_wrist", "right_wrist"])
    image_size: list[int] = field(default_factory=lambda: [64, 64])  # [height, width]
    window_frames: int = 8  # latent frames per training window (window_frames // K chunks)
    # share of training windows drawn among those that start at an episode's frame 0, where
    # every closed-loop episode starts (uniform starts give about 1 in frames-per-episode)
    episode_start_prob: float = 0.2
    auto_collect: bool = False  # collect a missing dataset instead of stopping
    collect_workers: int = 1  # worker processes of auto_collect
    cache_dir: str = "data/latents"  # latent cache of tokenizers with weights (conv_ae)
    max_memory_gb: float = 8.0  # latents of the run's frames are held in memory up to this

    def __post_init__(self) -> None:
        for camera in self.cameras:  # none: the state track (tokenizer=state)
            check_choice("data.cameras", camera, list(CAMERA_ALIASES))
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ConfigError(
                f"data.image_size={self.image_size} is not valid; give [height, width], each >= 16"
            )
        for key in ("episodes", "window_frames", "collect_workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}={getattr(self, key)} is not valid; must be >= 1")
        for key in ("val_episodes", "eval_episodes"):
            if getattr(self, key) < 0:
                raise ConfigError(f"data.{key}={getattr(self, key)} is not valid; must be >= 0")
        if not 0.0 <= self.episode_start_prob <= 1.0:
            raise ConfigError(
                f"data.episode_start_prob={self.episode_start_prob} is not valid; must be in [0, 1]"
            )
        if self.max_memory_gb <= 0:
            raise ConfigError(f"data.max_memory_gb={self.max_memory_gb} is not valid; must be > 0")


@dataclass
class EvalConfig:
    """Group ``eval``: what runs every ``every`` steps (and at the end of training)."""

    every: int = 500  # steps between evaluations; 0 = only at the end
    val_windows: int = 64  # validation windows (fixed windows and noise) for val/ losses
    closed_loop: bool = False  # also closed-loop success on the dataset's evaluation seeds
    episodes: int = 10  # closed-loop episodes (the first stored evaluation seeds)
    workers: int = 1  # closed-loop worker processes
    batch_size: int = 16  # closed-loop episodes in lockstep per batched world-model pass
    mode: str = "standard"  # closed-loop inference: standard | mcp_parallel
    video_steps: int | None = None  # Euler steps per imagined video chunk; None = model's
    action_steps: int | None = None  # Euler steps per action chunk; None = model's
    # real chunks the closed loop keeps when its context slides; None = as many as training
    # windows hold (data.window_frames // model.K minus the chunks of one step)
    context_chunks: int | None = None
    max_steps: int = 0  # closed-loop control-step limit; 0 = the env's default
    rollout_video: bool = True  # a held-out open-loop rollout video (real | imagined | diff)
    rollout_horizon: int = 4  # imagined chunks of that video, after one real chunk

    def __post_init__(self) -> None:
        for key in ("every", "val_windows", "episodes", "max_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"eval.{key}={getattr(self, key)} is not valid; must be >= 0")
        for key in ("workers", "batch_size", "video_steps", "action_steps", "rollout_horizon"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"eval.{key}={value} is not valid; must be >= 1")
        check_choice("eval.mode", self.mode, INFERENCE_MODES)


@dataclass
class LoggerConfig:
    """Group ``logger``: wandb (``mode``) beside the always-written ``metrics.jsonl``."""

    mode: str = "offline"  # offline | online | disabled
    project: str = "worldmodel-bench"
    entity: str | None = None
    init: dict[str, Any] = field(default_factory=dict)  # more wandb.init arguments, verbatim
    progress: bool = True  # terminal progress bar

    def __post_init__(self) -> None:
        check_choice("logger.mode", self.mode, WANDB_MODES)


@dataclass
class TrainConfig:
    """``python -m experiments.train``: one training run into one run folder."""

    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    name: str = "default"  # experiment name: wandb group and run-folder prefix
    # label of this model in comparisons (run.json, reports); None = the heads preset plus
    # every override that changes the model or its training (experiments.runs.variant_label)
    variant: str | None = None
    # video frames per second, the paper's label (12.5 | 25 | 50; 50 / fps a whole number of
    # control steps); a latent frame holds frames_per_latent of them (worldmodel/timing.py):
    # fps=50 runs 4 actions per latent frame, 25 runs 8, 12.5 (the paper's "12") runs 16
    fps: float = 50.0
    frames_per_latent: int = FRAMES_PER_LATENT  # video frames per latent frame (the VAE's 4)
    seed: int = 0
    resume: bool = True  # continue from the run folder's last checkpoint when it has one
    # start from this checkpoint instead: a step_<n>.pt of the run folder (its later history
    # is dropped) or another run's checkpoint (a fork: train.* and seed may differ)
    resume_from: str = ""

    @property
    def frame_rate(self) -> FrameRate:
        return FrameRate(self.fps, self.frames_per_latent, CONTROL_HZ)


def check_train_config(config: TrainConfig) -> None:
    """Checks that involve more than one group (and the top-level keys); raises
    ``ConfigError`` naming the keys."""
    if config.seed < 0:
        raise ConfigError(f"seed={config.seed} is not valid; must be >= 0")
    try:
        config.frame_rate  # noqa: B018 (validates fps and frames_per_latent)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    model, data = config.model, config.data
    if user_set := derived_keys_set(model):
        key = user_set[0]
        raise ConfigError(
            f"model.{key}={getattr(model, key)} is derived from {DERIVED_MODEL_KEYS[key]}, "
            f"not set; remove the model.{key} override"
        )
    if not data.cameras and config.tokenizer.name != "state":
        raise ConfigError(
            f"data.cameras=[] leaves tokenizer={config.tokenizer.name} no images to encode; "
            "name a camera, or train on the state track with data=state tokenizer=state"
        )
    if model.K > data.window_frames:
        raise ConfigError(
            f"model.K={model.K} is larger than the window data.window_frames="
            f"{data.window_frames}; raise the window or lower K"
        )
    chunks = data.window_frames // model.K
    most = data.window_frames // model.min_K  # chunks of the smallest chunk size trained
    if most > model.max_chunks:
        raise ConfigError(
            f"data.window_frames={data.window_frames} makes {most} chunks of K={model.min_K}, "
            f"more than model.max_chunks={model.max_chunks}; raise model.max_chunks"
        )
    depth = config.heads.mcp_depth
    if config.heads.enabled and depth >= chunks:
        raise ConfigError(
            f"heads.mcp_depth={depth} needs windows of more than {depth} chunks, but "
            f"data.window_frames={data.window_frames} // K={model.K} = {chunks}"
        )
    try:
        config.heads.validate(model)
    except ValueError as exc:
        raise ConfigError(f"heads: {exc}") from None
    if config.train.batch_size % config.train.grad_accum != 0:
        raise ConfigError(
            f"train.batch_size={config.train.batch_size} is not divisible by "
            f"train.grad_accum={config.train.grad_accum}"
        )
    if config.eval.mode == "mcp_parallel" and config.heads.kind != "mcp":
        raise ConfigError(
            f"eval.mode=mcp_parallel needs MCP heads; heads.kind={config.heads.kind!r}"
        )
    try:
        per_step = chunks_per_step(config.eval.mode)
        check_context(chunks, per_step, config.eval.context_chunks, "eval.context_chunks")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
