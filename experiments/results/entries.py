"""The entries of ``summary.json`` as dataclasses, each with its one reader (``from_dict``):
the report, the figures and the tests read these fields, never the file's string keys.

``to_dict`` gives the file's form: fields in declaration order, and the optional fields an
entry does not have (``OPTIONAL``, None) left out, so the file is what it always was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

import numpy as np

from experiments.results.eval_file import PolicyResult
from worldmodel.evaluation.statistics import value_at


def as_plain(value: Any) -> Any:
    """``value`` with every dataclass in it as its dict (a :class:`SummaryEntry` as its
    ``to_dict``): what ``json.dumps`` writes."""
    if isinstance(value, SummaryEntry):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [as_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: as_plain(item) for key, item in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class SummaryEntry:
    """An entry of ``summary.json``: ``to_dict`` writes it, ``from_dict`` reads it back."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()  # fields left out of the file when None

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            name: as_plain(value)
            for name, value in values.items()
            if not (value is None and name in self.OPTIONAL)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SummaryEntry:
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class Estimate(SummaryEntry):
    """A final quantity of a group (``success/<policy>``, ``final/<loss>``, ``speed/...``):
    the mean over seeds, or with ``task == "all"`` the IQM across ``tasks``, and its interval;
    success rates carry the summed episode counts."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("successes", "episodes", "tasks")

    quantity: str
    variant: str
    task: str
    setting: str
    fps: float
    statistic: str
    point: float
    low: float
    high: float
    n_runs: int
    seeds: list[int]
    successes: int | None = None
    episodes: int | None = None
    runs: list[str]
    tasks: list[str] | None = None  # the pooled tasks, IQM entries only


@dataclass(frozen=True, kw_only=True)
class DepthPoint(SummaryEntry):
    """One measure of the depth curve (``summary.DEPTH_QUANTITIES``: final success, area
    under the success curve, both at matched steps and at the baseline's FLOPs) at one MCP
    depth (0 = no heads) of a (task, setting, fps): mean over seeds with its interval, the
    final evaluation's episode counts, and the variants behind it."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("successes", "episodes")

    quantity: str
    task: str
    setting: str
    fps: float
    statistic: str
    point: float
    low: float
    high: float
    n_runs: int
    seeds: list[int]
    runs: list[str]
    depth: int
    variants: list[str]
    successes: int | None = None  # final success only
    episodes: int | None = None


@dataclass(frozen=True, kw_only=True)
class Curve(SummaryEntry):
    """A training curve of a group: point and band per step; a success curve also carries
    the summed episode counts (when logged) and the mean training budgets at its steps."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("successes", "episodes")

    metric: str
    variant: str
    task: str
    setting: str
    fps: float
    statistic: str
    steps: list[float]
    point: list[float]
    low: list[float]
    high: list[float]
    successes: list[int] | None = None
    episodes: list[int] | None = None
    budgets: dict[str, list[float]] = field(default_factory=dict)  # BUDGET_KEYS -> per step
    n_runs: int
    runs: list[str]


@dataclass(frozen=True, kw_only=True)
class RelativeImprovement(SummaryEntry):
    """``(variant - base) / base`` at one step both curves have (None with a reason where
    the base is not positive), with the episodes behind both success rates when known."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("variant_episodes", "base_episodes")

    step: float
    variant: float
    variant_episodes: int | None = None
    base: float
    base_episodes: int | None = None
    value: float | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class Convergence(SummaryEntry):
    """A variant's curve against the baseline's: the convergence speed-up to the baseline's
    value at ``late_step`` and the relative improvement per common step (None values with a
    ``reason`` where undefined)."""

    metric: str
    variant: str
    baseline: str
    task: str
    setting: str
    fps: float
    statistic: str
    higher_is_better: bool
    late_step: float | None = None
    target: float | None = None
    base_steps_to_target: float | None = None
    variant_steps_to_target: float | None = None
    speedup: float | None = None
    reason: str = ""
    relative_improvement: RelativeImprovement | None = None  # at the late step
    relative_improvement_by_step: list[RelativeImprovement] = field(default_factory=list)
    runs: list[str]
    baseline_runs: list[str]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Convergence:
        late = values["relative_improvement"]
        return cls(
            **values
            | {
                "relative_improvement": None if late is None else RelativeImprovement(**late),
                "relative_improvement_by_step": [
                    RelativeImprovement(**step) for step in values["relative_improvement_by_step"]
                ],
            }
        )


@dataclass(frozen=True, kw_only=True)
class DriftCurve(SummaryEntry):
    """Rollout error of a group against the horizon for one inference mode, regime and
    metric: mean over seeds and band per horizon."""

    metric: str
    variant: str
    task: str
    setting: str
    fps: float
    mode: str
    regime: str
    statistic: str
    horizon: list[int]
    point: list[float]
    low: list[float]
    high: list[float]
    n_runs: int
    runs: list[str]


@dataclass(frozen=True, kw_only=True)
class MissingRun(SummaryEntry):
    """A run folder left out of ``scope`` (``run``: everything, ``eval``: final results),
    with the reason and the command that fixes it."""

    path: str
    scope: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class CommitGroup(SummaryEntry):
    """The runs trained at one git commit with one set of library versions."""

    commit: str
    versions: str = "unknown"  # summaries written before versions were recorded lack it
    runs: int
    dirty_runs: list[str]


@dataclass(frozen=True, kw_only=True)
class Provenance(SummaryEntry):
    """Where the aggregated runs come from, and how many were used and left out."""

    commits: list[CommitGroup]
    any_dirty: bool
    runs_used: int
    runs_missing: int
    runs_without_eval: int

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Provenance:
        commits = [CommitGroup.from_dict(c) for c in values["commits"]]
        return cls(**values | {"commits": commits})


@dataclass(frozen=True, kw_only=True)
class SummarySettings(SummaryEntry):
    """How the summary was computed: the baseline, the late step, the bootstrap, the metrics."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("frame_rates",)

    baseline: str
    late_step: float | None
    bootstrap_reps: int
    confidence: float
    bootstrap_seed: int
    success_metric: str
    loss_metric: str
    # fps label -> what it means for the model ("fps 50 (4 actions per latent frame, 0.16 s
    # per chunk of 2)", worldmodel/timing.py); None in summaries made before it
    frame_rates: dict[str, str] | None = None

    def frame_rate(self, fps: float) -> str:
        """The report's name of a frame rate: its meaning when known, else ``fps <fps>``."""
        return (self.frame_rates or {}).get(f"{fps:g}", f"fps {fps:g}")


@dataclass(frozen=True, kw_only=True)
class RunValues(SummaryEntry):
    """One run as the paired claims compare it (by task, setting, fps and seed): its
    identity, final closed-loop results, periodic success curve, cost per training step and
    inference speedup."""

    path: str
    variant: str
    task: str
    setting: str
    fps: float
    seed: int
    final: dict[str, PolicyResult] = field(default_factory=dict)  # policy -> final eval
    success_curve: list[list[float]] = field(default_factory=list)  # [[step, success], ...]
    cost_per_step: dict[str, float | None] = field(default_factory=dict)  # BUDGET_KEYS
    mcp_parallel_speedup: float | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunValues:
        final = {policy: PolicyResult(**r) for policy, r in values.get("final", {}).items()}
        return cls(**values | {"final": final})

    def curve(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(steps, success rates)`` of the periodic closed-loop evaluations; None without."""
        if not self.success_curve:
            return None
        points = np.asarray(self.success_curve, dtype=float)  # (evaluations, 2)
        return points[:, 0], points[:, 1]

    def success_at(self, step: float) -> float | None:
        """Success interpolated at ``step``; None outside the evaluated steps."""
        curve = self.curve()
        if curve is None or not curve[0][0] <= step <= curve[0][-1]:
            return None
        return value_at(curve[0], curve[1], step)
