"""Typed config of ``python -m experiments.reproduce`` and its scale presets.

``conf/reproduce/<paper>/<scale>.yaml`` holds one ``ScalePreset``: which runs the comparison
needs (tasks x settings x fps x seeds x variants) and the train/evaluate overrides of that
scale. The preset files are read by ``scale_preset``, not composed by Hydra: they describe a
sweep, not one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from conf import CONF_DIR
from envs.scene import SETTINGS
from envs.tasks import TASKS
from experiments.config.base import ConfigError, check_choice
from worldmodel.command_line import override

PRESET_DIR = CONF_DIR / "reproduce"
PAPERS = ("next_forcing",)
# the paper's claim steps as fractions of training: 5k ("at an early step") and 45k (the
# baseline's late success that convergence is measured against) of 50k
EARLY_FRACTION, LATE_FRACTION = 0.1, 0.9


@dataclass
class DepthCurve:
    """Extra runs for the depth curve: ``heads`` with each of ``depths`` MCP depths on one
    slice. D=0 (the baseline) and the main variant's own depth come from the main runs."""

    task: str
    setting: str
    fps: float
    seeds: list[int]
    depths: list[int]
    heads: str = "next_forcing"

    def variant(self, depth: int) -> str:
        return f"{self.heads}_d{depth}"


@dataclass
class ScalePreset:
    """The runs of one reproduction scale."""

    tasks: list[str]
    settings: list[str]  # clean | randomized
    fps: list[float]
    seeds: list[int]
    variants: list[str]  # heads presets; the first is the baseline
    steps: int  # training steps of every run
    eval_every: int  # closed-loop success every this many steps: the convergence curve
    eval_episodes: int  # closed-loop episodes of the final evaluation (expert-checked seeds)
    data_episodes: int  # training episodes collected per (task, setting)
    # > 0: train a conv_ae tokenizer (C=8 channels per token) for this many steps on each
    # (task, setting) dataset and train the world models on its latents; 0: the tokenizer of
    # the train overrides (patch tokens of C = 3 * patch^2 channels must stay below model.dim)
    conv_ae_steps: int = 0
    train: list[str] = field(default_factory=list)  # overrides of experiments.train
    evaluate: list[str] = field(default_factory=list)  # overrides of experiments.evaluate
    # more experiments.train overrides of one variant's runs (e.g. its heads.mcp_depth)
    variant_overrides: dict[str, list[str]] = field(default_factory=dict)
    # more experiments.train overrides of the runs at one fps, keyed by its label ("12.5"):
    # e.g. training windows that span whole episodes at a low frame rate
    fps_overrides: dict[str, list[str]] = field(default_factory=dict)
    depth_curve: DepthCurve | None = None  # extra runs: success against the MCP depth
    # closed-loop episodes of each periodic evaluation during training (the convergence
    # curve); None: eval_episodes. At most eval_episodes (the seeds collected).
    periodic_eval_episodes: int | None = None
    # where the claims read "success at 5k steps" (relative improvement) and the baseline's
    # "45k-step" target (convergence): evaluation steps; None = the evaluation step nearest
    # EARLY_FRACTION / LATE_FRACTION of ``steps`` (the paper's 5k and 45k of 50k)
    early_step: int | None = None
    late_step: int | None = None

    def __post_init__(self) -> None:
        for task in self.tasks:
            check_choice("tasks", task, sorted(TASKS))
        for setting in self.settings:
            check_choice("settings", setting, SETTINGS)
        if len(self.variants) < 2:
            raise ConfigError(f"variants={self.variants}: name a baseline and at least one more")
        if self.eval_every < 1 or self.steps % self.eval_every:
            raise ConfigError(
                f"eval_every={self.eval_every}: must divide steps={self.steps} (the last "
                "evaluation is at the end)"
            )
        early, late = self.early, self.late
        if not 0 < early < late <= self.steps:
            raise ConfigError(
                f"early_step={early}, late_step={late}: need 0 < early_step < late_step <= "
                f"steps={self.steps}"
            )
        for key, step in (("early_step", early), ("late_step", late)):
            if step % self.eval_every:
                raise ConfigError(
                    f"{key}={step} must be an evaluation step (a multiple of eval_every="
                    f"{self.eval_every})"
                )
        periodic = self.periodic_eval_episodes
        if periodic is not None and not 0 < periodic <= self.eval_episodes:
            raise ConfigError(
                f"periodic_eval_episodes={periodic}: need 0 < periodic_eval_episodes <= "
                f"eval_episodes={self.eval_episodes} (the evaluation seeds collected)"
            )
        for variant in self.variant_overrides:
            check_choice("variant_overrides", variant, self.variants)
        self.fps_overrides = {f"{float(k):g}": list(v) for k, v in self.fps_overrides.items()}
        for label in self.fps_overrides:
            check_choice("fps_overrides", label, [f"{fps:g}" for fps in self.fps])
        if isinstance(self.depth_curve, dict):
            self.depth_curve = DepthCurve(**self.depth_curve)
        if self.depth_curve is not None:
            self._check_depth_curve(self.depth_curve)

    def _check_depth_curve(self, curve: DepthCurve) -> None:
        """ConfigError unless the curve's slice and seeds are among the main runs'."""
        check_choice("depth_curve.task", curve.task, self.tasks)
        check_choice("depth_curve.setting", curve.setting, self.settings)
        if curve.fps not in self.fps or not set(curve.seeds) <= set(self.seeds):
            raise ConfigError(
                f"depth_curve fps={curve.fps:g}, seeds={curve.seeds}: must be among the "
                f"main runs' fps {self.fps} and seeds {self.seeds} (D=0 comes from them)"
            )
        if not curve.depths or not all(1 <= d <= 4 for d in curve.depths):
            raise ConfigError(f"depth_curve.depths={curve.depths}: MCP depths in 1..4")

    @property
    def baseline(self) -> str:
        return self.variants[0]

    def overrides_at(self, fps: float) -> list[str]:
        """The train overrides of the runs at ``fps`` (``fps_overrides``)."""
        return list(self.fps_overrides.get(f"{fps:g}", []))

    @property
    def early(self) -> int:
        """The early step of the claims (``early_step``, or the evaluation step nearest 10%)."""
        return self.early_step or self._nearest_evaluation(EARLY_FRACTION)

    @property
    def late(self) -> int:
        """The late step of the claims (``late_step``, or the evaluation step nearest 90%)."""
        return self.late_step or self._nearest_evaluation(LATE_FRACTION)

    def _nearest_evaluation(self, fraction: float) -> int:
        """The evaluation step (after step 0) nearest ``fraction`` of the training steps."""
        return max(1, round(fraction * self.steps / self.eval_every)) * self.eval_every

    @property
    def curve_episodes(self) -> int:
        """Closed-loop episodes of each periodic evaluation during training."""
        return self.periodic_eval_episodes or self.eval_episodes

    @property
    def threads(self) -> int | None:
        """Torch threads per run (``train.threads=<n>`` in ``train``), or None when unset."""
        values = [int(o.split("=", 1)[1]) for o in self.train if o.startswith("train.threads=")]
        return values[-1] if values and values[-1] > 0 else None


def scale_names(paper: str) -> list[str]:
    return sorted(p.stem for p in (PRESET_DIR / paper).glob("*.yaml"))


def scale_preset(paper: str, scale: str) -> ScalePreset:
    check_choice("paper", paper, PAPERS)
    check_choice("scale", scale, scale_names(paper))
    values = OmegaConf.to_container(OmegaConf.load(PRESET_DIR / paper / f"{scale}.yaml"))
    return ScalePreset(**values)


@dataclass
class ReproduceConfig:
    """``python -m experiments.reproduce paper=next_forcing scale=tiny``."""

    paper: str = "next_forcing"
    scale: str = "tiny"  # micro (CI) | tiny (30 min, 2 cores) | small | small_pixel | base
    out_dir: str | None = None  # default outputs/reproduce/<paper>_<scale>
    data_dir: str | None = None  # default <out_dir>/data (datasets collected when missing)
    wandb: str = "disabled"  # disabled | offline | online: runs, evaluations and the report
    # runs trained and evaluated at once, each in its own process; 0 = as many as the cores
    # hold at the scale's train.threads (1 when the scale sets none). Datasets and tokenizers
    # are made first, in this process
    jobs: int = 0
    # true: only write <out_dir>/train_commands.sh (one torchrun line per unfinished run, for
    # GPUs or a cluster) and stop; re-run without it to evaluate, aggregate and report
    commands_only: bool = False

    def __post_init__(self) -> None:
        check_choice("paper", self.paper, PAPERS)
        check_choice("scale", self.scale, scale_names(self.paper))
        check_choice("wandb", self.wandb, ("disabled", "offline", "online"))
        if self.jobs < 0:
            raise ConfigError(f"jobs={self.jobs} is not valid; runs at once, or 0 for automatic")

    @property
    def command(self) -> str:
        """The command line of this config, ready to paste (keys left at defaults omitted)."""
        parts = [f"paper={self.paper}", f"scale={self.scale}"]
        defaults = ReproduceConfig()
        for key in ("out_dir", "data_dir", "wandb", "jobs"):
            if getattr(self, key) != getattr(defaults, key):
                parts.append(override(key, getattr(self, key)))
        return "python -m experiments.reproduce " + " ".join(parts)
