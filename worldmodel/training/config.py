"""``TrainLoopConfig`` (config group ``train``): optimiser, schedule, precision, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainLoopConfig:
    """Group ``train``: optimiser, schedule, precision, checkpoints and logging cadence."""

    steps: int = 2000  # optimizer steps of the run
    batch_size: int = 32  # global batch (all processes and accumulation shards together)
    grad_accum: int = 1  # accumulation shards per process and step
    lr: float = 3e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100  # linear warmup, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    precision: str = "auto"  # auto (bf16 autocast on cuda, fp32 on cpu) | fp32 | bf16
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = torch's default
    log_every: int = 10  # steps between train/ metric lines
    checkpoint_every: int = 200  # steps between checkpoints (last.pt is replaced atomically)
    keep_checkpoints: bool = True  # also keep step_<n>.pt of every checkpoint (convergence)

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key}={getattr(self, key)} is not valid; must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"train.lr={self.lr} is not valid; must be > 0")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(
                "train.warmup_steps, train.weight_decay and train.grad_clip must be >= 0"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio={self.min_lr_ratio} is not valid; in [0, 1]")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(
                f"train.betas={self.betas} is not valid; give [beta1, beta2] in [0, 1)"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"train.precision={self.precision!r} is not valid; choose one of: "
                + ", ".join(PRECISIONS)
            )
        if self.threads < 0:
            raise ValueError(f"train.threads={self.threads} is not valid; must be >= 0")
