"""``ModelConfig``: every hyperparameter of the chunk-causal world model backbone.

Size presets (``tiny``, ``small``, ``base``) live in ``worldmodel/presets/model/<name>.yaml``
and set the width/num_blocks keys; ``ModelConfig(**model_preset("tiny"), K=..., ...)`` fills in
the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from worldmodel.flow import LOSS_WEIGHTINGS
from worldmodel.model.actions import ACTION_NORMS, ACTION_SPACES
from worldmodel.presets import PRESETS_DIR

PRESET_DIR = PRESETS_DIR / "model"


@dataclass
class ModelConfig:
    """Backbone hyperparameters; names follow the glossary in ``worldmodel/model/layout.py``."""

    dim: int = 64  # transformer width
    num_blocks: int = 4  # transformer blocks of the backbone
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * dim
    K: int = 2  # latent frames per chunk at inference (the reference's frame_chunk_size = 2)
    # Chunk sizes a training step draws from, uniformly, with the step's generator (one draw
    # per step, before the noise); the reference draws 1-4 (next-forcing wan_va/train.py,
    # _prepare_input_dict). None = always K. A single choice draws nothing.
    K_choices: list[int] | None = None
    tokens_per_frame: int = 4  # N: video tokens per latent frame
    latent_dim: int = 8  # C: channels of one video token (from the tokenizer)
    action_dim: int = 14  # actions of one control step (two 7-DoF arms)
    actions_per_frame: int = 4  # control steps per latent frame (control_hz / fps)
    max_chunks: int = 16  # most chunks in one sequence (training window or rollout)
    attention_window: int | None = None  # clean chunks visible before the own chunk; None=all
    # [lo, hi]: each training step draws its attention window uniformly from lo..hi chunks
    # (after the chunk size), so the model learns every visible context; the reference draws
    # window_size 4-64 over ids that count 2 per chunk, i.e. 2-32 chunks. None = always
    # attention_window. Inference uses attention_window.
    train_attention_windows: list[int] | None = None
    video_shift: float = 5.0  # timestep shift of video noise levels
    action_shift: float = 1.0  # timestep shift of action noise levels
    noisy_history_prob: float = 0.5  # probability a sample's clean video context is re-noised
    # re-noised context levels: shift_sigma(U(0, noisy_history_max_u), noisy_history_shift),
    # per frame; the reference: the shift-5 video table's lower half (max_u 0.5, shift None =
    # video_shift; sigma 0.005-0.833). Runs before 2026-12-07: max_u 0.1, shift 1 (U(0, 0.1))
    noisy_history_max_u: float = 0.5
    noisy_history_shift: float | None = None
    # per-noise-level loss weights (worldmodel/flow.py): table (the reference's, mean 1 under
    # each loss's shift) | bell (logit-normal, before 2026-12-07)
    loss_weighting: str = "table"
    dropout: float = 0.0  # dropout on attention weights and residual branches
    # actions in model units (worldmodel/model/actions.py): relative to the joint positions at
    # the chunk's start (grippers absolute) or absolute; quantile (q01/q99 -> -1/1) or zscore
    action_space: str = "relative"
    action_norm: str = "quantile"
    # inference defaults: Euler steps per video chunk and per action chunk (the references:
    # 25 and 50); the evaluation configs use these unless they set their own
    video_steps: int = 10
    action_steps: int = 10
    # derived from data.window_frames at build: latent frames per training window, which
    # bounds the context inference may use (``trained_chunks``); None = not known
    train_window_frames: int | None = None

    def __post_init__(self) -> None:
        for key in (
            "dim",
            "num_blocks",
            "heads",
            "K",
            "tokens_per_frame",
            "latent_dim",
            "action_dim",
            "actions_per_frame",
            "max_chunks",
            "video_steps",
            "action_steps",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} is not valid; must be >= 1")
        if self.K_choices is not None:
            self.K_choices = list(self.K_choices)
            if not self.K_choices or len(set(self.K_choices)) != len(self.K_choices):
                raise ValueError(
                    f"K_choices={self.K_choices} is not valid; must be a non-empty list of "
                    "distinct chunk sizes, or None"
                )
            if any(not isinstance(k, int) or k < 1 for k in self.K_choices):
                raise ValueError(
                    f"K_choices={self.K_choices} is not valid; every chunk size must be an "
                    "integer >= 1"
                )
            if self.K not in self.K_choices:
                raise ValueError(
                    f"K_choices={self.K_choices} is not valid; must hold the inference chunk "
                    f"size K={self.K}"
                )
        if self.train_attention_windows is not None:
            self.train_attention_windows = list(self.train_attention_windows)
            lo_hi = self.train_attention_windows
            if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1]:
                raise ValueError(
                    f"train_attention_windows={lo_hi} is not valid; give [lo, hi] chunks with "
                    "1 <= lo <= hi, or None"
                )
        if self.dim % self.heads != 0:
            raise ValueError(
                f"dim={self.dim} is not valid; must be divisible by heads={self.heads}"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio={self.mlp_ratio} is not valid; must be > 0")
        if self.attention_window is not None and self.attention_window < 1:
            raise ValueError(
                f"attention_window={self.attention_window} is not valid; must be >= 1 or None"
            )
        for key in ("video_shift", "action_shift"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}={getattr(self, key)} is not valid; must be > 0")
        for key in ("noisy_history_prob", "noisy_history_max_u"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key}={getattr(self, key)} is not valid; must be in [0, 1]")
        if self.noisy_history_shift is not None and self.noisy_history_shift <= 0:
            raise ValueError(
                f"noisy_history_shift={self.noisy_history_shift} is not valid; must be > 0"
            )
        check_option("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        check_option("action_space", self.action_space, ACTION_SPACES)
        check_option("action_norm", self.action_norm, ACTION_NORMS)
        if self.train_window_frames is not None and self.train_window_frames < self.K:
            raise ValueError(
                f"train_window_frames={self.train_window_frames} is not valid; must hold a "
                f"chunk of K={self.K} frames"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} is not valid; must be in [0, 1)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def max_K(self) -> int:
        """The largest chunk size of training or inference (frame-in-chunk embeddings)."""
        return max([self.K, *(self.K_choices or [])])

    @property
    def min_K(self) -> int:
        """The smallest chunk size a training step uses (the most chunks per window)."""
        return min(self.K_choices) if self.K_choices else self.K

    @property
    def history_shift(self) -> float:
        """Timestep shift of the re-noised context levels."""
        return self.video_shift if self.noisy_history_shift is None else self.noisy_history_shift

    @property
    def action_token_dim(self) -> int:
        """Features of one action token: the actions leading into one latent frame."""
        return self.actions_per_frame * self.action_dim

    @property
    def trained_chunks(self) -> int:
        """Chunk positions 0..n-1 that training windows held at chunk size K: the most
        chunks one inference sequence may hold (max_chunks when the window is not known)."""
        if self.train_window_frames is None:
            return self.max_chunks
        return min(self.train_window_frames // self.K, self.max_chunks)


def check_option(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{key}={value!r} is not valid; choose one of: {', '.join(options)}")


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def model_preset(name: str) -> dict:
    """Keys of the size preset ``worldmodel/presets/model/<name>.yaml`` as a plain dict."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"model preset {name!r} is not valid; choose one of: {', '.join(preset_names())}"
        )
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
