"""Planning a fixed-horizon test: the sample size per variant from the baseline rate and the
minimum detectable effect (an absolute difference in rate) is the standard two-proportion formula,
and experiments run at that size detect the design effect with the promised power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.proportion import power_proportions_2indep, samplesize_proportions_2indep_onetail

from analytics import stats

DESIGNS = [
    (0.10, 0.02, 0.05, 0.8),
    (0.10, -0.02, 0.05, 0.8),
    (0.02, 0.005, 0.05, 0.8),
    (0.25, 0.03, 0.01, 0.9),
    (0.50, 0.10, 0.10, 0.95),
    (0.005, 0.002, 0.05, 0.8),
]


@pytest.mark.parametrize(("baseline", "effect", "alpha", "power"), DESIGNS)
def test_sample_size_matches_statsmodels(baseline: float, effect: float, alpha: float, power: float) -> None:
    reference = samplesize_proportions_2indep_onetail(effect, baseline, power, alpha=alpha)
    assert stats.sample_size_per_variant(baseline, effect, alpha=alpha, power=power) == math.ceil(reference)


def test_ten_to_twelve_percent_needs_3841_per_variant() -> None:
    # (1.959964 * sqrt(2 * 0.11 * 0.89) + 0.841621 * sqrt(0.10 * 0.90 + 0.12 * 0.88))^2 / 0.02^2 = 3840.9
    assert stats.sample_size_per_variant(0.10, 0.02) == 3841


@pytest.mark.parametrize(("baseline", "effect", "alpha", "power"), DESIGNS)
def test_power_matches_statsmodels_and_the_sample_size_is_the_smallest_that_reaches_it(
    baseline: float, effect: float, alpha: float, power: float
) -> None:
    n = stats.sample_size_per_variant(baseline, effect, alpha=alpha, power=power)
    for size in (n - 1, n, 2 * n):
        reference = power_proportions_2indep(effect, baseline, size, alpha=alpha, return_results=False)
        assert stats.power_at(baseline, effect, size, alpha=alpha) == pytest.approx(reference, rel=1e-9, abs=1e-12)
    assert stats.power_at(baseline, effect, n, alpha=alpha) >= power
    assert stats.power_at(baseline, effect, n - 1, alpha=alpha) < power


def test_smaller_effects_and_more_power_need_more_people() -> None:
    assert stats.sample_size_per_variant(0.1, 0.01) > stats.sample_size_per_variant(0.1, 0.02)
    assert stats.sample_size_per_variant(0.1, 0.02, power=0.9) > stats.sample_size_per_variant(0.1, 0.02)
    assert stats.sample_size_per_variant(0.1, 0.02, alpha=0.01) > stats.sample_size_per_variant(0.1, 0.02)


def test_experiments_at_the_calculated_size_detect_the_design_effect_eighty_percent_of_the_time() -> None:
    baseline, effect = 0.10, 0.02
    n = stats.sample_size_per_variant(baseline, effect)
    generator = np.random.default_rng(404)
    experiments = 20_000
    trials = np.full(experiments, n)
    control = generator.binomial(trials, baseline)
    variant = generator.binomial(trials, baseline + effect)
    _, p_values, _ = stats._ztest_arrays(control, trials, variant, trials)

    assert float(np.mean(p_values < 0.05)) == pytest.approx(0.80, abs=0.03)

    sample = range(0, experiments, 200)
    assert [stats.two_proportion_ztest([control[i], variant[i]], [n, n]).p_value < 0.05 for i in sample] == [
        bool(p_values[i] < 0.05) for i in sample
    ]


def test_power_at_a_small_click_rate_holds_in_simulation_too() -> None:
    baseline, effect = 0.02, 0.005
    n = stats.sample_size_per_variant(baseline, effect)
    generator = np.random.default_rng(405)
    trials = np.full(20_000, n)
    _, p_values, _ = stats._ztest_arrays(
        generator.binomial(trials, baseline), trials, generator.binomial(trials, baseline + effect), trials
    )
    assert float(np.mean(p_values < 0.05)) == pytest.approx(0.80, abs=0.03)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"baseline_rate": 0, "minimum_detectable_effect": 0.01}, "baseline_rate must be strictly between 0 and 1"),
        ({"baseline_rate": 1.2, "minimum_detectable_effect": 0.01}, "baseline_rate must be strictly between 0 and 1"),
        ({"baseline_rate": 0.1, "minimum_detectable_effect": 0}, "non-zero"),
        ({"baseline_rate": 0.95, "minimum_detectable_effect": 0.1}, "minimum_detectable_effect must be strictly"),
        ({"baseline_rate": 0.05, "minimum_detectable_effect": -0.1}, "minimum_detectable_effect must be strictly"),
        ({"baseline_rate": 0.1, "minimum_detectable_effect": 0.02, "alpha": 0}, "alpha"),
        ({"baseline_rate": 0.1, "minimum_detectable_effect": 0.02, "power": 1}, "power"),
    ],
)
def test_impossible_designs_are_refused_with_a_clear_message(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.sample_size_per_variant(**arguments)


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_power_needs_a_whole_positive_sample_size(n: object) -> None:
    with pytest.raises(ValueError, match="n_per_variant"):
        stats.power_at(0.1, 0.02, n)  # type: ignore[arg-type]
