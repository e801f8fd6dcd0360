"""Descriptive Bayesian output (probability to beat, expected loss), the sample-ratio-mismatch
check, and Thompson-sampling allocation with an exploration floor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import beta, chisquare

from analytics import stats


def exact_probability_second_beats_first(successes: list[int], trials: list[int]) -> float:
    """P(rate_1 > rate_0) under Beta(1 + s, 1 + n - s) posteriors: the integral of f_1 * F_0."""
    first = beta(1 + successes[0], 1 + trials[0] - successes[0])
    second = beta(1 + successes[1], 1 + trials[1] - successes[1])
    low, high = min(first.ppf(1e-12), second.ppf(1e-12)), max(first.ppf(1 - 1e-12), second.ppf(1 - 1e-12))
    value, _ = integrate.quad(lambda x: second.pdf(x) * first.cdf(x), low, high, limit=200)
    return value


@pytest.mark.parametrize(
    ("successes", "trials"),
    [([30, 38], [300, 300]), ([12, 9], [100, 80]), ([200, 215], [2000, 2010]), ([0, 1], [5, 5])],
)
def test_probability_to_beat_of_two_arms_matches_exact_integration(successes: list[int], trials: list[int]) -> None:
    exact = exact_probability_second_beats_first(successes, trials)
    probabilities = stats.probability_to_beat(successes, trials)
    assert probabilities[1] == pytest.approx(exact, abs=1e-2)
    assert probabilities[0] == pytest.approx(1 - exact, abs=1e-2)


def test_probabilities_to_beat_sum_to_one_and_order_the_arms() -> None:
    probabilities = stats.probability_to_beat([50, 60, 70, 55], [1000, 1000, 1000, 1000])
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-12)
    assert all(0 <= probability <= 1 for probability in probabilities)
    assert max(probabilities) == probabilities[2]
    assert min(probabilities) == probabilities[0]


def test_identical_arms_are_equally_likely_to_be_best() -> None:
    probabilities = stats.probability_to_beat([100, 100, 100], [1000, 1000, 1000])
    assert probabilities == [pytest.approx(1 / 3, abs=0.02)] * 3
    losses = stats.expected_loss([100, 100, 100], [1000, 1000, 1000])
    assert losses == [pytest.approx(losses[0], rel=0.05)] * 3


def test_a_clearly_better_arm_is_almost_surely_best_and_loses_least() -> None:
    successes, trials = [100, 200], [1000, 1000]
    assert stats.probability_to_beat(successes, trials)[1] > 0.99
    losses = stats.expected_loss(successes, trials)
    assert 0 <= losses[1] < 1e-4
    # Choosing the worse arm gives up the whole difference of the posterior means.
    assert losses[0] == pytest.approx(201 / 1002 - 101 / 1002, abs=2e-3)


def test_the_likely_best_arm_has_the_smallest_expected_loss() -> None:
    successes, trials = [40, 52, 47, 30], [500, 500, 500, 500]
    losses = stats.expected_loss(successes, trials)
    probabilities = stats.probability_to_beat(successes, trials)
    assert all(loss >= 0 for loss in losses)
    assert int(np.argmin(losses)) == int(np.argmax(probabilities)) == 1


def test_monte_carlo_output_is_reproducible_with_its_seed() -> None:
    successes, trials = [40, 52, 47], [500, 500, 500]
    assert stats.probability_to_beat(successes, trials) == stats.probability_to_beat(successes, trials)
    assert stats.expected_loss(successes, trials, seed=5) == stats.expected_loss(successes, trials, seed=5)
    assert stats.probability_to_beat(successes, trials, seed=1) != stats.probability_to_beat(successes, trials, seed=2)


def test_arms_without_trials_yet_have_the_uniform_prior() -> None:
    assert stats.probability_to_beat([0, 0], [0, 0]) == [pytest.approx(0.5, abs=0.02)] * 2
    assert stats.expected_loss([0, 0], [0, 0]) == [pytest.approx(1 / 6, abs=0.01)] * 2  # E[max(U, V)] - 1/2


def test_balanced_assignment_is_no_mismatch() -> None:
    result = stats.sample_ratio_mismatch([10_030, 9_970], [0.5, 0.5])
    reference = chisquare([10_030, 9_970], [10_000, 10_000])
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.mismatch is False


def test_a_52_48_split_of_20000_assignments_meant_to_be_even_is_a_mismatch() -> None:
    result = stats.sample_ratio_mismatch([10_400, 9_600], [50, 50])
    assert result.statistic == pytest.approx(32.0)
    assert result.p_value < 0.001
    assert result.mismatch is True


def test_mismatch_is_judged_against_the_configured_weights() -> None:
    # A 90/10 experiment with a 10 % holdout arm, assigned as configured.
    counts = [8_110, 8_050, 1_790]
    weights = [0.45, 0.45, 0.10]
    result = stats.sample_ratio_mismatch(counts, weights)
    reference = chisquare(counts, np.array(weights) * sum(counts))
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.mismatch is False
    assert stats.sample_ratio_mismatch(counts, [1, 1, 1]).mismatch is True
    assert stats.sample_ratio_mismatch([10_400, 9_600], [1, 1], threshold=1e-12).mismatch is False


def test_thompson_shares_keep_the_exploration_floor_when_one_arm_dominates() -> None:
    shares = stats.thompson_shares([50, 300, 40], [1000, 1000, 1000], min_exploration_share=0.3, seed=1)
    assert sum(shares) == pytest.approx(1.0, abs=1e-12)
    assert all(share >= 0.3 / 3 - 1e-12 for share in shares)
    assert shares[0] == pytest.approx(0.1) and shares[2] == pytest.approx(0.1)
    assert shares[1] == pytest.approx(0.8)


def test_a_clearly_better_subject_line_gets_most_of_the_traffic() -> None:
    shares = stats.thompson_shares([200, 260, 195, 205], [2000, 2000, 2000, 2000], min_exploration_share=0.1, seed=3)
    assert sum(shares) == pytest.approx(1.0, abs=1e-12)
    assert shares[1] > 0.8
    assert min(shares) >= 0.1 / 4


def test_thompson_shares_start_even_and_become_even_at_full_exploration() -> None:
    even = stats.thompson_shares([0, 0, 0], [0, 0, 0], min_exploration_share=0.0, seed=4)
    assert even == [pytest.approx(1 / 3, abs=0.03)] * 3
    uniform = stats.thompson_shares([10, 90], [100, 100], min_exploration_share=1.0, seed=4)
    assert uniform == [pytest.approx(0.5, abs=1e-12)] * 2


@pytest.mark.parametrize(
    ("successes", "trials", "message"),
    [
        ([-1, 3], [10, 10], "must not be negative"),
        ([12, 3], [10, 10], "cannot exceed trials"),
        ([3], [10], "at least 2 arms"),
        ([3, 4], [10], "one entry per arm"),
    ],
)
def test_bad_counts_are_refused_by_the_bayesian_functions(successes: list, trials: list, message: str) -> None:
    for function in (stats.probability_to_beat, stats.expected_loss):
        with pytest.raises(ValueError, match=message):
            function(successes, trials)
    with pytest.raises(ValueError, match=message):
        stats.thompson_shares(successes, trials, min_exploration_share=0.1)


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_the_exploration_share_must_lie_between_zero_and_one(share: float) -> None:
    with pytest.raises(ValueError, match="min_exploration_share"):
        stats.thompson_shares([1, 2], [10, 10], min_exploration_share=share)


def test_draws_must_be_a_positive_whole_number() -> None:
    with pytest.raises(ValueError, match="draws"):
        stats.probability_to_beat([1, 2], [10, 10], draws=0)


@pytest.mark.parametrize(
    ("counts", "weights", "message"),
    [
        ([-5, 10], [1, 1], "must not be negative"),
        ([0, 0], [1, 1], "no assignments"),
        ([10], [1], "at least 2 arms"),
        ([10, 10], [1, 1, 1], "one entry per arm"),
        ([10, 10], [1, 0], "weights must be positive"),
        ([10, 10], [1, -1], "weights must be positive"),
    ],
)
def test_bad_assignment_counts_or_weights_are_refused(counts: list, weights: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.sample_ratio_mismatch(counts, weights)
