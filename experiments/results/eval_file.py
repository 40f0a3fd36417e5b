"""``eval.json``, the final evaluation ``experiments.evaluate`` writes into a run folder,
typed for the readers of a sweep: one parse, one place that spells its keys."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from worldmodel.inference.session import MODES as INFERENCE_MODES

EVAL_FILE = "eval.json"
EVAL_SCHEMA_VERSION = 1
SPEED_MODES = INFERENCE_MODES  # standard, mcp_parallel
# the closed_loop key of the trained model run in each inference mode
MODE_POLICIES = dict(zip(INFERENCE_MODES, ("model", "model_mcp_parallel"), strict=True))
MODEL_POLICIES = tuple(MODE_POLICIES.values())  # the trained model's policies, not baselines
SPEED_KEYS = ("chunks_per_second", "control_steps_per_second")  # per mode, besides passes


@dataclass(frozen=True)
class PolicyResult:
    """One policy's closed-loop episodes: ``successes`` of ``n``."""

    n: int
    successes: int
    success_rate: float


@dataclass(frozen=True)
class ModeSpeed:
    """How fast one inference mode ran the closed loop."""

    chunks_per_second: float | None
    control_steps_per_second: float | None
    passes_per_chunk: dict[str, float] | None  # network passes per chunk, by kind

    def value(self, key: str) -> float | None:
        """One of ``SPEED_KEYS``."""
        return getattr(self, key)


@dataclass(frozen=True)
class EvalResult:
    """What the aggregate, the claims and the report read from one ``eval.json``."""

    step: int
    closed_loop: dict[str, PolicyResult]  # policy -> result; "model" always present
    speed: dict[str, ModeSpeed]  # inference mode (SPEED_MODES) -> speed
    mcp_parallel_speedup: float | None  # mcp_parallel / standard control rate, one run
    drift: dict[tuple[str, str, str], list[float]]  # (mode, regime, metric) -> per horizon

    def policy(self, policy: str) -> PolicyResult | None:
        return self.closed_loop.get(policy)


class EvalFileError(ValueError):
    """What in an ``eval.json`` cannot be read (the message completes "<path> ...")."""


def parse_eval(data: dict[str, Any]) -> EvalResult:
    """The typed result of a loaded ``eval.json``; ``EvalFileError`` names what is wrong."""
    return EvalResult(
        step=int(data["step"]),
        closed_loop=_closed_loop(data.get("closed_loop")),
        drift=_drift(data.get("drift", {})),  # checked in this order: the first problem is named
        speed=_speed(data.get("speed", {})),
        mcp_parallel_speedup=_finite_or_none(data.get("speed", {}).get("mcp_parallel_speedup")),
    )


def _closed_loop(closed_loop: Any) -> dict[str, PolicyResult]:
    if not isinstance(closed_loop, dict) or "model" not in closed_loop:
        raise EvalFileError("has no closed_loop.model result")
    results = {}
    for policy, result in closed_loop.items():
        n, successes = (
            result.get(k) if isinstance(result, dict) else None for k in ("n", "successes")
        )
        if not (isinstance(n, int) and isinstance(successes, int) and 0 <= successes <= n > 0):
            raise EvalFileError(f"has no valid closed_loop.{policy}.n and .successes")
        rate = result.get("success_rate", successes / n)
        results[policy] = PolicyResult(n, successes, rate)
    return results


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if not is_finite(value):
        raise EvalFileError("has a speed value that is not a finite number")
    return float(value)


def _speed(speed: dict[str, Any]) -> dict[str, ModeSpeed]:
    modes = {}
    for mode, result in speed.items():
        if not isinstance(result, dict):
            continue  # mcp_parallel_speedup, a number beside the modes
        values = {key: _finite_or_none(result.get(key)) for key in SPEED_KEYS}
        modes[mode] = ModeSpeed(**values, passes_per_chunk=result.get("passes_per_chunk"))
    return modes


def _drift(drift: dict[str, Any]) -> dict[tuple[str, str, str], list[float]]:
    curves = {}
    for mode, result in drift.items():
        mean = result.get("mean") if isinstance(result, dict) else None
        if not isinstance(mean, dict):
            raise EvalFileError(f"has no finite drift.{mode}.mean curves")
        for regime, metrics in mean.items():
            for metric, values in metrics.items():
                if not values or not all(map(is_finite, values)):
                    raise EvalFileError(f"has no finite drift.{mode}.mean curves")
                curves[mode, regime, metric] = [float(v) for v in values]
    return curves


def is_finite(value: Any) -> bool:
    """A finite number (the logger writes nan and inf as strings)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
