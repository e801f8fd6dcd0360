"""One enrollment that cannot be advanced never holds up the others, a step never sends twice
to the same enrollment whatever staff do to the order of steps, and a sequence resumed while
the engine is parking its contacts leaves none of them stranded."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence, Step
from sequences.tests.helpers import delay_step, draft_sequence, email_step
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def active_sequence_of_one_email(organization=None) -> Sequence:
    sequence = draft_sequence(organization or OrganizationFactory())
    email_step(sequence, "Only email")
    delay_step(sequence, dt.timedelta(days=1))
    services.sequence_activate(sequence=sequence)
    return sequence


def test_an_email_step_that_already_sent_to_an_enrollment_is_skipped_not_resent() -> None:
    sequence = active_sequence_of_one_email()
    [enrollment] = services.enrollments_create(
        sequence=sequence, contacts=[ContactFactory(organization=sequence.organization)]
    ).enrolled
    engine.advance_due_enrollments()
    assert Message.objects.count() == 1

    # Staff move the email step after the contact's current step: the engine meets it again.
    email = sequence.steps.get(kind=Step.Kind.EMAIL)
    Step.objects.filter(pk=email.pk).update(position=99)
    Enrollment.objects.filter(pk=enrollment.pk).update(current_step=email, next_run_at=timezone.now())
    engine.advance_due_enrollments()

    assert Message.objects.count() == 1
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.COMPLETED


def test_a_loop_left_by_reordered_steps_defers_that_enrollment_and_the_batch_goes_on() -> None:
    looping = draft_sequence(OrganizationFactory())
    delay_step(looping, dt.timedelta(hours=1))
    condition = services.step_create(
        sequence=looping, kind=Step.Kind.CONDITION, condition={"type": "has_tag", "tag": 1}
    )
    services.sequence_activate(sequence=looping)
    # Reordering around validation leaves a condition that leads back to itself.
    Step.objects.filter(pk=condition.pk).update(yes_step=condition, no_step=condition)
    stuck = services.enrollments_create(sequence=looping, contacts=[ContactFactory(organization=looping.organization)])
    Enrollment.objects.filter(pk=stuck.enrolled[0].pk).update(current_step=condition)
    healthy = active_sequence_of_one_email()
    services.enrollments_create(sequence=healthy, contacts=[ContactFactory(organization=healthy.organization)])
    now = timezone.now()

    report = engine.advance_due_enrollments(now=now)

    assert report.claimed == 2
    assert Message.objects.filter(sequence=healthy).count() == 1
    looped = Enrollment.objects.get(sequence=looping)
    assert looped.status == Enrollment.Status.ACTIVE and looped.current_step_id == condition.pk
    assert looped.next_run_at == now + engine.QUARANTINE


def test_a_failing_enrollment_is_deferred_and_the_rest_of_its_batch_is_advanced(monkeypatch) -> None:
    sequence = active_sequence_of_one_email()
    contacts = [ContactFactory(organization=sequence.organization) for _ in range(3)]
    services.enrollments_create(sequence=sequence, contacts=contacts)
    poisoned = Enrollment.objects.get(contact=contacts[1])
    original = engine._Batch._emails

    def fail_for_one(batch: engine._Batch, rows: list) -> list:
        if any(row.enrollment_id == poisoned.pk for row in rows):
            raise RuntimeError("a step that cannot be run")
        return original(batch, rows)

    monkeypatch.setattr(engine._Batch, "_emails", fail_for_one)
    now = timezone.now()

    engine.advance_due_enrollments(now=now)

    assert set(Message.objects.values_list("contact_id", flat=True)) == {contacts[0].pk, contacts[2].pk}
    poisoned.refresh_from_db()
    assert poisoned.next_run_at == now + engine.QUARANTINE


def test_a_sequence_resumed_while_the_engine_parks_its_contacts_strands_none_of_them() -> None:
    sequence = active_sequence_of_one_email()
    services.enrollments_create(sequence=sequence, contacts=[ContactFactory(organization=sequence.organization)])
    services.sequence_pause(sequence=sequence)
    Enrollment.objects.update(next_run_at=timezone.now())  # due while paused
    claimed = list(
        Enrollment.objects.values_list("id", "organization_id", "sequence_id", "contact_id", "current_step_id")
    )
    batch = engine._Batch([engine._Row(*row) for row in claimed], timezone.now())
    batch.run()  # reads the sequence as paused

    services.sequence_resume(sequence=sequence)  # commits before the batch writes
    batch.write()

    enrollment = Enrollment.objects.get()
    assert enrollment.next_run_at is not None
    engine.advance_due_enrollments()
    assert Message.objects.filter(sequence=sequence).count() == 1
