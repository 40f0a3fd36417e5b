"""The report's IQM and bootstrap intervals against an independent implementation: scipy.

scipy.stats.bootstrap with several samples resamples each one independently, which is the
stratified bootstrap across tasks; the two draw different random numbers, so the bounds agree
to the Monte Carlo error of the percentiles (a few thousandths at 20000 replicates).
"""

import numpy as np
import pytest
from scipy import stats

from worldmodel.evaluation.statistics import bootstrap_ci, iqm, stratified_bootstrap_iqm

REPS = 20000


def scipy_interval(samples: list[np.ndarray], statistic) -> tuple[float, float]:
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=REPS,
        confidence_level=0.95,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(123),
    )
    return result.confidence_interval.low, result.confidence_interval.high


def pooled_iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(np.concatenate(samples, axis=axis), 0.25, axis=axis)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 13, 40])
def test_iqm_is_scipys_quarter_trimmed_mean(n):
    x = np.random.default_rng(n).normal(size=n)
    assert iqm(x) == pytest.approx(stats.trim_mean(x, 0.25), abs=1e-12)


def test_bootstrap_interval_of_the_mean_matches_scipy():
    x = np.random.default_rng(0).uniform(size=20)
    ours = bootstrap_ci(x, reps=REPS, seed=1)
    low, high = scipy_interval([x], np.mean)
    tolerance = 0.03 * (high - low)
    assert ours.low == pytest.approx(low, abs=tolerance)
    assert ours.high == pytest.approx(high, abs=tolerance)


@pytest.mark.parametrize(
    "scores",
    [
        # three tasks, unequal seed counts, continuous scores
        {
            "a": np.random.default_rng(1).uniform(size=5),
            "b": np.random.default_rng(2).uniform(0.5, 1.0, size=7),
            "c": np.random.default_rng(3).uniform(0.0, 0.3, size=4),
        },
        # what a report pools: success rates of 20 episodes, 5 seeds on each of two tasks
        {
            "press_button": np.array([12, 15, 9, 17, 14]) / 20,
            "pick": np.array([3, 8, 5, 2, 6]) / 20,
        },
    ],
)
def test_stratified_bootstrap_iqm_matches_scipys_independent_resampling(scores):
    ours = stratified_bootstrap_iqm(scores, reps=REPS, seed=7)
    samples = [np.asarray(scores[task], dtype=float) for task in sorted(scores)]
    assert ours.point == pytest.approx(pooled_iqm(*samples), abs=1e-12)
    low, high = scipy_interval(samples, pooled_iqm)
    tolerance = 0.03 * (high - low)
    assert ours.low == pytest.approx(low, abs=tolerance)
    assert ours.high == pytest.approx(high, abs=tolerance)
