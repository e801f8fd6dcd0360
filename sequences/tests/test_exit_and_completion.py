"""How an enrollment ends on its own: an exit step, the end of the sequence, or a contact who
can no longer be mailed when their email step comes."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Step
from sequences.tests.helpers import captured_mail, delay_step, draft_sequence, email_step, tick, utc
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)


def test_an_exit_step_ends_the_enrollment_before_the_steps_after_it(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "Before the exit")
    services.step_create(sequence=sequence, kind=Step.Kind.EXIT)
    email_step(sequence, "After the exit")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)

    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(START + dt.timedelta(days=30), tick=False):
        tick(django_capture_on_commit_callbacks)

    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.EXITED
    assert enrollment.exit_reason == Enrollment.ExitReason.EXIT_STEP
    assert enrollment.finished_at == START
    assert enrollment.current_step is None
    assert enrollment.next_run_at is None
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["Before the exit"]


def test_reaching_the_end_of_the_sequence_completes_the_enrollment(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "One")
    delay_step(sequence, dt.timedelta(hours=1))
    email_step(sequence, "Two")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)

    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ACTIVE

    with time_machine.travel(START + dt.timedelta(hours=1), tick=False):
        tick(django_capture_on_commit_callbacks)

    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.COMPLETED
    assert enrollment.exit_reason == ""
    assert enrollment.finished_at == START + dt.timedelta(hours=1)
    assert (enrollment.current_step, enrollment.next_run_at) == (None, None)
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["One", "Two"]


def test_a_finished_enrollment_is_never_claimed_again(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "Only once")
    services.sequence_activate(sequence=sequence)
    services.enrollments_create(sequence=sequence, contacts=ContactFactory.create_batch(3, organization=organization))
    tick(django_capture_on_commit_callbacks)

    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=365), tick=False):
        report = tick(django_capture_on_commit_callbacks)

    assert report.claimed == 0
    assert len(captured_mail(organization)) == 3
    assert Message.objects.count() == 3


def test_a_contact_who_became_unmailable_exits_when_their_email_step_comes() -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Too late")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=START)
    engine.advance_due_enrollments(now=START)
    # Changed behind the services' back (say, a direct import): the engine still checks.
    Contact.objects.filter(pk=contact.pk).update(status=Contact.Status.UNSUBSCRIBED)

    engine.advance_due_enrollments(now=START + dt.timedelta(days=1))

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (
        Enrollment.Status.EXITED,
        Enrollment.ExitReason.NOT_MAILABLE,
    )
    assert not Message.objects.exists()


def test_steps_run_back_to_back_in_one_tick_until_a_wait(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    for subject in ("A", "B", "C"):
        email_step(sequence, subject)
    waiting_on = delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "D")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)

    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        report = tick(django_capture_on_commit_callbacks)

    assert report.messages_created == 3
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["A", "B", "C"]
    enrollment.refresh_from_db()
    assert enrollment.current_step == sequence.steps.get(position=waiting_on.position + 1)
