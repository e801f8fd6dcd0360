"""Simulated experiments: the error rates the tests promise are the error rates they have.

A/A experiments (no real difference) at a fixed horizon reject about 5 % of the time; read
20 times with the mSPRT's always-valid p-values, they reject at most 5 % of the time, whereas the
fixed-horizon p-value read at every look does not keep that promise. Simulations are seeded and
vectorised: all experiments are drawn at once and go through the same arithmetic the public
functions use, which a sample of them checks one by one."""

from __future__ import annotations

import numpy as np
import pytest

from analytics import stats

EXPERIMENTS = 20_000
LOOKS = 20


def test_fixed_horizon_a_a_tests_reject_five_percent_of_the_time() -> None:
    generator = np.random.default_rng(101)
    trials = np.full(EXPERIMENTS, 5_000)
    control = generator.binomial(trials, 0.08)
    variant = generator.binomial(trials, 0.08)
    _, p_values, _ = stats._ztest_arrays(control, trials, variant, trials)

    false_positive_rate = float(np.mean(p_values < 0.05))
    assert false_positive_rate == pytest.approx(0.05, abs=0.015)

    for index in range(0, EXPERIMENTS, 100):
        result = stats.two_proportion_ztest([control[index], variant[index]], [5_000, 5_000])
        assert result.p_value == pytest.approx(p_values[index], rel=1e-12, abs=1e-15)


def test_fixed_horizon_a_a_tests_with_four_arms_name_a_false_winner_at_most_five_percent_of_the_time() -> None:
    generator = np.random.default_rng(103)
    experiments = 2_000
    successes = generator.binomial(3_000, 0.2, size=(experiments, 4))
    false_winners = sum(bool(stats.compare_variants(row, [3_000] * 4).significant_indexes) for row in successes)
    assert false_winners / experiments <= 0.05 + 0.015


def cumulative_looks(generator: np.random.Generator, rate_a: float, rate_b: float, per_look: int) -> tuple:
    """Cumulative successes of both arms at each of LOOKS equally spaced looks, for every experiment."""
    successes_a = generator.binomial(per_look, rate_a, size=(EXPERIMENTS, LOOKS)).cumsum(axis=1)
    successes_b = generator.binomial(per_look, rate_b, size=(EXPERIMENTS, LOOKS)).cumsum(axis=1)
    trials = per_look * np.arange(1, LOOKS + 1)
    return successes_a, successes_b, trials


def always_valid(successes_a: np.ndarray, successes_b: np.ndarray, trials: np.ndarray) -> np.ndarray:
    log_ratio = stats._msprt_log_likelihood_ratio(successes_a, trials, successes_b, trials, stats.DEFAULT_TAU2)
    return np.minimum.accumulate(np.minimum(1.0, np.exp(-log_ratio)), axis=1)


@pytest.mark.parametrize(("rate", "per_look"), [(0.03, 1_000), (0.2, 250)])
def test_msprt_a_a_tests_watched_twenty_times_reject_at_most_five_percent_of_the_time(
    rate: float, per_look: int
) -> None:
    generator = np.random.default_rng(202)
    successes_a, successes_b, trials = cumulative_looks(generator, rate, rate, per_look)
    p_values = always_valid(successes_a, successes_b, trials)

    ever_rejected = float(np.mean(p_values[:, -1] <= 0.05))
    assert ever_rejected <= 0.05

    # The same data read with the fixed-horizon z-test at every look: the error rate inflates,
    # which is why continuous monitoring needs the sequential test.
    _, naive, _ = stats._ztest_arrays(successes_a, trials, successes_b, trials)
    assert float(np.mean((naive < 0.05).any(axis=1))) > 0.15

    for index in range(0, EXPERIMENTS, 1_000):
        looks = [
            (int(successes_a[index, look]), int(trials[look]), int(successes_b[index, look]), int(trials[look]))
            for look in range(LOOKS)
        ]
        assert stats.always_valid_p_values(looks) == pytest.approx(list(p_values[index]), rel=1e-9, abs=1e-12)


def test_msprt_detects_a_real_difference_when_watched() -> None:
    generator = np.random.default_rng(303)
    successes_a, successes_b, trials = cumulative_looks(generator, 0.10, 0.12, 1_000)
    p_values = always_valid(successes_a, successes_b, trials)
    assert float(np.mean(p_values[:, -1] <= 0.05)) > 0.9


def test_always_valid_p_values_never_go_up() -> None:
    looks = [(10, 100, 20, 100), (20, 200, 40, 200), (60, 300, 45, 300), (90, 400, 60, 400)]
    p_values = stats.always_valid_p_values(looks)
    assert p_values == sorted(p_values, reverse=True)
    assert p_values[0] == stats.msprt(10, 100, 20, 100).p_value
    assert p_values[-1] == min(stats.msprt(*look).p_value for look in looks)


def test_msprt_at_one_look_follows_the_normal_mixture_formula() -> None:
    tau2 = 0.001
    successes_a, trials_a, successes_b, trials_b = 120, 1_000, 160, 1_000
    difference = successes_b / trials_b - successes_a / trials_a
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    ratio = np.sqrt(variance / (variance + tau2)) * np.exp(tau2 * difference**2 / (2 * variance * (variance + tau2)))

    result = stats.msprt(successes_a, trials_a, successes_b, trials_b, tau2=tau2)
    assert result.statistic == pytest.approx(ratio, rel=1e-12)
    assert result.p_value == pytest.approx(min(1.0, 1 / ratio), rel=1e-12)
    # No difference at all is no evidence.
    assert stats.msprt(100, 1_000, 100, 1_000).p_value == 1.0
    assert stats.msprt(0, 1_000, 0, 1_000) == stats.Msprt(statistic=1.0, p_value=1.0)
    # An overwhelming difference saturates the ratio instead of overflowing.
    overwhelming = stats.msprt(0, 1_000_000, 500_000, 1_000_000)
    assert overwhelming.p_value == 0.0
    assert np.isfinite(overwhelming.statistic)


@pytest.mark.parametrize(
    ("looks", "message"),
    [
        ([(5, 10, 0, 0)], "at least one trial"),
        ([(11, 10, 5, 10)], "cannot exceed trials"),
        ([(-1, 10, 5, 10)], "must not be negative"),
        ([(5, 100, 5, 100), (4, 200, 9, 200)], "cumulative"),
        ([(5, 100, 5)], "each look"),
    ],
)
def test_bad_looks_are_refused_with_a_clear_message(looks: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.always_valid_p_values(looks)


@pytest.mark.parametrize("tau2", [0, -0.01, float("nan")])
def test_the_mixing_variance_must_be_positive(tau2: float) -> None:
    with pytest.raises(ValueError, match="tau2"):
        stats.msprt(10, 100, 12, 100, tau2=tau2)
