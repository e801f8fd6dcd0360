"""Reads of experiments: the one analysis that both the results page and the decision use.

`experiment_analysis` turns the per-variant totals (analytics rollups) into the chosen test's
answer, so that what a person sees in the results is exactly what experiment_evaluate acts on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from analytics import selectors as analytics_selectors
from analytics import stats
from experiments.models import Experiment, Variant
from organizations.models import Organization
from sequences.models import Step

# Guardrails compare rates of rare events: below this many delivered messages per arm a
# one-sided z-test stops a variant over two or three unsubscribes, which is noise.
GUARDRAIL_MIN_DELIVERED = 100
GUARDRAIL_METRICS = ("unsubscribed", "complained")


def split_step_get(*, organization: Organization, sequence_id: int, step_id: int) -> Step:
    """A step of a sequence of the organization (404 otherwise)."""
    step = (
        Step.objects.for_org(organization)
        .filter(pk=step_id, sequence_id=sequence_id)
        .select_related("sequence")
        .first()
    )
    if step is None:
        raise Http404("There is no such step in this sequence.")
    return step


def experiment_for_step(*, step: Step) -> Experiment:
    """The experiment of a step of the organization (404 when it has none)."""
    experiment = Experiment.objects.filter(step=step, organization_id=step.organization_id).first()
    if experiment is None:
        raise Http404("This step has no experiment.")
    return experiment


def variants_of(experiment: Experiment) -> QuerySet[Variant]:
    return Variant.objects.filter(experiment=experiment, organization_id=experiment.organization_id).order_by("id")


def control_of(variants: list[Variant], metric: str) -> Variant | None:
    """What the others are compared against: the holdout for a goal (does the email work at
    all?), otherwise the first sending variant."""
    if metric == Experiment.Metric.GOAL:
        for variant in variants:
            if variant.is_holdout:
                return variant
    return next((variant for variant in variants if not variant.is_holdout), None)


def metric_counts(metric: str, totals: dict[str, Any]) -> tuple[int, int]:
    """(successes, trials) of a variant for the metric: people who clicked or opened per
    delivered message, or goals reached per assigned enrollment."""
    if metric == Experiment.Metric.GOAL:
        successes, trials = int(totals.get("goal_reached", 0)), int(totals.get("assigned", 0))
    else:
        column = "clicked" if metric == Experiment.Metric.CLICK else "opened"
        successes, trials = int(totals.get(column, 0)), int(totals.get("delivered", 0))
    # A message clicked and bounced later is no longer delivered but stays clicked.
    return min(successes, trials), trials


@dataclass
class Arm:
    variant: Variant
    totals: dict[str, Any]
    successes: int
    trials: int

    @property
    def rate(self) -> float | None:
        return self.successes / self.trials if self.trials else None


@dataclass
class Comparison:
    """One arm against the control."""

    variant_id: int
    difference: float | None
    p_value: float | None
    p_adjusted: float | None
    significant: bool


@dataclass
class GuardrailBreach:
    variant: Variant
    metric: str  # "unsubscribed" or "complained"
    rate: float
    control_rate: float
    p_value: float


@dataclass
class Analysis:
    experiment: Experiment
    arms: list[Arm]  # every variant, in id order
    control: Variant | None
    compared: list[Arm] = field(default_factory=list)  # control first, then the active challengers
    test: str = ""  # "z", "chi_squared" or "msprt"
    statistic: float | None = None
    p_value: float | None = None
    comparisons: dict[int, Comparison] = field(default_factory=dict)
    probability_to_beat: dict[int, float] = field(default_factory=dict)
    expected_loss: dict[int, float] = field(default_factory=dict)
    sample_size_per_variant: int | None = None
    sample_reached: bool = False
    winner: Variant | None = None  # what the test supports now (experiment_evaluate declares it)
    verdict: str = ""
    srm: dict[str, Any] | None = None
    guardrail_breaches: list[GuardrailBreach] = field(default_factory=list)


def planned_sample_size(experiment: Experiment) -> int | None:
    if experiment.sample_size_per_variant:
        return experiment.sample_size_per_variant
    if experiment.baseline_rate is not None and experiment.minimum_detectable_effect is not None:
        return stats.sample_size_per_variant(
            experiment.baseline_rate, experiment.minimum_detectable_effect, experiment.alpha, experiment.power
        )
    return None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def experiment_analysis(*, experiment: Experiment) -> Analysis:
    variants = list(variants_of(experiment))
    totals = analytics_selectors.variant_totals(step_id=experiment.step_id)
    arms = []
    for variant in variants:
        variant_totals = totals.get(variant.pk, {})
        successes, trials = metric_counts(experiment.metric, variant_totals)
        arms.append(Arm(variant=variant, totals=variant_totals, successes=successes, trials=trials))
    control = control_of(variants, experiment.metric)
    analysis = Analysis(experiment=experiment, arms=arms, control=control)
    analysis.sample_size_per_variant = planned_sample_size(experiment)
    analysis.srm = _sample_ratio(experiment, arms)
    if control is None:
        analysis.verdict = "There is no variant to compare against."
        return analysis
    by_id = {arm.variant.pk: arm for arm in arms}
    # Holdouts send nothing: they take part only when the metric is the goal.
    challengers = [
        arm
        for arm in arms
        if arm.variant.pk != control.pk
        and arm.variant.is_active
        and (not arm.variant.is_holdout or experiment.metric == Experiment.Metric.GOAL)
    ]
    analysis.compared = [by_id[control.pk], *challengers]
    # Guardrails compare mail with mail: against the first sending variant, also when the
    # test's control is the holdout.
    sending = [arm for arm in arms if not arm.variant.is_holdout]
    if sending:
        analysis.guardrail_breaches = _guardrail_breaches(
            experiment, sending[0], [arm for arm in sending[1:] if arm.variant.is_active]
        )
    if not challengers:
        analysis.verdict = "Only one variant is left in the test."
        return analysis
    successes = [arm.successes for arm in analysis.compared]
    trials = [arm.trials for arm in analysis.compared]
    if min(trials) == 0:
        analysis.verdict = "Waiting for every variant to have results."
        return analysis
    _descriptive(analysis, successes, trials)
    if experiment.test == Experiment.Test.SEQUENTIAL:
        _sequential(analysis, successes, trials)
        analysis.sample_reached = True  # always-valid: any look may decide
    else:
        _fixed(analysis, successes, trials)
        needed = analysis.sample_size_per_variant
        analysis.sample_reached = needed is not None and min(trials) >= needed
    _verdict(analysis)
    return analysis


def _descriptive(analysis: Analysis, successes: list[int], trials: list[int]) -> None:
    ids = [arm.variant.pk for arm in analysis.compared]
    beat = stats.probability_to_beat(successes, trials)
    loss = stats.expected_loss(successes, trials)
    analysis.probability_to_beat = dict(zip(ids, (float(value) for value in beat), strict=True))
    analysis.expected_loss = dict(zip(ids, (float(value) for value in loss), strict=True))


def _fixed(analysis: Analysis, successes: list[int], trials: list[int]) -> None:
    result = stats.compare_variants(successes, trials, alpha=analysis.experiment.alpha)
    analysis.test = result.test
    analysis.statistic = _finite(result.statistic)
    analysis.p_value = _finite(result.p_value)
    for pairwise in result.pairwise:
        arm = analysis.compared[pairwise.index]
        analysis.comparisons[arm.variant.pk] = Comparison(
            variant_id=arm.variant.pk,
            difference=_rate_difference(analysis.compared[0], arm),
            p_value=_finite(pairwise.p_value),
            p_adjusted=_finite(pairwise.p_adjusted),
            significant=bool(pairwise.significant),
        )


def _sequential(analysis: Analysis, successes: list[int], trials: list[int]) -> None:
    """mSPRT of each challenger against the control; Holm over the always-valid p-values
    when there are several challengers (Holm holds for any valid p-values)."""
    alpha = analysis.experiment.alpha
    p_values = [
        float(stats.msprt(successes[0], trials[0], successes[index], trials[index]).p_value)
        for index in range(1, len(successes))
    ]
    adjusted = stats.holm(p_values) if len(p_values) > 1 else p_values
    analysis.test = "msprt"
    analysis.p_value = min(adjusted)
    for index, (p_value, p_adjusted) in enumerate(zip(p_values, adjusted, strict=True), start=1):
        arm = analysis.compared[index]
        analysis.comparisons[arm.variant.pk] = Comparison(
            variant_id=arm.variant.pk,
            difference=_rate_difference(analysis.compared[0], arm),
            p_value=p_value,
            p_adjusted=float(p_adjusted),
            significant=float(p_adjusted) < alpha,
        )


def _rate_difference(control: Arm, arm: Arm) -> float | None:
    if control.rate is None or arm.rate is None:
        return None
    return arm.rate - control.rate


def _verdict(analysis: Analysis) -> None:
    """The winner, if the test supports one: the best arm, significantly better than the
    control (after Holm); or the control, when it is significantly better than every other."""
    compared = analysis.compared
    rates = [arm.rate or 0.0 for arm in compared]
    best = max(range(len(compared)), key=lambda index: rates[index])
    if rates.count(rates[best]) > 1:
        analysis.verdict = "No difference yet: the leading variants are tied."
        return
    if analysis.experiment.test == Experiment.Test.FIXED and not analysis.sample_reached:
        needed = analysis.sample_size_per_variant
        analysis.verdict = (
            f"Collecting the planned sample: {needed} per variant."
            if needed
            else "No sample size planned: give one, or a baseline rate and a minimum detectable effect."
        )
        return
    if best == 0:
        others = [analysis.comparisons[arm.variant.pk] for arm in compared[1:]]
        candidate = compared[0].variant if all(other.significant for other in others) else None
    else:
        comparison = analysis.comparisons[compared[best].variant.pk]
        candidate = compared[best].variant if comparison.significant else None
    if candidate is None:
        analysis.verdict = "No significant difference."
    elif candidate.is_holdout:
        analysis.verdict = "No email variant does better than sending nothing."
    elif not candidate.is_active:
        analysis.verdict = f"{candidate.name} leads, but it has been stopped."
    else:
        analysis.winner = candidate
        analysis.verdict = f"{candidate.name} wins."


# The mSPRT's mixing scale for guardrails: unsubscribe and complaint rates differ by tenths of
# a percentage point, not by the points a click test looks for.
GUARDRAIL_TAU2 = 0.005**2


def _guardrail_breaches(experiment: Experiment, control: Arm, challengers: list[Arm]) -> list[GuardrailBreach]:
    """Challengers whose unsubscribe or complaint rate is significantly higher than the
    control's. Guardrails are checked at every evaluation, so the test is the sequential one
    (mSPRT, always-valid p-values): checking a fixed-horizon test every few minutes would stop
    good variants far more often than alpha."""
    breaches = []
    control_delivered = int(control.totals.get("delivered", 0))
    for arm in challengers:
        delivered = int(arm.totals.get("delivered", 0))
        if min(control_delivered, delivered) < GUARDRAIL_MIN_DELIVERED:
            continue
        for metric in GUARDRAIL_METRICS:
            control_count, count = int(control.totals.get(metric, 0)), int(arm.totals.get(metric, 0))
            rate, control_rate = count / delivered, control_count / control_delivered
            if count + control_count == 0 or rate <= control_rate:
                continue
            p_value = float(
                stats.msprt(control_count, control_delivered, count, delivered, tau2=GUARDRAIL_TAU2).p_value
            )
            if p_value < experiment.alpha:
                breaches.append(GuardrailBreach(arm.variant, metric, rate, control_rate, p_value))
                break
    return breaches


def _sample_ratio(experiment: Experiment, arms: list[Arm]) -> dict[str, Any] | None:
    """Assignments against the configured weights, over the variants still assigned.

    Only weighted allocation has fixed expected shares, and only while it runs (a decided
    experiment gives every new contact the winner). Among the active variants the ratio of
    weights holds even after a guardrail stopped another one.
    """
    if experiment.allocation != Experiment.Allocation.WEIGHTED or experiment.status != Experiment.Status.RUNNING:
        return None
    active = [arm for arm in arms if arm.variant.is_active]
    counts = [int(arm.totals.get("assigned", 0)) for arm in active]
    if len(active) < 2 or sum(counts) == 0:
        return None
    result = stats.sample_ratio_mismatch(counts, [arm.variant.weight for arm in active])
    expected_total = sum(arm.variant.weight for arm in active)
    return {
        "statistic": _finite(float(result.statistic)),
        "p_value": _finite(float(result.p_value)),
        "mismatch": bool(result.mismatch),
        "expected_shares": {arm.variant.pk: arm.variant.weight / expected_total for arm in active},
        "observed_shares": {arm.variant.pk: count / sum(counts) for arm, count in zip(active, counts, strict=True)},
        "warning": (
            "Sample ratio mismatch: assignments are off the configured weights, so the results may be "
            "biased. Check for variants that fail to send or for changed weights."
            if result.mismatch
            else ""
        ),
    }


def experiment_results(*, experiment: Experiment) -> dict[str, Any]:
    """Everything the results page shows: per variant counts, rates, p-values (adjusted),
    probability to beat the rest and expected loss, the sample-size progress, the sample-ratio
    check and the status."""
    analysis = experiment_analysis(experiment=experiment)
    needed = analysis.sample_size_per_variant
    compared_ids = {arm.variant.pk for arm in analysis.compared}
    variants = []
    for arm in analysis.arms:
        variant = arm.variant
        comparison = analysis.comparisons.get(variant.pk)
        variants.append(
            {
                "id": variant.pk,
                "name": variant.name,
                "is_holdout": variant.is_holdout,
                "is_control": analysis.control is not None and variant.pk == analysis.control.pk,
                "is_active": variant.is_active,
                "stopped_reason": variant.stopped_reason,
                "weight": variant.weight,
                "counts": {
                    name: int(arm.totals.get(name, 0))
                    for name in (
                        "assigned",
                        "sent",
                        "delivered",
                        "opened",
                        "clicked",
                        "unsubscribed",
                        "complained",
                        "goal_reached",
                    )
                },
                "successes": arm.successes,
                "trials": arm.trials,
                "rate": arm.rate,
                "in_test": variant.pk in compared_ids,
                "difference": comparison.difference if comparison else None,
                "p_value": comparison.p_value if comparison else None,
                "p_adjusted": comparison.p_adjusted if comparison else None,
                "significant": comparison.significant if comparison else False,
                "probability_to_beat": analysis.probability_to_beat.get(variant.pk),
                "expected_loss": analysis.expected_loss.get(variant.pk),
                "progress": min(1.0, arm.trials / needed) if needed and variant.pk in compared_ids else None,
            }
        )
    return {
        "experiment_id": experiment.pk,
        "status": experiment.status,
        "metric": experiment.metric,
        "test": experiment.test,
        "allocation": experiment.allocation,
        "alpha": experiment.alpha,
        "winner_id": experiment.winner_id,
        "decided_at": experiment.decided_at,
        "decision": experiment.decision,
        "statistic": analysis.statistic,
        "p_value": analysis.p_value,
        "test_used": analysis.test,
        "verdict": analysis.verdict,
        "leading_id": analysis.winner.pk if analysis.winner else None,
        "sample_size_per_variant": needed,
        "sample_reached": analysis.sample_reached,
        "srm": analysis.srm,
        "variants": variants,
    }
