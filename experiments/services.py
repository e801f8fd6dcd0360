"""Writes of experiments: setting one up, assigning variants, and deciding.

The engine calls `variants_assign` for each batch of enrollments that reach a split step; a
periodic task calls `experiment_evaluate` for each running experiment, which declares a winner
only when the chosen test supports one (experiments.selectors.experiment_analysis) and stops
variants that fail a guardrail.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from analytics import live, stats
from analytics import selectors as analytics_selectors
from analytics import services as analytics_services
from experiments import selectors
from experiments.models import Assignment, Experiment, Variant
from sequences.models import EmailTemplate, Step
from sequences.personalization import template_problems

logger = logging.getLogger(__name__)

MAX_VARIANTS = 10
MAX_WEIGHT = 1000
# Rates, effects and error rates closer to 0 or 1 than this make sample sizes beyond any list.
MIN_PROBABILITY = 0.0001
CONTENT_FIELDS = ("template", "subject", "html_body", "text_body", "from_name")


class StateConflict(ValidationError):
    """The change clashes with the experiment's state (contacts already assigned)."""


@dataclass(frozen=True)
class VariantSpec:
    """One variant as an edit describes it; `id` names an existing variant to keep."""

    name: str
    id: int | None = None
    weight: int = 1
    is_holdout: bool = False
    template: EmailTemplate | None = None
    subject: str = ""
    html_body: str = ""
    text_body: str = ""
    from_name: str = ""
    is_active: bool = True


@dataclass(frozen=True)
class ExperimentSettings:
    name: str = ""
    metric: str = Experiment.Metric.CLICK
    test: str = Experiment.Test.FIXED
    allocation: str = Experiment.Allocation.WEIGHTED
    alpha: float = 0.05
    power: float = 0.8
    baseline_rate: float | None = None
    minimum_detectable_effect: float | None = None
    sample_size_per_variant: int | None = None
    min_exploration_share: float = 0.1
    guardrails: bool = True


# Setting up ----------------------------------------------------------------------------------


def design_errors(
    *, alpha: float, power: float, baseline_rate: float | None, minimum_detectable_effect: float | None
) -> dict[str, str]:
    """What is wrong with a test's design (also the sample-size calculator's input)."""
    errors: dict[str, str] = {}
    if not MIN_PROBABILITY <= alpha < 0.5:
        errors["alpha"] = f"Alpha must be from {MIN_PROBABILITY} to below 0.5."
    if not 0 < power <= 1 - MIN_PROBABILITY:
        errors["power"] = f"Power must be above 0 and at most {1 - MIN_PROBABILITY}."
    baseline, effect = baseline_rate, minimum_detectable_effect
    if baseline is not None and not MIN_PROBABILITY <= baseline <= 1 - MIN_PROBABILITY:
        errors["baseline_rate"] = f"The baseline rate must be from {MIN_PROBABILITY} to {1 - MIN_PROBABILITY}."
    if effect is not None and not (MIN_PROBABILITY <= effect < 1 and (baseline is None or baseline + effect < 1)):
        errors["minimum_detectable_effect"] = (
            f"The effect is an absolute difference of at least {MIN_PROBABILITY}, and baseline + effect < 1."
        )
    return errors


def _settings_errors(settings: ExperimentSettings) -> dict[str, str]:
    errors = design_errors(
        alpha=settings.alpha,
        power=settings.power,
        baseline_rate=settings.baseline_rate,
        minimum_detectable_effect=settings.minimum_detectable_effect,
    )
    if not 0 <= settings.min_exploration_share <= 1:
        errors["min_exploration_share"] = "The exploration share must be between 0 and 1."
    baseline, effect = settings.baseline_rate, settings.minimum_detectable_effect
    if (baseline is None) != (effect is None):
        errors["baseline_rate" if baseline is None else "minimum_detectable_effect"] = (
            "Give the baseline rate and the minimum detectable effect together."
        )
    if settings.sample_size_per_variant is not None and settings.sample_size_per_variant < 1:
        errors["sample_size_per_variant"] = "The sample size must be at least 1."
    if (
        settings.test == Experiment.Test.FIXED
        and not settings.sample_size_per_variant
        and (baseline is None or effect is None)
    ):
        errors["sample_size_per_variant"] = (
            "A fixed-sample test needs its sample size: give it, or a baseline rate and a minimum detectable effect."
        )
    return errors


def _variant_errors(specs: list[VariantSpec], *, metric: str, organization_id: int) -> dict[str, str | list[str]]:
    errors: dict[str, str | list[str]] = {}
    if len(specs) > MAX_VARIANTS:
        errors["variants"] = f"At most {MAX_VARIANTS} variants."
    holdouts = [spec for spec in specs if spec.is_holdout]
    sending = [spec for spec in specs if not spec.is_holdout]
    if len(holdouts) > 1:
        errors["variants"] = "At most one holdout."
    elif len(specs) < 2 or not sending:
        errors["variants"] = "An experiment needs at least two arms, one of them a variant that sends."
    elif metric != Experiment.Metric.GOAL and len(sending) < 2:
        errors["variants"] = (
            "A holdout gets no email, so it has no opens or clicks: compare at least two sending variants, "
            "or measure the goal."
        )
    names = [spec.name.strip() for spec in specs]
    for index, spec in enumerate(specs):
        prefix = f"variants.{index}"
        if not spec.name.strip():
            errors[f"{prefix}.name"] = "A variant needs a name."
        elif names.count(spec.name.strip()) > 1:
            errors[f"{prefix}.name"] = "Variant names must be different."
        if not 1 <= spec.weight <= MAX_WEIGHT:
            errors[f"{prefix}.weight"] = f"A weight is a whole number from 1 to {MAX_WEIGHT}."
        if spec.is_holdout:
            if any(getattr(spec, name) for name in CONTENT_FIELDS):
                errors[prefix] = "A holdout gets no email: it has no template, subject, bodies or sender name."
            continue
        if spec.template is not None and spec.template.organization_id != organization_id:
            errors[f"{prefix}.template_id"] = "The template belongs to another organization."
        for name in ("subject", "html_body", "text_body"):
            problems = template_problems(getattr(spec, name) or "")
            if problems:
                errors[f"{prefix}.{name}"] = [str(problem) for problem in problems]
    return errors


def _raise_if(errors: dict[str, Any]) -> None:
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def experiment_save(*, step: Step, settings: ExperimentSettings, variants: list[VariantSpec]) -> Experiment:
    """Create the experiment of a split step, or replace its settings and variants.

    Variants named by id are kept and updated; others are created; variants left out are
    deleted. Once contacts have been assigned, variants can no longer be added, removed or
    changed in weight or content (that would mix two experiments in one result); their name
    and whether they are active still can, and so can the settings.
    """
    if step.kind != Step.Kind.SPLIT:
        raise ValidationError({"step": "Only a split step has an experiment."})
    errors: dict[str, Any] = {**_settings_errors(settings)}
    errors.update(_variant_errors(variants, metric=settings.metric, organization_id=step.organization_id))
    _raise_if(errors)
    # The step's lock makes two first saves of one experiment wait for each other.
    Step.objects.select_for_update(no_key=True).filter(pk=step.pk).first()
    experiment = Experiment.objects.select_for_update().filter(step=step).first()
    if experiment is None:
        experiment = Experiment(organization_id=step.organization_id, step=step)
    existing = {variant.pk: variant for variant in selectors.variants_of(experiment)} if experiment.pk else {}
    kept: set[int] = set()
    for index, spec in enumerate(variants):
        if spec.id is not None and (spec.id not in existing or spec.id in kept):
            _raise_if({f"variants.{index}.id": f"Variant {spec.id} is not a variant of this experiment."})
        if spec.id is not None:
            kept.add(spec.id)
    if experiment.pk and Assignment.objects.filter(experiment=experiment).exists():
        _refuse_structural_changes(existing, kept, variants)
    for name in ExperimentSettings.__dataclass_fields__:
        setattr(experiment, name, getattr(settings, name))
    experiment.save()
    for variant_id in set(existing) - kept:
        existing[variant_id].delete()
    # Names are unique per experiment: clear kept names first, so two variants may swap theirs.
    for variant_id in kept:
        Variant.objects.filter(pk=variant_id).update(name=f"being renamed {variant_id}")
    for spec in variants:
        variant = existing[spec.id] if spec.id is not None else Variant(organization_id=step.organization_id)
        variant.experiment = experiment
        variant.name = spec.name.strip()
        variant.weight = spec.weight
        variant.is_holdout = spec.is_holdout
        variant.template = spec.template
        variant.subject = spec.subject
        variant.html_body = spec.html_body
        variant.text_body = spec.text_body
        variant.from_name = spec.from_name
        if spec.is_active and not variant.is_active:
            variant.stopped_reason = ""
        elif not spec.is_active and variant.is_active:
            variant.stopped_reason = "Stopped by a person."
        variant.is_active = spec.is_active
        variant.save()
    return experiment


def _refuse_structural_changes(existing: dict[int, Variant], kept: set[int], specs: list[VariantSpec]) -> None:
    if set(existing) != kept or any(spec.id is None for spec in specs):
        raise StateConflict(
            "Contacts have been assigned: variants can no longer be added or removed. Start a new experiment instead."
        )
    for spec in specs:
        variant = existing[spec.id]  # type: ignore[index]
        changed = [
            name
            for name in ("weight", "is_holdout", "subject", "html_body", "text_body", "from_name")
            if getattr(variant, name) != getattr(spec, name)
        ]
        if variant.template_id != (spec.template.pk if spec.template else None):
            changed.append("template")
        if changed:
            raise StateConflict(
                f"Contacts have been assigned: the {', '.join(changed)} of {variant.name} can no longer change."
            )


@transaction.atomic
def experiment_delete(*, experiment: Experiment) -> None:
    """Delete the experiment with its variants and assignments; the step sends its own
    template from then on. Messages already sent keep their history (their variant is cleared)."""
    experiment.delete()


# Assigning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assigned:
    """What an enrollment gets at a split step: a variant (None: the step's own template)."""

    variant_id: int | None
    is_holdout: bool = False


UNASSIGNED = Assigned(variant_id=None)


def allocation_shares(*, experiment: Experiment, variants: list[Variant]) -> list[float]:
    """The probability of each of `variants` (the active ones) for the next enrollment.

    Weighted: by weight. Thompson: the holdout keeps its weight's share; the rest is divided
    among the sending variants by Thompson sampling on the metric, each keeping at least the
    experiment's exploration floor.
    """
    weights = np.array([variant.weight for variant in variants], dtype=float)
    shares = weights / weights.sum()
    sending = [index for index, variant in enumerate(variants) if not variant.is_holdout]
    if experiment.allocation != Experiment.Allocation.THOMPSON or len(sending) < 2:
        return shares.tolist()
    totals = analytics_selectors.variant_totals(step_id=experiment.step_id)
    counts = [selectors.metric_counts(experiment.metric, totals.get(variants[i].pk, {})) for i in sending]
    thompson = stats.thompson_shares(
        [successes for successes, _ in counts],
        [trials for _, trials in counts],
        min_exploration_share=experiment.min_exploration_share,
    )
    sending_share = float(sum(shares[i] for i in sending))
    for index, share in zip(sending, thompson, strict=True):
        shares[index] = sending_share * float(share)
    return shares.tolist()


def variants_assign(*, step_id: int, enrollments: list[tuple[int, int]], now: dt.datetime) -> dict[int, Assigned]:
    """Assign each (enrollment id, contact id) reaching a split step a variant.

    Writes one Assignment per enrollment (in bulk) and its analytics facts, in the caller's
    transaction. An enrollment assigned before (its batch was retried) keeps its variant. A
    step without an experiment, or with one stopped without a winner, sends its own template
    and assigns nothing; a decided experiment gives every new enrollment the winner.
    """
    experiment = Experiment.objects.filter(step_id=step_id).first()
    if experiment is None or not enrollments:
        return {enrollment_id: UNASSIGNED for enrollment_id, _ in enrollments}
    variants = list(selectors.variants_of(experiment))
    holdout_ids = {variant.pk for variant in variants if variant.is_holdout}
    result: dict[int, Assigned] = {}
    for enrollment_id, variant_id in Assignment.objects.filter(
        experiment=experiment, enrollment_id__in=[enrollment_id for enrollment_id, _ in enrollments]
    ).values_list("enrollment_id", "variant_id"):
        result[enrollment_id] = Assigned(variant_id, variant_id in holdout_ids)
    fresh = [(enrollment_id, contact_id) for enrollment_id, contact_id in enrollments if enrollment_id not in result]
    if not fresh:
        return result
    if experiment.status == Experiment.Status.DECIDED and experiment.winner_id is not None:
        chosen = [experiment.winner_id] * len(fresh)
    else:
        active = [variant for variant in variants if variant.is_active]
        if experiment.status != Experiment.Status.RUNNING or not active:
            result.update({enrollment_id: UNASSIGNED for enrollment_id, _ in fresh})
            return result
        shares = np.array(allocation_shares(experiment=experiment, variants=active))
        picks = np.random.default_rng().choice(len(active), size=len(fresh), p=shares / shares.sum())
        chosen = [active[index].pk for index in picks]
    rows = Assignment.objects.bulk_create(
        Assignment(
            organization_id=experiment.organization_id,
            experiment_id=experiment.pk,
            variant_id=variant_id,
            enrollment_id=enrollment_id,
            contact_id=contact_id,
            assigned_at=now,
        )
        for (enrollment_id, contact_id), variant_id in zip(fresh, chosen, strict=True)
    )
    analytics_services.facts_add(
        organization_id=experiment.organization_id, kind="assigned", object_ids=[row.pk for row in rows]
    )
    for (enrollment_id, _), variant_id in zip(fresh, chosen, strict=True):
        result[enrollment_id] = Assigned(variant_id, variant_id in holdout_ids)
    return result


# Deciding ------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    winner_id: int | None = None
    stopped_variant_ids: list[int] = field(default_factory=list)
    verdict: str = ""


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def experiment_evaluate(*, experiment_id: int, now: dt.datetime | None = None) -> Evaluation:
    """Apply the guardrails and the chosen test to a running experiment.

    A variant whose unsubscribe or complaint rate is significantly worse than the control's is
    stopped (no new contacts). A winner is declared only when the test says so: the fixed test
    once, when every arm has its planned sample (without a winner then, the experiment stops and
    the step sends its own email), the sequential one at any look. People are told through a
    live notification, after commit.
    """
    now = now or timezone.now()
    evaluation = Evaluation()
    notifications: list[dict[str, Any]] = []
    with transaction.atomic():
        experiment = (
            Experiment.objects.select_for_update()
            .select_related("step")
            .filter(pk=experiment_id, status=Experiment.Status.RUNNING)
            .first()
        )
        if experiment is None:
            return evaluation
        analysis = selectors.experiment_analysis(experiment=experiment)
        evaluation.verdict = analysis.verdict
        base = {
            "experiment_id": experiment.pk,
            "sequence_id": experiment.step.sequence_id,
            "step_id": experiment.step_id,
        }
        if experiment.guardrails:
            for breach in analysis.guardrail_breaches:
                what = "unsubscribe" if breach.metric == "unsubscribed" else "complaint"
                reason = (
                    f"Guardrail: {what} rate {_percent(breach.rate)} against {_percent(breach.control_rate)} "
                    f"for the control (one-sided p = {breach.p_value:.4g})."
                )
                if Variant.objects.filter(pk=breach.variant.pk, is_active=True).update(
                    is_active=False, stopped_reason=reason
                ):
                    evaluation.stopped_variant_ids.append(breach.variant.pk)
                    notifications.append(
                        {
                            "kind": "experiment_guardrail",
                            "title": f"Variant {breach.variant.name} stopped: its {what} rate is too high",
                            "data": {
                                **base,
                                "variant_id": breach.variant.pk,
                                "metric": breach.metric,
                                "rate": breach.rate,
                                "control_rate": breach.control_rate,
                                "p_value": breach.p_value,
                            },
                        }
                    )
        winner = analysis.winner
        if winner is not None and winner.pk not in evaluation.stopped_variant_ids:
            comparison = analysis.comparisons.get(winner.pk)
            p_value = comparison.p_adjusted if comparison else analysis.p_value
            experiment.status = Experiment.Status.DECIDED
            experiment.winner = winner
            experiment.decided_at = now
            experiment.decision = (
                f"{winner.name} wins on {experiment.get_metric_display().lower()} "
                f"({analysis.test}, p = {p_value:.4g} at alpha {experiment.alpha}). Every new contact gets it."
            )
            experiment.save(update_fields=["status", "winner", "decided_at", "decision"])
            evaluation.winner_id = winner.pk
            notifications.append(
                {
                    "kind": "experiment_winner",
                    "title": f"Experiment {experiment}: {winner.name} wins",
                    "data": {**base, "variant_id": winner.pk, "p_value": p_value, "test": analysis.test},
                }
            )
        elif experiment.test == Experiment.Test.FIXED and analysis.sample_reached:
            # A fixed-horizon test is read once, at its planned sample: testing it again as data
            # keeps coming would find a "winner" far more often than alpha.
            experiment.status = Experiment.Status.STOPPED
            experiment.decided_at = now
            experiment.decision = (
                f"No winner: {analysis.verdict} at the planned sample ({analysis.test}, p = {_p(analysis.p_value)}, "
                f"alpha {experiment.alpha}). New contacts get the step's own email."
            )
            experiment.save(update_fields=["status", "decided_at", "decision"])
            notifications.append(
                {
                    "kind": "experiment_concluded",
                    "title": f"Experiment {experiment}: no significant difference",
                    "data": {**base, "p_value": analysis.p_value, "test": analysis.test},
                }
            )
        organization_id = experiment.organization_id
        for notification in notifications:
            transaction.on_commit(
                lambda notification=notification: live.notification_publish(organization_id, **notification)
            )
    return evaluation


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def experiments_evaluate_all(*, now: dt.datetime | None = None) -> int:
    """Evaluate every running experiment, each in its own transaction; returns how many."""
    ids: Iterable[int] = Experiment.objects.filter(status=Experiment.Status.RUNNING).values_list("id", flat=True)
    count = 0
    for experiment_id in list(ids):
        try:
            experiment_evaluate(experiment_id=experiment_id, now=now)
        except Exception:  # one broken experiment must not stop the others' decisions
            logger.exception("experiment %s could not be evaluated", experiment_id)
        count += 1
    return count
