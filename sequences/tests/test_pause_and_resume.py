"""Pausing a sequence stops its sending at once (queued messages are held, due contacts are
parked); resuming continues each contact where it was, without sending anything twice.
Archiving ends the sequence's enrollments. Deliveries are counted at a real SMTP server."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import time_machine
from django.core.exceptions import ValidationError

from conftest import SmtpServer
from delivery import services as delivery_services
from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence
from sequences.tests.helpers import delay_step, draft_sequence, email_step, tick, utc
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)


def onboarding(organization) -> Sequence:
    sequence = draft_sequence(organization)
    email_step(sequence, "Welcome")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Day two")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Day three")
    return services.sequence_activate(sequence=sequence)


def deliveries(smtp: SmtpServer) -> Counter[tuple[str, str]]:
    return Counter((mail.recipients[0], str(mail.parsed()["Subject"])) for mail in smtp.received)


def test_a_paused_sequence_parks_due_contacts_and_resuming_continues_them_without_resending(
    smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    organization = OrganizationFactory()
    sequence = onboarding(organization)
    contacts = ContactFactory.create_batch(5, organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollments_create(sequence=sequence, contacts=contacts)
        tick(django_capture_on_commit_callbacks)
    assert len(smtp_route.received) == 5

    with time_machine.travel(START + dt.timedelta(hours=2), tick=False):
        services.sequence_pause(sequence=sequence)
    with time_machine.travel(START + dt.timedelta(days=3), tick=False):
        report = tick(django_capture_on_commit_callbacks)
    assert report.parked == 5
    assert len(smtp_route.received) == 5
    for enrollment in Enrollment.objects.all():
        assert enrollment.status == Enrollment.Status.ACTIVE
        assert enrollment.next_run_at is None
        assert enrollment.current_step.name == "Day two"

    resumed_at = START + dt.timedelta(days=4)
    with time_machine.travel(resumed_at, tick=False):
        services.sequence_resume(sequence=sequence)
        assert set(Enrollment.objects.values_list("next_run_at", flat=True)) == {resumed_at}
        tick(django_capture_on_commit_callbacks)
    # Each contact continues from the step it was on: day two now, day three a day later.
    assert deliveries(smtp_route) == Counter(
        {(c.email, "Welcome"): 1 for c in contacts} | {(c.email, "Day two"): 1 for c in contacts}
    )
    with time_machine.travel(resumed_at + dt.timedelta(days=1), tick=False):
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(resumed_at + dt.timedelta(days=9), tick=False):
        tick(django_capture_on_commit_callbacks)

    expected = Counter({(c.email, subject): 1 for c in contacts for subject in ("Welcome", "Day two", "Day three")})
    assert deliveries(smtp_route) == expected
    assert Message.objects.filter(status=Message.Status.SENT).count() == 15
    assert set(Enrollment.objects.values_list("status", flat=True)) == {Enrollment.Status.COMPLETED}


def test_messages_written_before_a_pause_are_held_and_sent_once_on_resume(
    smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    organization = OrganizationFactory()
    sequence = onboarding(organization)
    contacts = ContactFactory.create_batch(4, organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollments_create(sequence=sequence, contacts=contacts)
        # The engine writes the messages; their send tasks are still on their way.
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            engine.advance_due_enrollments()
    assert len(dispatches) == 1
    message_ids = list(Message.objects.values_list("id", flat=True))

    with time_machine.travel(START + dt.timedelta(minutes=1), tick=False):
        services.sequence_pause(sequence=sequence)
        # The late send task arrives, and the sweep runs: both leave the messages alone.
        report = delivery_services.messages_send(message_ids=message_ids)
    with time_machine.travel(START + dt.timedelta(hours=6), tick=False):
        tick(django_capture_on_commit_callbacks)
    assert report.held == 4
    assert smtp_route.received == []
    assert set(Message.objects.values_list("status", "next_attempt_at")) == {(Message.Status.QUEUED, None)}

    resumed_at = START + dt.timedelta(hours=7)
    with time_machine.travel(resumed_at, tick=False):
        services.sequence_resume(sequence=sequence)
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(resumed_at + dt.timedelta(minutes=30), tick=False):
        tick(django_capture_on_commit_callbacks)

    assert deliveries(smtp_route) == Counter({(c.email, "Welcome"): 1 for c in contacts})
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}
    assert Message.objects.count() == 4


def test_contacts_enrolled_while_paused_wait_for_the_resume(
    smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    organization = OrganizationFactory()
    sequence = onboarding(organization)
    services.sequence_pause(sequence=sequence)
    contacts = ContactFactory.create_batch(3, organization=organization)

    report = services.enrollments_create(sequence=sequence, contacts=contacts)
    tick(django_capture_on_commit_callbacks)

    assert report.enrolled_count == 3
    assert set(Enrollment.objects.values_list("next_run_at", flat=True)) == {None}
    assert smtp_route.received == []
    services.sequence_resume(sequence=sequence)
    tick(django_capture_on_commit_callbacks)
    assert sorted(mail.recipients[0] for mail in smtp_route.received) == sorted(c.email for c in contacts)


def test_only_an_active_sequence_can_be_paused() -> None:
    organization = OrganizationFactory()
    draft = draft_sequence(organization)
    email_step(draft, "Hello")

    with pytest.raises(ValidationError):
        services.sequence_pause(sequence=draft)

    draft.refresh_from_db()
    assert draft.status == Sequence.Status.DRAFT


def test_archiving_ends_every_active_enrollment_and_cancels_unsent_mail(
    smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    organization = OrganizationFactory()
    sequence = onboarding(organization)
    other = onboarding(organization)
    waiting, queued = ContactFactory.create_batch(2, organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollment_create(sequence=sequence, contact=waiting)
        services.enrollment_create(sequence=other, contact=waiting)
        tick(django_capture_on_commit_callbacks)
        services.enrollment_create(sequence=sequence, contact=queued)
        with django_capture_on_commit_callbacks(execute=False):
            engine.advance_due_enrollments()

    with time_machine.travel(START + dt.timedelta(hours=1), tick=False):
        services.sequence_archive(sequence=sequence)
    for days in (5, 6):
        with time_machine.travel(START + dt.timedelta(days=days), tick=False):
            tick(django_capture_on_commit_callbacks)

    archived = Enrollment.objects.filter(sequence=sequence)
    assert set(archived.values_list("status", "exit_reason")) == {
        (Enrollment.Status.EXITED, Enrollment.ExitReason.SEQUENCE_ARCHIVED)
    }
    assert Message.objects.get(sequence=sequence, contact=queued).status == Message.Status.CANCELLED
    assert Enrollment.objects.get(sequence=other).status == Enrollment.Status.COMPLETED
    assert deliveries(smtp_route) == Counter(
        {(waiting.email, "Welcome"): 2, (waiting.email, "Day two"): 1, (waiting.email, "Day three"): 1}
    )
    with pytest.raises(ValidationError):
        services.sequence_activate(sequence=sequence)


def test_archiving_a_paused_sequence_cancels_mail_it_was_holding_for_finished_contacts(
    django_capture_on_commit_callbacks,
) -> None:
    sequence = draft_sequence(OrganizationFactory())
    email_step(sequence, "Last and only")
    services.sequence_activate(sequence=sequence)
    services.enrollments_create(sequence=sequence, contacts=[ContactFactory(organization=sequence.organization)])
    engine.advance_due_enrollments()  # the message is written and the enrollment completes
    services.sequence_pause(sequence=sequence)

    services.sequence_archive(sequence=sequence)

    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.CANCELLED}
