"""The fixed-horizon tests give the same numbers as the reference implementations (statsmodels and
scipy, which are test-only dependencies here) to 1e-9, on random cases; comparing variants picks
the z-test for two arms and chi-squared with Holm-corrected pairwise tests for more; bad input is
refused with a clear message."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from scipy.stats import chi2_contingency
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from analytics import stats


def close(value: float) -> object:
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def random_arms(generator: np.random.Generator, arms: int) -> tuple[list[int], list[int]]:
    trials = generator.integers(30, 50_000, size=arms)
    rates = generator.uniform(0.005, 0.6, size=arms)
    successes = generator.binomial(trials, rates)
    return [int(value) for value in successes], [int(value) for value in trials]


def test_z_test_matches_statsmodels_on_100_random_cases() -> None:
    generator = np.random.default_rng(20240501)
    for _ in range(100):
        successes, trials = random_arms(generator, 2)
        result = stats.two_proportion_ztest(successes, trials)
        reference_z, reference_p = proportions_ztest(successes, trials)
        # statsmodels reports arm 0 minus arm 1; ours is arm 1 minus the control, arm 0.
        assert result.z == close(-reference_z)
        assert result.p_value == close(reference_p)
        assert result.difference == close(successes[1] / trials[1] - successes[0] / trials[0])


def test_z_test_sign_follows_the_second_arm() -> None:
    better = stats.two_proportion_ztest([100, 150], [1000, 1000])
    worse = stats.two_proportion_ztest([150, 100], [1000, 1000])
    assert better.z > 0 > worse.z
    assert better.difference == pytest.approx(0.05)
    assert better.p_value == close(worse.p_value)


def test_chi_squared_matches_scipy_on_100_random_cases_with_3_to_6_arms() -> None:
    generator = np.random.default_rng(7)
    for _ in range(100):
        successes, trials = random_arms(generator, int(generator.integers(3, 7)))
        result = stats.chi_squared_test(successes, trials)
        table = np.array([successes, np.subtract(trials, successes)])
        reference_statistic, reference_p, reference_dof, _ = chi2_contingency(table, correction=False)
        assert result.statistic == close(reference_statistic)
        assert result.p_value == close(reference_p)
        assert result.dof == reference_dof == len(successes) - 1


def test_chi_squared_with_two_arms_is_the_squared_z_test() -> None:
    successes, trials = [230, 281], [2400, 2390]
    z_test = stats.two_proportion_ztest(successes, trials)
    chi_squared = stats.chi_squared_test(successes, trials)
    assert chi_squared.statistic == close(z_test.z**2)
    assert chi_squared.p_value == close(z_test.p_value)


def test_holm_matches_statsmodels_on_100_random_families(monkeypatch: pytest.MonkeyPatch) -> None:
    # multipletests runs a full garbage collection on every call (~0.1 s each inside the Django
    # test process); the reference needs none of it.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    generator = np.random.default_rng(11)
    for case in range(100):
        size = int(generator.integers(1, 9))
        p_values = generator.uniform(0, 0.2, size=size)
        if case % 5 == 0 and size > 1:
            p_values[1] = p_values[0]  # ties must not change the answer
        _, reference, _, _ = multipletests(p_values, method="holm")
        assert stats.holm(list(p_values)) == [close(value) for value in reference]


def test_holm_keeps_input_order_and_caps_at_one() -> None:
    assert stats.holm([0.04, 0.01, 0.5]) == [close(0.08), close(0.03), close(0.5)]
    assert stats.holm([0.6, 0.7]) == [close(1.0), close(1.0)]


def test_no_difference_at_all_gives_p_one_instead_of_nan() -> None:
    assert stats.two_proportion_ztest([0, 0], [500, 800]) == stats.ZTest(z=0.0, p_value=1.0, difference=0.0)
    assert stats.two_proportion_ztest([40, 60], [40, 60]).p_value == 1.0
    assert stats.chi_squared_test([0, 0, 0], [10, 20, 30]) == stats.ChiSquared(statistic=0.0, dof=2, p_value=1.0)


def test_two_variants_are_compared_with_the_z_test() -> None:
    comparison = stats.compare_variants([200, 260], [2000, 2000])
    z_test = stats.two_proportion_ztest([200, 260], [2000, 2000])
    assert comparison.test == "z"
    assert comparison.statistic == close(z_test.z)
    assert comparison.p_value == close(z_test.p_value)
    [pairwise] = comparison.pairwise
    assert pairwise.index == 1
    assert pairwise.p_adjusted == pairwise.p_value == close(z_test.p_value)
    assert pairwise.significant is (z_test.p_value < 0.05) is True
    assert comparison.significant_indexes == [1]


def test_more_variants_use_chi_squared_then_holm_corrected_pairwise_tests_against_the_control() -> None:
    successes, trials = [200, 205, 262, 240], [2000, 2000, 2000, 2000]
    comparison = stats.compare_variants(successes, trials)
    omnibus = stats.chi_squared_test(successes, trials)
    assert comparison.test == "chi_squared"
    assert comparison.statistic == close(omnibus.statistic)
    assert comparison.p_value == close(omnibus.p_value)

    raw = [stats.two_proportion_ztest([successes[0], successes[i]], [trials[0], trials[i]]) for i in (1, 2, 3)]
    _, adjusted, _, _ = multipletests([result.p_value for result in raw], method="holm")
    assert [pairwise.index for pairwise in comparison.pairwise] == [1, 2, 3]
    for pairwise, result, p_adjusted in zip(comparison.pairwise, raw, adjusted, strict=True):
        assert pairwise.z == close(result.z)
        assert pairwise.difference == close(result.difference)
        assert pairwise.p_value == close(result.p_value)
        assert pairwise.p_adjusted == close(p_adjusted)
    # Arm 3 alone would pass at 0.05 (p ~ 0.03) but not after Holm; arm 2 passes either way.
    assert raw[2].p_value < 0.05
    assert comparison.pairwise[2].p_adjusted > 0.05
    assert comparison.significant_indexes == [2]


def test_no_arm_wins_when_the_omnibus_test_does_not_reject() -> None:
    # Among ten arms, the last one beats the control even after Holm, but the omnibus test does not
    # reject: the comparison names no winner.
    successes, trials = [100] * 9 + [141], [1000] * 10
    comparison = stats.compare_variants(successes, trials)
    assert comparison.p_value > 0.05
    assert comparison.pairwise[-1].p_adjusted < 0.05
    assert comparison.significant_indexes == []
    assert not any(pairwise.significant for pairwise in comparison.pairwise)


@pytest.mark.parametrize(
    ("successes", "trials", "message"),
    [
        ([-1, 5], [10, 10], "must not be negative"),
        ([5, 5], [10, -10], "must not be negative"),
        ([11, 5], [10, 10], "cannot exceed trials"),
        ([0, 5], [0, 10], "at least one trial"),
        ([5], [10], "at least 2 arms"),
        ([], [], "at least 2 arms"),
        ([5, 5], [10, 10, 10], "one entry per arm"),
        ([2.5, 5], [10, 10], "whole numbers"),
        ([[1, 2], [3, 4]], [[5, 5], [5, 5]], "flat list"),
    ],
)
def test_bad_counts_are_refused_with_a_clear_message(successes: list, trials: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.compare_variants(successes, trials)
    with pytest.raises(ValueError, match=message):
        stats.chi_squared_test(successes, trials)


def test_the_z_test_takes_exactly_two_arms_and_alpha_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="exactly 2 arms"):
        stats.two_proportion_ztest([1, 2, 3], [10, 10, 10])
    with pytest.raises(ValueError, match="alpha"):
        stats.compare_variants([1, 2], [10, 10], alpha=1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.holm([0.5, 1.2])
    with pytest.raises(ValueError, match="non-empty"):
        stats.holm([])
