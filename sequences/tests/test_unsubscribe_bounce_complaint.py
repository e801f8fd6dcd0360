"""An unsubscribe, a hard bounce or a complaint ends every active enrollment of the contact at
once, in every sequence, and cancels what was written for them but not sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine

from conftest import SmtpServer
from delivery import services as delivery_services
from delivery.composer import unsubscribe_url
from delivery.models import Event, Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence
from sequences.tests.helpers import delay_step, draft_sequence, email_step, tick, utc
from subscribers import services as subscriber_services
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)


def sequence_with(organization, *, wait: dt.timedelta | None = None) -> Sequence:
    sequence = draft_sequence(organization)
    if wait:
        delay_step(sequence, wait)
    email_step(sequence, f"Email after {wait}")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Follow-up")
    return services.sequence_activate(sequence=sequence)


STOPS: dict[str, tuple[Callable[[Contact], object], str, str]] = {
    "unsubscribe": (
        lambda contact: subscriber_services.contact_unsubscribe(contact=contact, source="preference centre"),
        Enrollment.ExitReason.UNSUBSCRIBED,
        Contact.Status.UNSUBSCRIBED,
    ),
    "bounce": (
        lambda contact: subscriber_services.contact_mark_bounced(contact=contact, detail="550 5.1.1 unknown user"),
        Enrollment.ExitReason.BOUNCED,
        Contact.Status.BOUNCED,
    ),
    "complaint": (
        lambda contact: subscriber_services.contact_mark_complained(contact=contact, detail="abuse report"),
        Enrollment.ExitReason.COMPLAINED,
        Contact.Status.COMPLAINED,
    ),
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_stopping_mail_to_a_contact_ends_all_their_active_enrollments_at_once(
    stop: str, django_capture_on_commit_callbacks
) -> None:
    stop_mailing, reason, contact_status = STOPS[stop]
    organization = OrganizationFactory()
    waiting = sequence_with(organization)
    queued = sequence_with(organization)
    finished = sequence_with(organization)
    contact = ContactFactory(organization=organization)
    bystander = ContactFactory(organization=organization)
    # In `waiting` the first email went out and the contact waits a day for the next one.
    services.enrollments_create(sequence=waiting, contacts=[contact, bystander], now=START)
    engine.advance_due_enrollments(now=START)
    # In `queued` the engine wrote the message but its send task has not run yet.
    services.enrollment_create(sequence=queued, contact=contact, now=START)
    with django_capture_on_commit_callbacks(execute=False):
        engine.advance_due_enrollments(now=START)
    ended_before = services.enrollment_create(sequence=finished, contact=contact, now=START)
    services.enrollment_exit(enrollment=ended_before)

    with time_machine.travel(START + dt.timedelta(hours=1), tick=False):
        stop_mailing(contact)

    contact.refresh_from_db()
    assert contact.status == contact_status
    mine = Enrollment.objects.filter(contact=contact)
    for enrollment in mine.filter(sequence__in=[waiting, queued]):
        assert enrollment.status == Enrollment.Status.EXITED
        assert enrollment.exit_reason == reason
        assert enrollment.finished_at == START + dt.timedelta(hours=1)
        assert enrollment.next_run_at is None
    assert mine.get(sequence=finished).exit_reason == Enrollment.ExitReason.REMOVED
    assert not Message.objects.filter(contact=contact, status=Message.Status.QUEUED).exists()
    assert Message.objects.get(contact=contact, sequence=queued).status == Message.Status.CANCELLED
    assert Enrollment.objects.get(contact=bystander).status == Enrollment.Status.ACTIVE

    # Nothing more reaches the contact, whenever the engine next runs.
    with time_machine.travel(START + dt.timedelta(days=3), tick=False):
        tick(django_capture_on_commit_callbacks)
    assert not Message.objects.filter(contact=contact, status=Message.Status.SENT).exists()
    assert Message.objects.filter(contact=bystander, step__name="Follow-up", status=Message.Status.SENT).exists()


def test_a_hard_bounce_at_the_smtp_server_ends_the_contacts_other_sequences_too(
    smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    organization = OrganizationFactory()
    first = sequence_with(organization)
    later = sequence_with(organization, wait=dt.timedelta(hours=2))
    contact = ContactFactory(organization=organization)
    reachable = ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, "550 5.1.1 <unknown>: Recipient address rejected")
    with time_machine.travel(START, tick=False):
        services.enrollments_create(sequence=first, contacts=[contact, reachable])
        services.enrollments_create(sequence=later, contacts=[contact, reachable])

        tick(django_capture_on_commit_callbacks)

    bounced = Message.objects.get(contact=contact, sequence=first)
    assert bounced.status == Message.Status.BOUNCED
    assert bounced.response.startswith("550")
    assert Event.objects.filter(contact=contact, type=Event.Type.BOUNCE, message=bounced).exists()
    contact.refresh_from_db()
    assert contact.status == Contact.Status.BOUNCED
    assert set(Enrollment.objects.filter(contact=contact).values_list("status", "exit_reason")) == {
        (Enrollment.Status.EXITED, Enrollment.ExitReason.BOUNCED)
    }

    for days in (1, 2):
        with time_machine.travel(START + dt.timedelta(days=days), tick=False):
            tick(django_capture_on_commit_callbacks)
    assert [mail.recipients for mail in smtp_route.received] == [(reachable.email,)] * 4
    assert Message.objects.filter(contact=contact).count() == 1


def test_an_unsubscribe_link_click_ends_enrollments_like_any_other_unsubscribe(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequences = [sequence_with(organization), sequence_with(organization)]
    contact = ContactFactory(organization=organization)
    for sequence in sequences:
        services.enrollment_create(sequence=sequence, contact=contact)
    tick(django_capture_on_commit_callbacks)
    message = Message.objects.filter(contact=contact, status=Message.Status.SENT).first()
    token = unsubscribe_url(message.pk, contact.pk).rsplit("/", 1)[1]
    target = delivery_services.unsubscribe_target(token=token)

    changed = delivery_services.unsubscribe_by_link(
        target=target,
        request=delivery_services.TrackedRequest(ip="192.0.2.1", user_agent="Mozilla/5.0", method="POST"),
        one_click=True,
    )

    assert changed is True
    assert set(Enrollment.objects.filter(contact=contact).values_list("status", "exit_reason")) == {
        (Enrollment.Status.EXITED, Enrollment.ExitReason.UNSUBSCRIBED)
    }
