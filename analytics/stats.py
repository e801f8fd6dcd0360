"""Statistics for experiments: which variant wins, with the test that fits how people look at it.

Pure functions on counts (numpy and scipy only, no models), so that they can be checked against
reference implementations and simulated thousands of times.

- Fixed horizon (the sample size is decided in advance and the result read once):
  `two_proportion_ztest` for two variants, `chi_squared_test` plus pairwise z-tests against the
  control with `holm` for more; `compare_variants` picks between them. `sample_size_per_variant`
  and `power_at` plan that horizon.
- Continuous monitoring (people watch the dashboard and stop when it looks good): `msprt` and
  `always_valid_p_values`, a mixture sequential probability ratio test whose p-values stay valid
  however often they are read. A fixed-horizon p-value read at every look is not.
- Descriptive Bayesian output, never a decision rule on its own: `probability_to_beat`,
  `expected_loss`.
- Health: `sample_ratio_mismatch` warns when assignment counts are off their weights (a broken
  assignment invalidates every test above).
- Allocation: `thompson_shares` for adaptive traffic (subject lines), with an exploration floor.

Throughout, index 0 is the control, and a difference is "this arm minus the control".
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

# The mixing distribution of the mSPRT is N(0, tau2) over the difference of the two rates. Its
# standard deviation is the size of effect the test is most sensitive to: 0.02 (two percentage
# points) is typical of subject-line and content tests on open rates (15-30 %) and a large but
# plausible effect on click rates (2-5 %). Power depends only weakly on it within a factor of a
# few, and a fixed value keeps the likelihood ratio a martingale under the null (a value
# re-estimated from the data at each look would not be).
DEFAULT_TAU2 = 0.02**2


# Results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZTest:
    """Pooled two-proportion z-test. `difference` is rate[1] - rate[0]; `z` has its sign."""

    z: float
    p_value: float
    difference: float


@dataclass(frozen=True)
class ChiSquared:
    """Pearson chi-squared test of independence on the 2 x k table of successes and failures."""

    statistic: float
    dof: int
    p_value: float


@dataclass(frozen=True)
class Pairwise:
    """One arm against the control (index 0)."""

    index: int
    difference: float
    z: float
    p_value: float
    p_adjusted: float
    significant: bool


@dataclass(frozen=True)
class VariantComparison:
    test: str  # "z" for two arms, "chi_squared" for more
    statistic: float
    p_value: float
    pairwise: list[Pairwise]
    significant_indexes: list[int]


@dataclass(frozen=True)
class Msprt:
    """`statistic` is the mixture likelihood ratio at this look (saturating at the largest finite
    float, so that results stay JSON-serialisable); `p_value` is min(1, 1 / statistic)."""

    statistic: float
    p_value: float


@dataclass(frozen=True)
class Srm:
    statistic: float
    p_value: float
    mismatch: bool


# Validation -------------------------------------------------------------------------------------


def _counts(values: Sequence[int], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat list of counts")
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or (np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)))
    ):
        raise ValueError(f"{name} must be whole numbers")
    if np.any(array < 0):
        raise ValueError(f"{name} must not be negative")
    return array.astype(np.int64)


def _arms(
    successes: Sequence[int], trials: Sequence[int], *, allow_empty_arms: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    successes_array = _counts(successes, "successes")
    trials_array = _counts(trials, "trials")
    if successes_array.shape != trials_array.shape:
        raise ValueError("successes and trials must have one entry per arm")
    if successes_array.size < 2:
        raise ValueError("at least 2 arms are needed to compare")
    if np.any(successes_array > trials_array):
        raise ValueError("successes cannot exceed trials")
    if not allow_empty_arms and np.any(trials_array == 0):
        raise ValueError("every arm needs at least one trial")
    return successes_array, trials_array


def _probability(value: float, name: str) -> float:
    if not (isinstance(value, int | float) and 0 < value < 1):
        raise ValueError(f"{name} must be strictly between 0 and 1")
    return float(value)


# Fixed horizon ----------------------------------------------------------------------------------


def _ztest_arrays(
    successes_a: np.ndarray, trials_a: np.ndarray, successes_b: np.ndarray, trials_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised pooled z-test of b against a: (z, two-sided p, rate_b - rate_a).

    When every trial has the same outcome the pooled variance is 0 and there is no evidence of a
    difference: z = 0 and p = 1 (rather than the NaN a division would give)."""
    rate_a = successes_a / trials_a
    rate_b = successes_b / trials_b
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    difference = rate_b - rate_a
    degenerate = variance <= 0
    z = np.where(degenerate, 0.0, difference / np.sqrt(np.where(degenerate, 1.0, variance)))
    p_value = 2 * scipy_stats.norm.sf(np.abs(z))
    return z, p_value, difference


def two_proportion_ztest(successes: Sequence[int], trials: Sequence[int]) -> ZTest:
    """Pooled two-proportion z-test, two-sided, of arm 1 against arm 0.

    The textbook test for a fixed-horizon A/B test: under H0 both arms share one rate, so the
    standard error uses the pooled rate. Same statistic as statsmodels' `proportions_ztest`
    (which reports arm 0 minus arm 1, so its z has the opposite sign)."""
    successes_array, trials_array = _arms(successes, trials)
    if successes_array.size != 2:
        raise ValueError("the z-test compares exactly 2 arms; use chi_squared_test for more")
    z, p_value, difference = _ztest_arrays(successes_array[0], trials_array[0], successes_array[1], trials_array[1])
    return ZTest(z=float(z), p_value=float(p_value), difference=float(difference))


def chi_squared_test(successes: Sequence[int], trials: Sequence[int]) -> ChiSquared:
    """Pearson chi-squared test of "all arms share one rate" (no continuity correction).

    The omnibus test for more than two arms: one test, so no multiple-comparison inflation. With
    2 arms it equals the squared z-test. Same as scipy's `chi2_contingency(table, correction=False)`
    on the 2 x k table; when all trials have the same outcome the statistic is 0 and p is 1."""
    successes_array, trials_array = _arms(successes, trials)
    table = np.vstack([successes_array, trials_array - successes_array]).astype(float)
    row_totals = table.sum(axis=1, keepdims=True)
    column_totals = table.sum(axis=0, keepdims=True)
    dof = successes_array.size - 1
    if np.any(row_totals == 0):
        return ChiSquared(statistic=0.0, dof=dof, p_value=1.0)
    expected = row_totals * column_totals / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return ChiSquared(statistic=statistic, dof=dof, p_value=float(scipy_stats.chi2.sf(statistic, dof)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order.

    Controls the family-wise error rate under any dependence, and is uniformly more powerful than
    Bonferroni. Equal to statsmodels' `multipletests(method="holm")`."""
    array = np.asarray(p_values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("holm needs a flat, non-empty list of p-values")
    if np.any(~np.isfinite(array)) or np.any(array < 0) or np.any(array > 1):
        raise ValueError("p-values must lie between 0 and 1")
    order = np.argsort(array)
    multipliers = np.arange(array.size, 0, -1)
    adjusted_sorted = np.minimum(np.maximum.accumulate(array[order] * multipliers), 1.0)
    adjusted = np.empty_like(array)
    adjusted[order] = adjusted_sorted
    return [float(value) for value in adjusted]


def compare_variants(successes: Sequence[int], trials: Sequence[int], alpha: float = 0.05) -> VariantComparison:
    """The fixed-horizon result of an experiment; index 0 is the control.

    Two arms: the pooled z-test. More: the chi-squared omnibus test, then each arm against the
    control by z-test with Holm-adjusted p-values. An arm is significant only when the omnibus test
    is (a gate that keeps the report consistent: no "winner" inside a non-significant experiment)
    and its adjusted p-value is below alpha."""
    alpha = _probability(alpha, "alpha")
    successes_array, trials_array = _arms(successes, trials)
    z, p_values, differences = _ztest_arrays(successes_array[0], trials_array[0], successes_array[1:], trials_array[1:])
    if successes_array.size == 2:
        test, statistic, p_value = "z", float(z[0]), float(p_values[0])
        adjusted = [p_value]
    else:
        omnibus = chi_squared_test(successes_array, trials_array)
        test, statistic, p_value = "chi_squared", omnibus.statistic, omnibus.p_value
        adjusted = holm(p_values)
    pairwise = [
        Pairwise(
            index=index,
            difference=float(differences[index - 1]),
            z=float(z[index - 1]),
            p_value=float(p_values[index - 1]),
            p_adjusted=adjusted[index - 1],
            significant=bool(p_value < alpha and adjusted[index - 1] < alpha),
        )
        for index in range(1, successes_array.size)
    ]
    return VariantComparison(
        test=test,
        statistic=statistic,
        p_value=p_value,
        pairwise=pairwise,
        significant_indexes=[comparison.index for comparison in pairwise if comparison.significant],
    )


def _design(baseline_rate: float, minimum_detectable_effect: float, alpha: float) -> tuple[float, float, float, float]:
    """(difference, standard deviation under H0, under H1, critical z) for one observation per arm."""
    baseline = _probability(baseline_rate, "baseline_rate")
    if not isinstance(minimum_detectable_effect, int | float) or minimum_detectable_effect == 0:
        raise ValueError("minimum_detectable_effect must be a non-zero difference in rate")
    target = _probability(baseline + minimum_detectable_effect, "baseline_rate + minimum_detectable_effect")
    alpha = _probability(alpha, "alpha")
    pooled = (baseline + target) / 2
    std_null = math.sqrt(2 * pooled * (1 - pooled))
    std_alternative = math.sqrt(baseline * (1 - baseline) + target * (1 - target))
    return abs(target - baseline), std_null, std_alternative, float(scipy_stats.norm.isf(alpha / 2))


def sample_size_per_variant(
    baseline_rate: float, minimum_detectable_effect: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Trials per arm for the two-sided pooled z-test to detect an absolute change of
    `minimum_detectable_effect` (0.02 = from 10 % to 12 %) with the given power.

    n = (z_{1-alpha/2} sqrt(2 p̄ q̄) + z_{power} sqrt(p1 q1 + p2 q2))² / d², rounded up: the
    variance under H0 is the pooled one the test uses, under H1 the unpooled one (Fleiss, without
    continuity correction; statsmodels' `samplesize_proportions_2indep_onetail`)."""
    difference, std_null, std_alternative, critical = _design(baseline_rate, minimum_detectable_effect, alpha)
    power = _probability(power, "power")
    n = ((critical * std_null + scipy_stats.norm.ppf(power) * std_alternative) / difference) ** 2
    # Floating-point noise must not push an exact integer up by one.
    return max(1, math.ceil(n - 1e-9))


def power_at(baseline_rate: float, minimum_detectable_effect: float, n_per_variant: int, alpha: float = 0.05) -> float:
    """Power of the two-sided pooled z-test with `n_per_variant` trials per arm, both tails counted
    (the far tail is negligible except for tiny samples); inverse of `sample_size_per_variant`."""
    difference, std_null, std_alternative, critical = _design(baseline_rate, minimum_detectable_effect, alpha)
    if isinstance(n_per_variant, bool) or not isinstance(n_per_variant, int | np.integer) or n_per_variant < 1:
        raise ValueError("n_per_variant must be a whole number of at least 1")
    shift = difference * math.sqrt(n_per_variant) / std_alternative
    ratio = std_null / std_alternative
    return float(scipy_stats.norm.sf(critical * ratio - shift) + scipy_stats.norm.cdf(-critical * ratio - shift))


# Sequential -------------------------------------------------------------------------------------


def _msprt_log_likelihood_ratio(
    successes_a: np.ndarray, trials_a: np.ndarray, successes_b: np.ndarray, trials_b: np.ndarray, tau2: float
) -> np.ndarray:
    """Vectorised log of the normal-mixture likelihood ratio (Johari, Pekelis & Walsh 2017,
    "Always valid inference"):

        Λ = sqrt(V / (V + tau2)) * exp(tau2 θ̂² / (2 V (V + tau2)))

    θ̂ is rate_b - rate_a and V its variance, estimated with the pooled rate: the variance under H0,
    which is what validity rests on, and never 0 unless every trial had the same outcome (then
    θ̂ = 0 and Λ is taken as 1: no evidence)."""
    difference = successes_b / trials_b - successes_a / trials_a
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    degenerate = variance <= 0
    variance = np.where(degenerate, 1.0, variance)
    log_ratio = 0.5 * np.log(variance / (variance + tau2)) + tau2 * difference**2 / (2 * variance * (variance + tau2))
    return np.where(degenerate, 0.0, log_ratio)


def _tau2(tau2: float | None) -> float:
    if tau2 is None:
        return DEFAULT_TAU2
    if isinstance(tau2, bool) or not isinstance(tau2, int | float) or not math.isfinite(tau2) or tau2 <= 0:
        raise ValueError("tau2 must be a positive number")
    return float(tau2)


def msprt(successes_a: int, trials_a: int, successes_b: int, trials_b: int, *, tau2: float | None = None) -> Msprt:
    """The mixture SPRT for the difference of two proportions at one look (arm a is the control).

    For experiments watched continuously: reject when p_value <= alpha at any look and the chance
    of ever doing so under H0 stays at most alpha. The p-value here is this look's alone; the
    always-valid p-value is the running minimum over looks (`always_valid_p_values`). `tau2` is
    the variance of the mixing distribution over the difference (default `DEFAULT_TAU2`)."""
    successes, trials = _arms([successes_a, successes_b], [trials_a, trials_b])
    log_ratio = float(_msprt_log_likelihood_ratio(successes[0], trials[0], successes[1], trials[1], _tau2(tau2)))
    statistic = math.exp(log_ratio) if log_ratio < math.log(sys.float_info.max) else sys.float_info.max
    return Msprt(statistic=statistic, p_value=min(1.0, math.exp(-log_ratio)))


def always_valid_p_values(looks: Iterable[tuple[int, int, int, int]], *, tau2: float | None = None) -> list[float]:
    """Always-valid p-values p_n = min(p_{n-1}, 1 / Λ_n) for cumulative looks
    (successes_a, trials_a, successes_b, trials_b). Counts must not decrease between looks."""
    tau2 = _tau2(tau2)
    p_values: list[float] = []
    previous: tuple[int, int, int, int] | None = None
    for look in looks:
        if len(look) != 4:
            raise ValueError("each look is (successes_a, trials_a, successes_b, trials_b)")
        if previous is not None and any(now < before for now, before in zip(look, previous, strict=True)):
            raise ValueError("looks must be cumulative: counts cannot decrease from one look to the next")
        previous = tuple(look)  # type: ignore[assignment]
        current = msprt(*look, tau2=tau2).p_value
        p_values.append(min(p_values[-1], current) if p_values else current)
    return p_values


# Descriptive Bayesian output and allocation ------------------------------------------------------


def _posterior_draws(successes: np.ndarray, trials: np.ndarray, draws: int, seed: int | None) -> np.ndarray:
    """draws x arms samples of each arm's rate from its Beta(1 + s, 1 + n - s) posterior
    (uniform prior, so an arm without trials yet is simply uncertain)."""
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError("draws must be a whole number of at least 1")
    generator = np.random.default_rng(seed)
    return generator.beta(1 + successes, 1 + trials - successes, size=(int(draws), successes.size))


def _best_shares(samples: np.ndarray) -> np.ndarray:
    return np.bincount(samples.argmax(axis=1), minlength=samples.shape[1]) / samples.shape[0]


def probability_to_beat(
    successes: Sequence[int], trials: Sequence[int], *, draws: int = 20000, seed: int = 0
) -> list[float]:
    """Each arm's posterior probability of having the highest rate (Monte Carlo; sums to 1).

    Descriptive only: read repeatedly it is no error-controlled decision rule. Arms without trials
    are allowed (their posterior is the uniform prior)."""
    successes_array, trials_array = _arms(successes, trials, allow_empty_arms=True)
    samples = _posterior_draws(successes_array, trials_array, draws, seed)
    return [float(share) for share in _best_shares(samples)]


def expected_loss(successes: Sequence[int], trials: Sequence[int], *, draws: int = 20000, seed: int = 0) -> list[float]:
    """Each arm's expected loss E[max_j rate_j - rate_i] under the posteriors: how much rate one
    gives up, on average, by choosing this arm. Never negative; smallest for the likely best arm."""
    successes_array, trials_array = _arms(successes, trials, allow_empty_arms=True)
    samples = _posterior_draws(successes_array, trials_array, draws, seed)
    loss = (samples.max(axis=1, keepdims=True) - samples).mean(axis=0)
    return [float(value) for value in loss]


def thompson_shares(
    successes: Sequence[int],
    trials: Sequence[int],
    *,
    min_exploration_share: float,
    draws: int = 10000,
    seed: int | None = None,
) -> list[float]:
    """Traffic shares by Thompson sampling: each arm's share of posterior draws in which it is
    best, mixed with a uniform floor so that every arm keeps at least
    min_exploration_share / arms (a wrong early leader can still be overturned, and the data stay
    usable for the fixed-horizon tests). Shares sum to 1. Arms without trials are allowed."""
    if isinstance(min_exploration_share, bool) or not isinstance(min_exploration_share, int | float):
        raise ValueError("min_exploration_share must be a number between 0 and 1")
    if not 0 <= min_exploration_share <= 1:
        raise ValueError("min_exploration_share must be a number between 0 and 1")
    successes_array, trials_array = _arms(successes, trials, allow_empty_arms=True)
    best = _best_shares(_posterior_draws(successes_array, trials_array, draws, seed))
    shares = min_exploration_share / successes_array.size + (1 - min_exploration_share) * best
    return [float(share) for share in shares]


# Health -----------------------------------------------------------------------------------------


def sample_ratio_mismatch(counts: Sequence[int], weights: Sequence[float], *, threshold: float = 0.001) -> Srm:
    """Chi-squared goodness of fit of the assignment counts against the configured weights.

    A mismatch (p < threshold) means assignment or tracking is broken and every comparison of
    these arms is suspect. The threshold is strict because the check runs on every look of every
    experiment, and a real mismatch at scale has a tiny p-value."""
    counts_array = _counts(counts, "counts")
    weights_array = np.asarray(weights, dtype=float)
    if counts_array.size < 2:
        raise ValueError("at least 2 arms are needed to check the sample ratio")
    if weights_array.shape != counts_array.shape:
        raise ValueError("counts and weights must have one entry per arm")
    if np.any(~np.isfinite(weights_array)) or np.any(weights_array <= 0):
        raise ValueError("weights must be positive numbers")
    threshold = _probability(threshold, "threshold")
    total = counts_array.sum()
    if total == 0:
        raise ValueError("no assignments to check")
    expected = total * weights_array / weights_array.sum()
    statistic = float(((counts_array - expected) ** 2 / expected).sum())
    p_value = float(scipy_stats.chi2.sf(statistic, counts_array.size - 1))
    return Srm(statistic=statistic, p_value=p_value, mismatch=p_value < threshold)
