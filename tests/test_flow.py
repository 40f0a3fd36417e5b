"""Rectified-flow maths against hand-computed values (worldmodel/flow.py)."""

from __future__ import annotations

import math

import pytest
import torch

from worldmodel import flow


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- expand_like ---------------------------------------------------------------------------


def test_expand_like_adds_trailing_singletons() -> None:
    x = torch.zeros(2, 3, 4, 5)
    assert flow.expand_like(torch.zeros(2, 3), x).shape == (2, 3, 1, 1)
    assert flow.expand_like(torch.zeros(2), x).shape == (2, 1, 1, 1)
    assert flow.expand_like(torch.zeros(2, 1), x).shape == (2, 1, 1, 1)
    assert flow.expand_like(0.5, x).shape == ()


def test_expand_like_rejects_non_prefix_shapes() -> None:
    with pytest.raises(ValueError, match="leading-dims prefix"):
        flow.expand_like(torch.zeros(3, 2), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="leading-dims prefix"):
        flow.expand_like(torch.zeros(2, 3, 4), torch.zeros(2, 3))


# --- shift ---------------------------------------------------------------------------------


def test_shift_sigma_hand_table() -> None:
    sigma = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    # shift 5: 5s / (1 + 4s)
    expected5 = torch.tensor(
        [0.0, 1.25 / 2.0, 2.5 / 3.0, 3.75 / 4.0, 1.0], dtype=torch.float64
    )  # 0, 0.625, 0.8333.., 0.9375, 1
    torch.testing.assert_close(flow.shift_sigma(sigma, 5.0), expected5, rtol=0, atol=1e-15)
    assert flow.shift_sigma(torch.tensor(0.5, dtype=torch.float64), 5.0).item() == pytest.approx(
        0.8333333333333334, abs=1e-15
    )
    # shift 10 at 0.5: 5 / 5.5
    assert flow.shift_sigma(torch.tensor(0.5), 10.0).item() == pytest.approx(10 / 11)
    # shift 1 is the identity, bit for bit
    assert torch.equal(flow.shift_sigma(sigma, 1.0), sigma)
    # endpoints fixed for any shift
    for shift in (0.3, 1.0, 3.7, 5.0, 10.0):
        out = flow.shift_sigma(torch.tensor([0.0, 1.0], dtype=torch.float64), shift)
        torch.testing.assert_close(out, torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_shift_sigma_rejects_non_positive_shift() -> None:
    with pytest.raises(ValueError, match="shift"):
        flow.shift_sigma(torch.tensor(0.5), 0.0)


# --- interpolation and target --------------------------------------------------------------


def test_interpolate_hand_values() -> None:
    x0 = torch.tensor([[[1.0, 2.0]], [[-4.0, 0.0]]])  # (B=2, F=1, C=2)
    noise = torch.tensor([[[3.0, -2.0]], [[0.0, 8.0]]])
    at = lambda s: flow.interpolate(x0, noise, torch.full((2, 1), s))  # noqa: E731
    assert torch.equal(at(0.0), x0)
    assert torch.equal(at(1.0), noise)
    # 0.75 * x0 + 0.25 * noise
    expected = torch.tensor([[[1.5, 1.0]], [[-3.0, 2.0]]])
    torch.testing.assert_close(at(0.25), expected)
    # per-sample sigma broadcast over trailing dims: sample 0 clean, sample 1 half way
    mixed = flow.interpolate(x0, noise, torch.tensor([[0.0], [0.5]]))
    torch.testing.assert_close(mixed, torch.tensor([[[1.0, 2.0]], [[-2.0, 4.0]]]))


def test_interpolate_per_frame_sigma() -> None:
    x0 = torch.zeros(1, 2, 3, 1)  # (B, F, N, C)
    noise = torch.ones(1, 2, 3, 1)
    out = flow.interpolate(x0, noise, torch.tensor([[0.2, 0.9]]))  # sigma (B, F)
    torch.testing.assert_close(out[0, 0], torch.full((3, 1), 0.2))
    torch.testing.assert_close(out[0, 1], torch.full((3, 1), 0.9))


def test_velocity_target_hand_values() -> None:
    x0 = torch.tensor([1.0, 2.0, -3.0])
    noise = torch.tensor([0.5, 2.0, 1.0])
    torch.testing.assert_close(flow.velocity_target(x0, noise), torch.tensor([-0.5, 0.0, 4.0]))


def test_interpolate_derivative_is_velocity_target() -> None:
    x0, noise = torch.randn(2, 3, 4, generator=_gen(1)), torch.randn(2, 3, 4, generator=_gen(2))
    a = flow.interpolate(x0, noise, torch.full((2, 3), 0.3))
    b = flow.interpolate(x0, noise, torch.full((2, 3), 0.7))
    torch.testing.assert_close((b - a) / 0.4, flow.velocity_target(x0, noise))


# --- schedule and Euler sampling -----------------------------------------------------------


def test_timestep_schedule_hand_values() -> None:
    torch.testing.assert_close(
        flow.timestep_schedule(4, 1.0), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    )
    # shift 5 on [1, 0.5, 0]: [1, 5/6, 0]
    torch.testing.assert_close(flow.timestep_schedule(2, 5.0), torch.tensor([1.0, 5 / 6, 0.0]))


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (3, 5.0), (10, 3.7), (50, 10.0)])
def test_timestep_schedule_shape_and_order(steps: int, shift: float) -> None:
    sigmas = flow.timestep_schedule(steps, shift)
    assert sigmas.shape == (steps + 1,)
    assert sigmas.dtype == torch.get_default_dtype()
    assert sigmas[0].item() == 1.0 and sigmas[-1].item() == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_timestep_schedule_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="steps"):
        flow.timestep_schedule(0, 1.0)


def test_euler_step_hand_values() -> None:
    x = torch.tensor([1.0, 2.0])
    v = torch.tensor([4.0, -2.0])
    # x + (0.25 - 0.75) * v = x - 0.5 v
    torch.testing.assert_close(flow.euler_step(x, v, 0.75, 0.25), torch.tensor([-1.0, 3.0]))
    torch.testing.assert_close(
        flow.euler_step(x, v, torch.tensor(0.75), torch.tensor(0.25)), torch.tensor([-1.0, 3.0])
    )


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (4, 5.0), (7, 3.7), (25, 10.0)])
def test_euler_with_exact_velocity_recovers_x0(steps: int, shift: float) -> None:
    x0 = torch.randn(2, 3, 4, 5, generator=_gen(3), dtype=torch.float64)
    noise = torch.randn(2, 3, 4, 5, generator=_gen(4), dtype=torch.float64)
    v = flow.velocity_target(x0, noise)
    sigmas = flow.timestep_schedule(steps, shift)
    x = noise  # pure noise at sigma = 1
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x = flow.euler_step(x, v, sigma, sigma_next)
        # on the straight path each step lands exactly on x_{sigma_next}
        torch.testing.assert_close(
            x, flow.interpolate(x0, noise, sigma_next.double()), rtol=0, atol=1e-12
        )
    assert x.dtype == torch.float64
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-12)


def test_euler_step_per_frame_sigma() -> None:
    x = torch.ones(1, 2, 3)  # (B, F, C)
    v = torch.ones(1, 2, 3)
    out = flow.euler_step(x, v, torch.tensor([[1.0, 0.5]]), torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(out[0, 0], torch.full((3,), 0.5))  # stepped by -0.5
    torch.testing.assert_close(out[0, 1], torch.full((3,), 1.0))  # frame already at its level


# --- loss weight and loss ------------------------------------------------------------------


def test_loss_weight_norm_constant() -> None:
    # E_u[w] = 1 for u ~ U(0, 1): substitute u = sigmoid(x), du = sigmoid(x) sigmoid(-x) dx,
    # integrand decays like exp(-x^2 / 2): the trapezoid rule on [-40, 40] is exact to 1e-12.
    x = torch.linspace(-40.0, 40.0, 400_001, dtype=torch.float64)
    integrand = torch.exp(-0.5 * x**2) * torch.sigmoid(x) * torch.sigmoid(-x)
    assert flow.LOSS_WEIGHT_NORM * torch.trapezoid(integrand, x).item() == pytest.approx(
        1.0, abs=1e-12
    )


def test_loss_weight_mean_one_symmetric_peak() -> None:
    n = 200_000
    grid = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # midpoints of a fine grid
    w = flow.loss_weight(grid)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(w, w.flip(0), rtol=1e-9, atol=1e-12)  # w(s) == w(1 - s)
    assert int(w.argmax()) in (n // 2 - 1, n // 2)
    assert flow.loss_weight(torch.tensor(0.5, dtype=torch.float64)).item() == pytest.approx(
        flow.LOSS_WEIGHT_NORM
    )
    # hand value: logit(0.25) = -log 3
    assert flow.loss_weight(torch.tensor(0.25, dtype=torch.float64)).item() == pytest.approx(
        flow.LOSS_WEIGHT_NORM * math.exp(-0.5 * math.log(3.0) ** 2)
    )
    # small at the ends, finite and not NaN at exactly 0 and 1
    ends = flow.loss_weight(torch.tensor([0.0, 1e-3, 1.0 - 1e-3, 1.0]))
    assert bool(torch.isfinite(ends).all()) and bool((ends < 0.01).all())


def test_weighted_mse_hand_example_with_mask() -> None:
    # sigma (B=1, F=3), latents (1, 3, 2): errors per frame = mean over the 2 features
    sigma = torch.tensor([[0.5, 0.25, 0.9]], dtype=torch.float64)
    pred = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [100.0, 0.0]]], dtype=torch.float64)
    target = torch.zeros_like(pred)
    valid = torch.tensor([[True, True, False]])
    # frame 0: (1 + 9) / 2 = 5; frame 1: (4 + 4) / 2 = 4; frame 2 masked out
    w0 = flow.LOSS_WEIGHT_NORM
    w1 = flow.LOSS_WEIGHT_NORM * math.exp(-0.5 * math.log(3.0) ** 2)
    expected = (5.0 * w0 + 4.0 * w1) / 2
    loss = flow.weighted_mse(pred, target, sigma, valid)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # no mask: all three frames
    w2 = flow.LOSS_WEIGHT_NORM * math.exp(-0.5 * math.log(9.0) ** 2)
    assert flow.weighted_mse(pred, target, sigma).item() == pytest.approx(
        (5.0 * w0 + 4.0 * w1 + 5000.0 * w2) / 3, rel=1e-12
    )


def test_weighted_mse_all_invalid_is_zero_with_grad() -> None:
    pred = torch.randn(2, 3, 4, generator=_gen(5), requires_grad=True)
    sigma = torch.full((2, 3), 0.5)
    loss = flow.weighted_mse(pred, torch.zeros(2, 3, 4), sigma, torch.zeros(2, 3, dtype=bool))
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert pred.grad is not None and torch.equal(pred.grad, torch.zeros_like(pred))


def test_weighted_mse_masked_entries_get_no_gradient() -> None:
    pred = torch.ones(1, 2, 3, requires_grad=True)
    valid = torch.tensor([[True, False]])
    flow.weighted_mse(pred, torch.zeros(1, 2, 3), torch.full((1, 2), 0.5), valid).backward()
    assert bool((pred.grad[0, 0] != 0).all()) and bool((pred.grad[0, 1] == 0).all())


# --- sampling ------------------------------------------------------------------------------


def test_sample_sigma_reproducible_and_in_range() -> None:
    a = flow.sample_sigma((4, 6), 5.0, generator=_gen(7))
    b = flow.sample_sigma((4, 6), 5.0, generator=_gen(7))
    c = flow.sample_sigma((4, 6), 5.0, generator=_gen(8))
    assert a.shape == (4, 6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool(((a >= 0) & (a <= 1)).all())
    # per-frame draws are independent, not one per sample
    assert bool((a.std(dim=1) > 0).all())
    # the shift is applied to the same uniform draws
    u = flow.sample_sigma((4, 6), 1.0, generator=_gen(7))
    torch.testing.assert_close(a, flow.shift_sigma(u, 5.0))


def test_sample_sigma_shift_moves_mass_to_noise() -> None:
    s = flow.sample_sigma((20_000,), 5.0, generator=_gen(9))
    # median of shift_sigma(U, 5) is shift_sigma(0.5, 5) = 5/6
    assert s.median().item() == pytest.approx(5 / 6, abs=0.02)


# --- noisy-history augmentation -----------------------------------------------------------


def test_renoise_history_probability_zero_is_identity() -> None:
    x0 = torch.randn(3, 4, 2, 5, generator=_gen(10))
    out, sigma = flow.renoise_history(x0, 0.3, 0.0, _gen(11))
    assert torch.equal(out, x0)
    assert sigma.shape == (3, 4) and torch.equal(sigma, torch.zeros(3, 4))


def test_renoise_history_probability_one_renoises() -> None:
    x0 = torch.randn(3, 4, 2, 5, generator=_gen(10))
    out, sigma = flow.renoise_history(x0, 0.3, 1.0, _gen(11))
    assert sigma.shape == (3, 4)
    assert bool(((sigma >= 0) & (sigma <= 0.3)).all()) and bool((sigma > 0).any())
    assert bool((out != x0).any(dim=(2, 3)).all())  # every frame changed
    # consistent with interpolate at the returned sigma: deviation scales with sigma
    dev = (out - x0).abs().amax(dim=(2, 3))  # (B, F)
    assert bool((dev[sigma < 0.01] < 0.1).all())


def test_renoise_history_reproducible_and_per_sample() -> None:
    x0 = torch.randn(64, 3, 2, generator=_gen(12))
    a = flow.renoise_history(x0, 0.5, 0.5, _gen(13))
    b = flow.renoise_history(x0, 0.5, 0.5, _gen(13))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    noised = (a[1] > 0).any(dim=1)  # (B,)
    assert 0 < int(noised.sum()) < 64  # some samples re-noised, some not
    clean = ~noised
    assert torch.equal(a[0][clean], x0[clean])


def test_renoise_history_keeps_float64() -> None:
    x0 = torch.randn(2, 3, 4, dtype=torch.float64, generator=_gen(14))
    out, sigma = flow.renoise_history(x0, 0.2, 1.0, _gen(15))
    assert out.dtype == torch.float64 and sigma.dtype == torch.float64


def test_renoise_history_rejects_bad_arguments() -> None:
    x0 = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="probability"):
        flow.renoise_history(x0, 0.2, 1.5, _gen())
    with pytest.raises(ValueError, match="max_u"):
        flow.renoise_history(x0, -0.1, 0.5, _gen())


# The reference's training weights (lingbot-va wan_va/utils/scheduler.py, FlowMatchScheduler
# .set_timesteps(1000, training=True), computed in float64): (table id, sigma, weight).
REFERENCE_TABLE = {
    5.0: [
        (0, 1.0, 0.0),
        (250, 0.9375, 0.39795177273030685),
        (500, 0.8333333333333334, 1.0248617422393667),
        (750, 0.625, 1.9140426668719837),
        (999, 0.004980079681274905, 0.031879068663646086),
    ],
    10.0: [
        (0, 1.0, 0.0),
        (250, 0.967741935483871, 0.27024904999375465),
        (500, 0.9090909090909091, 0.7539441867242614),
        (750, 0.7692307692307693, 1.7879070004899424),
        (999, 0.009910802775024787, 0.08313614187518045),
    ],
}


@pytest.mark.parametrize("shift", [5.0, 10.0])
def test_table_loss_weights_equal_the_reference_table(shift) -> None:
    sigmas = flow.table_sigmas(shift)
    for index, sigma, weight in REFERENCE_TABLE[shift]:
        assert sigmas[index].item() == pytest.approx(sigma, abs=1e-12)
        got = flow.loss_weight(torch.tensor(sigma, dtype=torch.float64), shift, "table")
        assert got.item() == pytest.approx(weight, abs=1e-9)


@pytest.mark.parametrize("shift", [1.0, 5.0, 10.0])
def test_table_weights_have_mean_one_under_their_shift_and_the_bell_does_not(shift) -> None:
    """The reference's MCP losses (shift 10) and video loss (shift 5) stand at weights of
    mean 1 each; the bell's means are 0.683 at shift 5 and 0.469 at 10."""
    table = flow.loss_weight(flow.table_sigmas(shift), shift, "table")
    assert table.mean().item() == pytest.approx(1.0, abs=1e-9)
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    drawn = flow.shift_sigma(u, shift)  # what training draws
    assert flow.loss_weight(drawn, shift, "table").mean().item() == pytest.approx(1.0, abs=1e-3)
    bell = flow.loss_weight(drawn, shift, "bell").mean().item()
    assert bell == pytest.approx({1.0: 1.0, 5.0: 0.683, 10.0: 0.469}[shift], abs=2e-3)


def test_weighted_mse_uses_the_weighting_it_is_given() -> None:
    pred, target = torch.ones(1, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 3)
    sigma = torch.tensor([[0.625, 0.9375]], dtype=torch.float64)
    table = flow.weighted_mse(pred, target, sigma, shift=5.0, weighting="table")
    assert table.item() == pytest.approx((1.9140426668719837 + 0.39795177273030685) / 2)
    with pytest.raises(ValueError, match="weighting='flat' is not valid"):
        flow.weighted_mse(pred, target, sigma, weighting="flat")


def test_reference_history_levels_are_the_lower_half_of_the_shift_5_table() -> None:
    """p = 1, max_u 0.5, shift 5: sigma in [0, 0.833], median 0.625 (ids 500-999)."""
    x0 = torch.zeros(4000, 8, 1, dtype=torch.float64)
    _, sigma = flow.renoise_history(x0, 0.5, 1.0, _gen(3), shift=5.0)
    assert sigma.min().item() >= 0.0 and sigma.max().item() <= 5 / 6 + 1e-12
    assert sigma.median().item() == pytest.approx(0.625, abs=0.01)
    _, old = flow.renoise_history(x0, 0.1, 1.0, _gen(3), shift=1.0)  # before: U(0, 0.1)
    assert old.max().item() <= 0.1 and old.median().item() == pytest.approx(0.05, abs=0.005)
