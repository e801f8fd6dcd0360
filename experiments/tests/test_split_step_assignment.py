"""A split step gives each enrollment one variant, by weight; a holdout gets no email."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import pytest
from django.utils import timezone

from delivery.models import Message
from experiments.models import Assignment, Experiment
from experiments.services import VariantSpec, variants_assign
from experiments.tests.factories import enroll, experiment_of, fixed_settings, split_sequence, split_step, variant
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences.models import Enrollment

pytestmark = pytest.mark.django_db


def within_binomial_tolerance(count: int, total: int, share: float, sigmas: float = 4.5) -> bool:
    return abs(count - total * share) <= sigmas * math.sqrt(total * share * (1 - share))


def test_enrollments_are_assigned_by_weight_and_their_messages_carry_the_variant() -> None:
    sequence = split_sequence(
        OrganizationFactory(),
        [
            VariantSpec(name="A", weight=3),
            VariantSpec(name="B", weight=1, subject="Other subject"),
            VariantSpec(name="Holdout", weight=1, is_holdout=True),
        ],
        fixed_settings(metric=Experiment.Metric.GOAL),
    )
    enroll(sequence, 2000)

    engine.advance_due_enrollments(limit=2000)

    assigned = Counter(
        Assignment.objects.filter(experiment__step__sequence=sequence).values_list("variant__name", flat=True)
    )
    assert sum(assigned.values()) == 2000
    assert within_binomial_tolerance(assigned["A"], 2000, 3 / 5)
    assert within_binomial_tolerance(assigned["B"], 2000, 1 / 5)
    assert within_binomial_tolerance(assigned["Holdout"], 2000, 1 / 5)
    messages = Counter(Message.objects.filter(sequence=sequence).values_list("variant__name", flat=True))
    assert messages == Counter({"A": assigned["A"], "B": assigned["B"]})
    # Each message carries the variant its enrollment was assigned.
    variant_of = dict(Assignment.objects.values_list("enrollment_id", "variant_id"))
    for enrollment_id, variant_id in Message.objects.filter(sequence=sequence).values_list(
        "enrollment_id", "variant_id"
    ):
        assert variant_of[enrollment_id] == variant_id


def test_the_holdout_gets_no_message_and_moves_on_like_the_rest() -> None:
    sequence = split_sequence(
        OrganizationFactory(),
        [VariantSpec(name="Email"), VariantSpec(name="Holdout", is_holdout=True)],
        fixed_settings(metric=Experiment.Metric.GOAL),
    )
    enroll(sequence, 60)

    engine.advance_due_enrollments()

    # Past the split, both wait out the week's delay that follows it (then the sequence ends).
    in_a_week = timezone.now() + dt.timedelta(days=6)
    held_out = Assignment.objects.filter(variant=variant(sequence, "Holdout")).values_list("enrollment_id", flat=True)
    assert held_out  # 60 fair coin flips
    assert not Message.objects.filter(enrollment_id__in=held_out).exists()
    held_out_enrollments = Enrollment.objects.filter(id__in=held_out)
    assert set(held_out_enrollments.values_list("status", "current_step_id")) == {(Enrollment.Status.ACTIVE, None)}
    assert not held_out_enrollments.filter(next_run_at__lt=in_a_week).exists()
    emailed = Assignment.objects.filter(variant=variant(sequence, "Email")).values_list("enrollment_id", flat=True)
    assert Message.objects.filter(enrollment_id__in=emailed).count() == len(emailed)
    emailed_enrollments = Enrollment.objects.filter(id__in=emailed)
    assert set(emailed_enrollments.values_list("status", "current_step_id")) == {(Enrollment.Status.ACTIVE, None)}
    assert not emailed_enrollments.filter(next_run_at__lt=in_a_week).exists()


def test_a_decided_winner_is_given_to_every_new_contact() -> None:
    sequence = split_sequence(OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="B!")])
    experiment = experiment_of(sequence)
    winner = variant(sequence, "B")
    Experiment.objects.filter(pk=experiment.pk).update(
        status=Experiment.Status.DECIDED, winner=winner, decided_at=timezone.now()
    )
    enroll(sequence, 80)

    engine.advance_due_enrollments()

    assert set(Message.objects.filter(sequence=sequence).values_list("variant_id", flat=True)) == {winner.pk}
    assert Message.objects.filter(sequence=sequence).count() == 80


def test_a_stopped_experiment_sends_the_step_template_and_assigns_nothing() -> None:
    sequence = split_sequence(OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="B!")])
    Experiment.objects.filter(step__sequence=sequence).update(status=Experiment.Status.STOPPED)
    enroll(sequence, 10)

    engine.advance_due_enrollments()

    assert list(Message.objects.filter(sequence=sequence).values_list("variant_id", flat=True)) == [None] * 10
    assert not Assignment.objects.exists()


def test_a_variant_stopped_takes_no_new_contacts() -> None:
    sequence = split_sequence(OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="B!")])
    stopped = variant(sequence, "B")
    stopped.is_active = False
    stopped.save()
    enroll(sequence, 40)

    engine.advance_due_enrollments()

    assert set(Assignment.objects.values_list("variant__name", flat=True)) == {"A"}


def test_an_enrollment_assigned_before_keeps_its_variant() -> None:
    sequence = split_sequence(OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="B!")])
    [contact] = enroll(sequence, 1)
    enrollment = Enrollment.objects.get(contact=contact)
    step = split_step(sequence)
    first = variants_assign(step_id=step.pk, enrollments=[(enrollment.pk, contact.pk)], now=timezone.now())

    for _ in range(5):
        again = variants_assign(step_id=step.pk, enrollments=[(enrollment.pk, contact.pk)], now=timezone.now())
        assert again == first
    assert Assignment.objects.count() == 1
