"""Statistics behind every report: intervals over seeds, IQM across tasks, convergence speed.

Reporting rules (README, "Reproducing Next Forcing"): a comparison over seeds carries a
percentile-bootstrap interval; an aggregate across tasks is the interquartile mean (IQM) with a
stratified bootstrap interval, as in rliable (Agarwal et al. 2021); a success rate is reported
with its episode count and a Wilson interval. Convergence speed-ups follow the Next Forcing
paper: the steps the baseline needs to reach its own value at a late step, divided by the steps
the variant needs to reach that same value.

Curves are ``(steps, values)`` pairs: 1-D, same length, ``steps`` strictly increasing, no NaN.
Random draws come from ``np.random.default_rng(seed)``, so every interval is reproducible.
Bad input raises a one-line ``ValueError`` naming the argument, its value and what is valid.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Interval:
    """A point estimate with the bounds of its confidence interval."""

    point: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Speedup:
    """Convergence speed-up of a variant over a baseline (see :func:`convergence_speedup`).

    ``speedup`` is None when it is undefined; ``reason`` then says why ("" when computed).
    """

    target: float
    base_steps_to_target: float
    variant_steps_to_target: float | None
    speedup: float | None
    reason: str

    def to_dict(self) -> dict[str, float | str | None]:
        return asdict(self)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(
            f"confidence={confidence} is not valid; must be in the open interval (0, 1)"
        )


def _check_reps(reps: int) -> None:
    if not isinstance(reps, numbers.Integral) or reps < 1:
        raise ValueError(f"reps={reps} is not valid; must be an integer >= 1")


def _sample(name: str, values: npt.ArrayLike, flatten: bool = False) -> np.ndarray:
    """``values`` as a non-empty float array without NaN (1-D, or flattened if asked)."""
    x = np.asarray(values, dtype=float)
    if flatten:
        x = x.ravel()
    if x.ndim != 1:
        raise ValueError(f"{name} has shape {x.shape}; must be 1-D")
    if x.size == 0:
        raise ValueError(f"{name} is empty; must hold at least one value")
    if np.isnan(x).any():
        raise ValueError(f"{name}[{int(np.flatnonzero(np.isnan(x))[0])}]=nan; must not be NaN")
    return x


def _curve(
    steps: npt.ArrayLike,
    values: npt.ArrayLike,
    steps_name: str = "steps",
    values_name: str = "values",
) -> tuple[np.ndarray, np.ndarray]:
    """A validated curve: same-length 1-D arrays, strictly increasing steps, no NaN."""
    s = _sample(steps_name, steps)
    v = _sample(values_name, values)
    if s.size != v.size:
        raise ValueError(
            f"{values_name} has length {v.size} but {steps_name} has length {s.size}; must match"
        )
    bad = np.flatnonzero(np.diff(s) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"{steps_name}[{i}]={s[i]:g} is not valid; must be strictly greater than "
            f"{steps_name}[{i - 1}]={s[i - 1]:g} (strictly increasing)"
        )
    return s, v


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of each row of ``x`` (R, n) -> (R,)."""
    n = x.shape[1]
    cut = int(0.25 * n)  # floor, as scipy.stats.trim_mean(x, 0.25)
    return np.sort(x, axis=1)[:, cut : n - cut].mean(axis=1)


def _percentile_interval(point: float, replicates: np.ndarray, confidence: float) -> Interval:
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1.0 - alpha / 2])
    return Interval(point=float(point), low=float(low), high=float(high))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for the success rate ``successes / trials``."""
    if not isinstance(trials, numbers.Integral) or trials < 1:
        raise ValueError(f"trials={trials} is not valid; must be an integer >= 1")
    if not isinstance(successes, numbers.Integral) or not 0 <= successes <= trials:
        raise ValueError(
            f"successes={successes} is not valid; must be an integer in [0, trials={trials}]"
        )
    _check_confidence(confidence)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n = int(trials)
    p = int(successes) / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    # The bounds touch 0 (1) exactly when no (every) trial succeeds; set them without rounding.
    low = 0.0 if successes == 0 else center - half
    high = 1.0 if successes == trials else center + half
    return low, high


def bootstrap_ci(
    values: npt.ArrayLike,
    statistic: Callable[..., npt.ArrayLike] = np.mean,
    reps: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` over a 1-D sample (e.g. one per seed).

    ``statistic`` must be a numpy-style reduction: it is called as ``statistic(values)`` for the
    point and as ``statistic(resamples, axis=1)`` on all ``(reps, n)`` resamples at once
    (``np.mean``, ``np.median``). For the IQM use :func:`stratified_bootstrap_iqm` with one task.
    """
    x = _sample("values", values)
    _check_reps(reps)
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(reps, x.size))  # (reps, n)
    replicates = np.asarray(statistic(x[idx], axis=1), dtype=float)
    if replicates.shape != (reps,):
        raise ValueError(
            f"statistic={getattr(statistic, '__name__', statistic)} returned shape "
            f"{replicates.shape} on resamples of shape {idx.shape}; must reduce axis=1 to ({reps},)"
        )
    return _percentile_interval(float(statistic(x)), replicates, confidence)


def resampled_ci(
    n: int,
    statistic: Callable[[list[int]], float],
    point: float,
    reps: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of a statistic that is not a numpy reduction (e.g. the
    convergence speed-up of mean curves): ``statistic`` gets the indices of one resample of
    the ``n`` units (seeds, pairs), drawn with replacement, ``reps`` times."""
    if n < 1:
        raise ValueError(f"n={n} is not valid; must be >= 1")
    _check_reps(reps)
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    replicates = [statistic(rng.integers(0, n, size=n).tolist()) for _ in range(reps)]
    return _percentile_interval(point, np.asarray(replicates, dtype=float), confidence)


def paired_relative_improvement_ci(
    base: npt.ArrayLike,
    variant: npt.ArrayLike,
    reps: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of :func:`relative_improvement` of the variant's mean
    over the baseline's, resampling pairs (one per seed). Resamples whose baseline mean is 0
    (ratio undefined) are left out; the point with no width when every one is."""
    b, v = _sample("base", base), _sample("variant", variant)
    if b.size != v.size:
        raise ValueError(f"base has {b.size} values, variant {v.size}; must be pairs")
    _check_reps(reps)
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, b.size, size=(reps, b.size))  # (reps, n)
    base_means, variant_means = b[idx].mean(1), v[idx].mean(1)  # (reps,) each
    defined = base_means > 0
    ratios = (variant_means[defined] - base_means[defined]) / base_means[defined]
    point = relative_improvement(float(v.mean()), float(b.mean()))
    if not ratios.size:
        return Interval(point, point, point)
    return _percentile_interval(point, ratios, confidence)


def iqm(values: npt.ArrayLike) -> float:
    """Interquartile mean of the flattened values, as ``scipy.stats.trim_mean(x, 0.25)``.

    Drops ``floor(n / 4)`` values from each end of the sorted sample and averages the rest, so
    for n < 4 it is the plain mean.
    """
    x = _sample("values", values, flatten=True)
    return float(_iqm_rows(x[None, :])[0])


def stratified_bootstrap_iqm(
    scores: Mapping[str, Sequence[float]],
    reps: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """IQM across tasks with a stratified percentile-bootstrap interval, as in rliable.

    ``scores`` maps task -> per-run (per-seed) scores on a common scale (e.g. success rates);
    tasks may have different run counts. Each replicate resamples runs with replacement within
    every task independently and takes the IQM of all resampled scores pooled; the point is
    the IQM of all scores pooled. Tasks are visited in sorted order, so the result does not
    depend on the mapping's insertion order.
    """
    if not scores:
        raise ValueError(f"scores={dict(scores)} is not valid; must hold at least one task")
    _check_reps(reps)
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    tasks = [_sample(f"scores[{task!r}]", scores[task]) for task in sorted(scores)]
    resampled = [x[rng.integers(0, x.size, size=(reps, x.size))] for x in tasks]  # (reps, n_t)
    replicates = _iqm_rows(np.concatenate(resampled, axis=1))  # (reps,)
    return _percentile_interval(iqm(np.concatenate(tasks)), replicates, confidence)


def pairs_for_power(
    differences: npt.ArrayLike, confidence: float = 0.95, power: float = 0.8
) -> int | None:
    """Paired samples a two-sided test at ``confidence`` needs to detect the measured mean
    difference with probability ``power``, from the measured spread (normal approximation):
    ``n = ((z_(1 - alpha/2) + z_power) * sd / |mean|)^2``. None when the mean is 0 up to
    rounding (no effect to detect); at least 2."""
    _check_confidence(confidence)
    if not 0 < power < 1:
        raise ValueError(f"power={power} is not valid; must be in (0, 1)")
    d = _sample("differences", differences)
    if d.size < 2:
        raise ValueError(f"differences has {d.size} values; the spread needs at least 2")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if math.isclose(mean, 0.0, abs_tol=1e-12):  # e.g. 0.3 - 0.1 - 0.2 != 0 in floats
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2) + NormalDist().inv_cdf(power)
    return max(2, math.ceil((z * sd / abs(mean)) ** 2))


def relative_improvement(variant: float, base: float) -> float:
    """``(variant - base) / base``, e.g. (61.6 - 31.9) / 31.9 = 0.931 ("93.1% improvement").

    ``base`` must be finite and > 0: the ratio is undefined at 0 and its sign misleads for a
    negative baseline. For lower-is-better metrics (losses) an improvement is negative.
    """
    if not math.isfinite(base) or base <= 0:
        raise ValueError(
            f"base={base} is not valid; must be finite and > 0 "
            "(relative improvement is undefined when the baseline is 0)"
        )
    if not math.isfinite(variant):
        raise ValueError(f"variant={variant} is not valid; must be finite")
    return (variant - base) / base


def reach_step(
    steps: npt.ArrayLike,
    values: npt.ArrayLike,
    target: float,
    higher_is_better: bool = True,
) -> float | None:
    """First step at which the linearly interpolated curve reaches ``target``; None if never.

    Reaching means ``value >= target`` (or ``<=`` when not ``higher_is_better``, e.g. a loss).
    A curve that already reaches it at its first sample returns ``steps[0]``.
    """
    s, v = _curve(steps, values)
    if math.isnan(target):
        raise ValueError(f"target={target} is not valid; must be a number")
    reached = v >= target if higher_is_better else v <= target
    hits = np.flatnonzero(reached)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(s[0])
    # v[i - 1] has not reached the target and v[i] has, so v[i] != v[i - 1].
    return float(s[i - 1] + (target - v[i - 1]) * (s[i] - s[i - 1]) / (v[i] - v[i - 1]))


def value_at(steps: npt.ArrayLike, values: npt.ArrayLike, step: float) -> float:
    """Value of the linearly interpolated curve at ``step`` within ``[steps[0], steps[-1]]``."""
    s, v = _curve(steps, values)
    if not s[0] <= step <= s[-1]:
        raise ValueError(
            f"step={step} is not valid; must be in the curve's range [{s[0]:g}, {s[-1]:g}]"
        )
    return float(np.interp(step, s, v))


def mean_over_span(steps: npt.ArrayLike, values: npt.ArrayLike, until: float) -> float:
    """Area under the linearly interpolated curve from its first step to ``until`` (within its
    range), divided by that span: the curve's mean value over training, e.g. the area under a
    success curve as a success rate."""
    s, v = _curve(steps, values)
    end = value_at(s, v, until)
    inside = s < until
    xs = np.append(s[inside], until)  # (n + 1,)
    ys = np.append(v[inside], end)
    if xs[-1] <= xs[0]:
        return float(ys[0])
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (xs[-1] - xs[0]))


def convergence_speedup(
    base_steps: npt.ArrayLike,
    base_values: npt.ArrayLike,
    variant_steps: npt.ArrayLike,
    variant_values: npt.ArrayLike,
    late_step: float,
    higher_is_better: bool = True,
) -> Speedup:
    """How many times fewer steps the variant needs to reach the baseline's value at late_step.

    The paper's "2.3x faster convergence": the baseline reaches its own step-45k accuracy at
    45k, the variant reaches it at 20k, 45k / 20k = 2.25. The target is the baseline's value
    interpolated at ``late_step``; both step counts come from :func:`reach_step`. The speed-up
    is None, with a ``reason``, when the variant never reaches the target within its curve, or
    when either curve reaches it at step <= 0 (the ratio is then 0 or unbounded).
    """
    bs, bv = _curve(base_steps, base_values, "base_steps", "base_values")
    vs, vv = _curve(variant_steps, variant_values, "variant_steps", "variant_values")
    if not bs[0] <= late_step <= bs[-1]:
        raise ValueError(
            f"late_step={late_step} is not valid; must be in base_steps' range "
            f"[{bs[0]:g}, {bs[-1]:g}]"
        )
    target = value_at(bs, bv, late_step)
    # The baseline passes through target at late_step, so it reaches it by then; min and the
    # fallback only absorb float rounding in the interpolation.
    base_reach = reach_step(bs, bv, target, higher_is_better)
    base_reach = float(late_step) if base_reach is None else min(base_reach, float(late_step))
    variant_reach = reach_step(vs, vv, target, higher_is_better)
    if base_reach <= 0:  # e.g. a success curve flat at 0: there is no convergence to compare
        speedup, reason = None, "baseline reaches its own target at step 0: nothing to speed up"
    elif variant_reach is None:
        speedup, reason = None, f"variant never reaches the target {target:g} by step {vs[-1]:g}"
    elif variant_reach <= 0:
        speedup, reason = None, "variant reaches the target at step 0: speed-up is unbounded"
    else:
        speedup, reason = base_reach / variant_reach, ""
    return Speedup(
        target=target,
        base_steps_to_target=base_reach,
        variant_steps_to_target=variant_reach,
        speedup=speedup,
        reason=reason,
    )


def mean_curve(
    curves: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of ``(steps, values)`` curves, on the steps that all curves share."""
    if len(curves) == 0:
        raise ValueError("curves=[] is not valid; must hold at least one (steps, values) curve")
    checked = [
        _curve(s, v, f"curves[{k}] steps", f"curves[{k}] values") for k, (s, v) in enumerate(curves)
    ]
    common = checked[0][0]
    for s, _ in checked[1:]:
        common = np.intersect1d(common, s)
    if common.size == 0:
        raise ValueError(
            f"curves share no step ({len(curves)} curves); must have at least one step in common"
        )
    stacked = np.stack([v[np.isin(s, common)] for s, v in checked])  # (n_curves, n_common)
    return common, stacked.mean(axis=0)
