"""Typed config of ``python -m experiments.evaluate`` (``EvaluateConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from envs.scene import SETTINGS
from experiments.config.base import ConfigError, check_choice
from experiments.config.train import INFERENCE_MODES, LoggerConfig

SUITES = ("closed_loop", "baselines", "drift", "speed", "videos", "diagnose")
DEFAULT_SUITES = SUITES[:5]  # diagnose runs when asked for: suites=[diagnose]


@dataclass
class DriftSuiteConfig:
    """Open-loop drift on held-out episodes (``worldmodel/evaluation/drift.py``)."""

    episodes: int = 4  # held-out episodes (one batch)
    context_chunks: int = 1  # real chunks before the imagined ones
    horizon: int = 4  # imagined chunks H
    steps: int = 10  # Euler steps per video chunk (and per action chunk)

    def __post_init__(self) -> None:
        for key in ("episodes", "horizon", "steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"drift.{key}={getattr(self, key)} is not valid; must be >= 1")
        if self.context_chunks < 0:
            raise ConfigError(f"drift.context_chunks={self.context_chunks} is not valid; >= 0")


@dataclass
class EvaluateConfig:
    """``python -m experiments.evaluate checkpoint=<run>/last.pt``; the checkpoint carries the
    run's config, so nothing else is required."""

    checkpoint: str = ""  # a train checkpoint (last.pt or step_<n>.pt); required
    suites: list[str] = field(default_factory=lambda: list(DEFAULT_SUITES))  # subset of SUITES
    out_dir: str | None = None  # default: <run folder>/eval/step_<n>
    # true: the final checkpoint's evaluation replaces an existing <run folder>/eval.json (the
    # run's evaluation, which the aggregation reads); false keeps it
    replace_run_eval: bool = False
    setting: str | None = None  # closed-loop setting; default: the run's
    episodes: int = 20  # closed-loop episodes: the first stored evaluation seeds
    workers: int = 1  # closed-loop worker processes (1 and N give the same per-seed results)
    batch_size: int = 16  # closed-loop episodes in lockstep per batched world-model pass
    modes: list[str] | None = None  # inference modes; default standard (+ mcp_parallel if MCP)
    video_steps: int | None = None  # Euler steps per closed-loop video chunk; None = model's
    action_steps: int | None = None  # Euler steps per action chunk; None = the model's
    # real chunks the closed loop keeps when its context slides; None = as many as the
    # model's training windows hold; more is refused
    context_chunks: int | None = None
    max_steps: int = 0  # closed-loop control-step limit; 0 = the env's default
    videos: int = 2  # episodes with videos (closed loop and open-loop rollout)
    seed: int = 0  # seeds the drift noise
    threads: int = 0  # torch threads of this process (speeds depend on it); 0 = torch's default
    drift: DriftSuiteConfig = field(default_factory=DriftSuiteConfig)
    logger: LoggerConfig = field(default_factory=lambda: LoggerConfig(mode="disabled"))

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ConfigError(
                "checkpoint is required: python -m experiments.evaluate "
                "checkpoint=outputs/train/<run>/last.pt"
            )
        if not self.suites:
            raise ConfigError(f"suites=[] is not valid; choose some of: {', '.join(SUITES)}")
        for suite in self.suites:
            check_choice("suites", suite, SUITES)
        if self.setting is not None:
            check_choice("setting", self.setting, SETTINGS)
        for mode in self.modes or []:
            check_choice("modes", mode, INFERENCE_MODES)
        for key in ("episodes", "workers", "batch_size", "video_steps", "action_steps"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}={value} is not valid; must be >= 1")
        for key in ("max_steps", "videos", "threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)} is not valid; must be >= 0")
