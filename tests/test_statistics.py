"""Statistics of the reports, checked against hand-computed values."""

import numpy as np
import pytest

from worldmodel.evaluation.statistics import (
    Interval,
    Speedup,
    bootstrap_ci,
    convergence_speedup,
    iqm,
    mean_curve,
    paired_relative_improvement_ci,
    pairs_for_power,
    reach_step,
    relative_improvement,
    resampled_ci,
    stratified_bootstrap_iqm,
    value_at,
    wilson_interval,
)

# 95% normal quantile z = 1.959963984540054, z^2 = 3.8414588206941254. Expected Wilson bounds
# use the closed form (2np + z^2 -+ z sqrt(z^2 + 4np(1-p))) / (2(n + z^2)); with n = 10 the
# denominator is 2 * 13.8414588206941254 = 27.6829176413882508.
WILSON_CASES = [
    # 0/10: (3.84146 -+ z * sqrt(z^2) = 3.84146) / 27.68292 -> 0, 7.68292 / 27.68292
    (0, 10, 0.0, 0.2775327998628892),
    # 10/10: (20 + 3.84146 -+ 3.84146) / 27.68292 -> 20 / 27.68292, 1
    (10, 10, 0.7224672001371107, 1.0),
    # 5/10: (10 + 3.84146 -+ z * sqrt(3.84146 + 10) = 7.29187) / 27.68292
    (5, 10, 0.23659309051256397, 0.7634069094874361),
    # 61/100: (122 + 3.84146 -+ z * sqrt(3.84146 + 400 * 0.61 * 0.39 = 98.99746) = 19.50154)
    #         / (2 * 103.84146 = 207.68292)
    (61, 100, 0.5120301704584074, 0.6998312599360559),
]


@pytest.mark.parametrize(("successes", "trials", "low", "high"), WILSON_CASES)
def test_wilson_interval_matches_closed_form(successes, trials, low, high):
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=1e-12)


def test_wilson_interval_exact_at_the_edges():
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0


def test_wilson_interval_widens_with_confidence():
    narrow = wilson_interval(5, 10, confidence=0.5)
    wide = wilson_interval(5, 10, confidence=0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"successes": 0, "trials": 0}, "trials=0"),
        ({"successes": 11, "trials": 10}, "successes=11"),
        ({"successes": -1, "trials": 10}, "successes=-1"),
        ({"successes": 5, "trials": 10, "confidence": 1.0}, "confidence=1.0"),
        ({"successes": 5, "trials": 10, "confidence": 0.0}, "confidence=0.0"),
    ],
)
def test_wilson_interval_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wilson_interval(**kwargs)


def test_bootstrap_ci_two_point_sample():
    # Means of 2 draws from {0, 1}: 0 (p=1/4), 0.5 (p=1/2), 1 (p=1/4); with 10000 reps both
    # tails hold ~2500 replicates, so the 2.5% and 97.5% quantiles are 0 and 1; point = 0.5.
    ci = bootstrap_ci([0.0, 1.0])
    assert ci == Interval(point=0.5, low=0.0, high=1.0)
    assert ci.to_dict() == {"point": 0.5, "low": 0.0, "high": 1.0}


def test_bootstrap_ci_constant_and_single_value():
    # Every resample of [2, 2, 2] has mean 6 / 3 = 2 (exact in binary floating point).
    assert bootstrap_ci([2.0, 2.0, 2.0]) == Interval(2.0, 2.0, 2.0)
    assert bootstrap_ci([0.3]) == Interval(0.3, 0.3, 0.3)


def test_bootstrap_ci_deterministic_for_seed():
    x = np.random.default_rng(1).normal(size=12)
    assert bootstrap_ci(x, reps=500, seed=7) == bootstrap_ci(x, reps=500, seed=7)
    assert bootstrap_ci(x, reps=500, seed=7) != bootstrap_ci(x, reps=500, seed=8)


def test_bootstrap_ci_contains_point_and_narrows_with_data():
    rng = np.random.default_rng(2)
    small = bootstrap_ci(rng.normal(size=10), reps=2000)
    large = bootstrap_ci(rng.normal(size=1000), reps=2000)
    for ci in (small, large):
        assert ci.low < ci.point < ci.high
    # Width ~ 2 * 1.96 / sqrt(n): about 1.24 for n = 10, 0.12 for n = 1000.
    assert large.high - large.low < 0.5 * (small.high - small.low)


def test_bootstrap_ci_median_statistic():
    # Median of [1, 2, 100] is 2; resampled medians are always sample values, so bounds too.
    ci = bootstrap_ci([1.0, 2.0, 100.0], statistic=np.median, reps=2000)
    assert ci.point == 2.0
    assert {ci.low, ci.high} <= {1.0, 2.0, 100.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": []}, "values is empty"),
        ({"values": [[1.0, 2.0]]}, "values has shape"),
        ({"values": [1.0, float("nan")]}, r"values\[1\]=nan"),
        ({"values": [1.0], "reps": 0}, "reps=0"),
        ({"values": [1.0], "confidence": 1.5}, "confidence=1.5"),
        ({"values": [1.0, 2.0], "statistic": lambda a, axis=None: a}, "statistic="),
    ],
)
def test_bootstrap_ci_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(**kwargs)


def test_iqm_even_and_odd_lengths():
    # n = 8: floor(8 / 4) = 2 cut from each end of 1..8 -> mean(3, 4, 5, 6) = 18 / 4 = 4.5.
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    # n = 9: floor(9 / 4) = 2 cut -> mean(2, 3, 4, 10, 20) = 39 / 5 = 7.8.
    assert iqm([0, 1, 2, 3, 4, 10, 20, 1000, 5000]) == pytest.approx(7.8)
    # n = 3: floor(3 / 4) = 0 cut -> plain mean (0 + 0 + 9) / 3 = 3.
    assert iqm([0, 0, 9]) == 3.0
    # 2-D input is flattened: [[1, 2], [3, 100]] -> cut 1 each end -> mean(2, 3) = 2.5.
    assert iqm([[1, 2], [3, 100]]) == 2.5


def test_iqm_rejects_empty():
    with pytest.raises(ValueError, match="values is empty"):
        iqm([])


def test_stratified_bootstrap_iqm_constant_tasks():
    # Every replicate pools [1, 1, 1, 3, 3, 3]; floor(6 / 4) = 1 cut each end ->
    # mean(1, 1, 3, 3) = 2, so point = low = high = 2.
    ci = stratified_bootstrap_iqm({"a": [1.0, 1.0, 1.0], "b": [3.0, 3.0, 3.0]}, reps=200)
    assert ci == Interval(2.0, 2.0, 2.0)


def test_stratified_bootstrap_iqm_resamples_within_tasks():
    # Pool = [0] + 3 draws from {10, 20, 30}; n = 4 -> cut 1 each end -> mean of the two
    # smallest draws, always in [10, 30]. Pooled (unstratified) resampling would often draw 0
    # twice (probability 1 - (3/4)^4 - 4 (1/4)(3/4)^3 = 0.26) and fall below 10.
    scores = {"a": [0.0], "b": [10.0, 20.0, 30.0]}
    ci = stratified_bootstrap_iqm(scores, reps=2000)
    assert ci.point == 15.0  # sorted [0, 10, 20, 30] -> mean(10, 20)
    assert 10.0 <= ci.low < ci.point < ci.high <= 30.0


def test_stratified_bootstrap_iqm_single_task_is_plain_bootstrap():
    x = np.random.default_rng(3).uniform(size=9)

    def iqm_stat(a, axis=None):
        return iqm(a) if axis is None else np.apply_along_axis(iqm, axis, a)

    ci = stratified_bootstrap_iqm({"only": x}, reps=300, seed=4)
    assert ci.point == iqm(x)
    assert ci == pytest.approx(bootstrap_ci(x, statistic=iqm_stat, reps=300, seed=4))


def test_stratified_bootstrap_iqm_ignores_task_order_and_is_seeded():
    a, b = [0.1, 0.5, 0.9, 0.2], [0.7, 0.3, 0.8]
    first = stratified_bootstrap_iqm({"a": a, "b": b}, reps=300, seed=5)
    assert first == stratified_bootstrap_iqm({"b": b, "a": a}, reps=300, seed=5)
    assert first != stratified_bootstrap_iqm({"a": a, "b": b}, reps=300, seed=6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": {}}, "scores="),
        ({"scores": {"a": [1.0], "b": []}}, r"scores\['b'\] is empty"),
        ({"scores": {"a": [1.0]}, "confidence": -0.1}, "confidence=-0.1"),
    ],
)
def test_stratified_bootstrap_iqm_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stratified_bootstrap_iqm(**kwargs)


def test_pairs_for_power_by_hand():
    # mean 0.2, sd 0.1414; z = 1.95996 + 0.84162 = 2.80158; (2.80158 * 0.1414 / 0.2)^2 = 3.92
    assert pairs_for_power([0.1, 0.3]) == 4
    # an effect ten times the spread needs no more than the minimum of two pairs
    assert pairs_for_power([1.0, 1.1, 0.9]) == 2
    assert pairs_for_power([-0.1, 0.1]) is None  # no effect to detect
    assert pairs_for_power([0.3, -0.1, -0.2]) is None  # a mean of 0 up to rounding
    with pytest.raises(ValueError, match="at least 2"):
        pairs_for_power([0.2])
    with pytest.raises(ValueError, match="power=1"):
        pairs_for_power([0.1, 0.3], power=1)


def test_relative_improvement_paper_numbers():
    # (61.6 - 31.9) / 31.9 = 29.7 / 31.9 = 0.93103...
    assert relative_improvement(61.6, 31.9) == pytest.approx(0.931, abs=5e-4)
    # Lower loss shows as a negative change: (0.3 - 0.4) / 0.4 = -0.25.
    assert relative_improvement(0.3, 0.4) == pytest.approx(-0.25)


@pytest.mark.parametrize(
    ("variant", "base", "match"), [(1.0, 0.0, "base=0.0"), (1.0, -2.0, "base=-2.0")]
)
def test_relative_improvement_rejects_bad_base(variant, base, match):
    with pytest.raises(ValueError, match=match):
        relative_improvement(variant, base)


def test_reach_step_interpolates():
    steps = [0, 10, 20, 30]
    # First value >= 0.4 is 0.6 at step 20; between (10, 0.2) and (20, 0.6):
    # 10 + (0.4 - 0.2) * 10 / (0.6 - 0.2) = 10 + 5 = 15.
    assert reach_step(steps, [0.0, 0.2, 0.6, 0.8], 0.4) == pytest.approx(15.0)
    # Exact hit at a sample: 0.6 reached at step 20.
    assert reach_step(steps, [0.0, 0.2, 0.6, 0.8], 0.6) == pytest.approx(20.0)
    # First crossing of a non-monotone curve: 0 + (0.4 - 0) * 10 / 0.5 = 8.
    assert reach_step(steps, [0.0, 0.5, 0.2, 0.9], 0.4) == pytest.approx(8.0)


def test_reach_step_start_and_never():
    assert reach_step([5, 10], [0.9, 1.0], 0.5) == 5.0  # already reached at steps[0]
    assert reach_step([5, 10], [0.1, 0.3], 0.5) is None


def test_reach_step_lower_is_better():
    # Loss first <= 0.5 at step 20 (0.4); between (10, 0.8) and (20, 0.4):
    # 10 + (0.5 - 0.8) * 10 / (0.4 - 0.8) = 10 + 7.5 = 17.5.
    losses = [1.0, 0.8, 0.4, 0.3]
    assert reach_step([0, 10, 20, 30], losses, 0.5, higher_is_better=False) == pytest.approx(17.5)
    # Read as higher-is-better, 1.0 >= 0.5 already at step 0.
    assert reach_step([0, 10, 20, 30], losses, 0.5) == 0.0


@pytest.mark.parametrize(
    ("steps", "values", "target", "match"),
    [
        ([0, 10, 10], [0, 1, 2], 0.5, r"steps\[2\]=10"),
        ([0, 10], [0, 1, 2], 0.5, "values has length 3 but steps has length 2"),
        ([], [], 0.5, "steps is empty"),
        ([0, 10], [0, 1], float("nan"), "target=nan"),
    ],
)
def test_reach_step_rejects_bad_curves(steps, values, target, match):
    with pytest.raises(ValueError, match=match):
        reach_step(steps, values, target)


def test_value_at():
    # 1 + (3 - 1) * 2.5 / 10 = 1.5
    assert value_at([0, 10, 20], [1.0, 3.0, 0.0], 2.5) == pytest.approx(1.5)
    assert value_at([0, 10, 20], [1.0, 3.0, 0.0], 20) == 0.0
    with pytest.raises(ValueError, match="step=21"):
        value_at([0, 10, 20], [1.0, 3.0, 0.0], 21)


def test_convergence_speedup_paper_numbers():
    # Baseline reaches its step-45k value 0.3 only at 45k (between (30k, 0.2) and (45k, 0.3));
    # the variant reaches 0.3 at 20k: 45000 / 20000 = 2.25 ("2.3x faster convergence").
    result = convergence_speedup(
        [0, 10_000, 20_000, 30_000, 45_000, 50_000],
        [0.0, 0.1, 0.15, 0.2, 0.3, 0.3],
        [0, 10_000, 20_000, 30_000],
        [0.0, 0.2, 0.3, 0.5],
        late_step=45_000,
    )
    assert result == Speedup(0.3, 45_000.0, 20_000.0, pytest.approx(2.25), "")
    assert result.to_dict()["speedup"] == pytest.approx(2.25)


def test_convergence_speedup_validation_loss():
    # Baseline loss at 40k, between (30k, 0.5) and (45k, 0.4): 0.5 - 0.1 * 10 / 15 = 0.43333;
    # baseline first <= it at 30k + (0.43333 - 0.5) * 15k / (0.4 - 0.5) = 40k (its own curve);
    # variant between (10k, 0.7) and (20k, 0.4): 10k + (0.43333 - 0.7) * 10k / (-0.3)
    # = 10k + 8888.9 = 18888.9; speed-up 40000 / 18888.9 = 2.1176.
    result = convergence_speedup(
        [0, 10_000, 20_000, 30_000, 45_000],
        [1.0, 0.8, 0.6, 0.5, 0.4],
        [0, 10_000, 20_000],
        [1.0, 0.7, 0.4],
        late_step=40_000,
        higher_is_better=False,
    )
    assert result.target == pytest.approx(0.4 + 1 / 30)
    assert result.base_steps_to_target == pytest.approx(40_000)
    assert result.variant_steps_to_target == pytest.approx(10_000 + 80_000 / 9)
    assert result.speedup == pytest.approx(40_000 / (10_000 + 80_000 / 9))


def test_convergence_speedup_undefined_cases():
    base = ([0, 10, 20], [0.0, 0.5, 1.0])
    never = convergence_speedup(*base, [0, 10], [0.0, 0.2], late_step=20)
    assert never.variant_steps_to_target is None and never.speedup is None
    assert "never reaches" in never.reason
    # The variant starts at the target 1.0 at step 0: base / 0 is unbounded.
    at_zero = convergence_speedup(*base, [0, 10], [1.0, 1.0], late_step=20)
    assert at_zero.variant_steps_to_target == 0.0 and at_zero.speedup is None
    assert "variant reaches the target at step 0" in at_zero.reason
    # Both success curves flat at 0: the baseline "reaches" its late value at step 0, so there
    # is no convergence to compare (the reason names the baseline, not the variant).
    flat = convergence_speedup([0, 10], [0.0, 0.0], [0, 10], [0.0, 0.0], late_step=10)
    assert flat.speedup is None and "baseline reaches its own target at step 0" in flat.reason


def test_convergence_speedup_rejects_late_step_outside_baseline():
    with pytest.raises(ValueError, match="late_step=30"):
        convergence_speedup([0, 10], [0.0, 1.0], [0, 10], [0.0, 1.0], late_step=30)
    with pytest.raises(ValueError, match=r"variant_steps\[1\]=0"):
        convergence_speedup([0, 10], [0.0, 1.0], [0, 0], [0.0, 1.0], late_step=10)


def test_mean_curve_on_common_steps():
    # Common steps {0, 20}: means (1 + 3) / 2 = 2 and (3 + 4) / 2 = 3.5.
    steps, values = mean_curve([([0, 10, 20], [1.0, 2.0, 3.0]), ([0, 20, 30], [3.0, 4.0, 5.0])])
    np.testing.assert_array_equal(steps, [0, 20])
    np.testing.assert_allclose(values, [2.0, 3.5])


def test_mean_curve_rejects_bad_input():
    with pytest.raises(ValueError, match="curves="):
        mean_curve([])
    with pytest.raises(ValueError, match="curves share no step"):
        mean_curve([([0, 10], [1.0, 2.0]), ([5, 15], [1.0, 2.0])])
    with pytest.raises(ValueError, match=r"curves\[1\] values has length 1"):
        mean_curve([([0, 10], [1.0, 2.0]), ([0, 10], [1.0])])


def test_paired_relative_improvement_ci_skips_resamples_with_a_zero_baseline():
    same = paired_relative_improvement_ci([0.5, 0.5, 0.5], [0.75, 0.75, 0.75])
    assert same == Interval(0.5, 0.5, 0.5)
    # resamples of pair 0 alone have a baseline mean of 0: left out, not counted as +inf
    mixed = paired_relative_improvement_ci([0.0, 0.5], [0.5, 0.5])
    assert mixed.point == pytest.approx(1.0) and mixed.low == 0.0 and mixed.high == 1.0
    with pytest.raises(ValueError, match="must be pairs"):
        paired_relative_improvement_ci([0.5, 0.5], [0.5])


def test_resampled_ci_bounds_a_statistic_of_resampled_units():
    x = np.array([1.0, 2.0, 3.0, 10.0])
    interval = resampled_ci(len(x), lambda idx: float(np.max(x[idx])), point=10.0)
    assert interval.point == 10.0 and 1.0 <= interval.low < interval.high == 10.0
    assert resampled_ci(3, lambda idx: 2.0, point=2.0) == Interval(2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="n=0"):
        resampled_ci(0, lambda idx: 0.0, point=0.0)


def test_mean_over_span_is_the_trapezoid_area_over_the_span():
    from worldmodel.evaluation.statistics import mean_over_span

    steps, values = [0, 100, 200, 400], [0.0, 0.2, 0.2, 0.6]
    # area: 10 + 20 + 80 = 110 over 400 steps
    assert mean_over_span(steps, values, 400) == pytest.approx(110 / 400)
    # up to 300 (value 0.4 there): 10 + 20 + 30 = 60 over 300
    assert mean_over_span(steps, values, 300) == pytest.approx(60 / 300)
    assert mean_over_span(steps, values, 0) == 0.0
    with pytest.raises(ValueError, match="step=500 is not valid"):
        mean_over_span(steps, values, 500)
