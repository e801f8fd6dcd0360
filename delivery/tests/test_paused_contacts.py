"""A contact who paused mail on the preference page (Contact.paused_until) gets no marketing
email until then: its messages are deferred, not dropped, and go out once the pause is over.
Transactional email is not paused."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.utils import timezone

from conftest import SmtpServer
from delivery.models import Message
from delivery.tests.factories import email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def paused_contact(until: dt.datetime, **fields: object) -> Contact:
    return ContactFactory(organization=OrganizationFactory(), paused_until=until, **fields)


def test_marketing_email_to_a_paused_contact_waits_for_the_end_of_the_pause_then_goes_out_once(
    smtp_route: SmtpServer, tick
) -> None:
    until = timezone.now() + dt.timedelta(days=14)
    contact = paused_contact(until)
    [message] = write_messages(email_sequence(contact.organization), contact)

    report = send(message)

    assert (report.sent, report.deferred) == (0, 1)
    message.refresh_from_db()
    assert (message.status, message.attempts, message.next_attempt_at) == (Message.Status.QUEUED, 0, until)
    assert message.response.endswith(": the contact paused mail")
    with time_machine.travel(until - dt.timedelta(minutes=1)):
        tick()
    assert smtp_route.received == []

    with time_machine.travel(until + dt.timedelta(minutes=1)):
        tick()
        tick()

    assert [mail.recipients for mail in smtp_route.received] == [(contact.email,)]
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.SENT, 1)


def test_the_end_of_a_pause_falls_into_the_sequences_send_window(smtp_route: SmtpServer) -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    contact = paused_contact(dt.datetime(2026, 6, 1, 3, 0, tzinfo=paris), timezone="Europe/Paris")
    sequence = email_sequence(contact.organization, send_start_hour=8, send_end_hour=20)

    with time_machine.travel(dt.datetime(2026, 5, 20, 12, 0, tzinfo=paris), tick=False):
        [message] = write_messages(sequence, contact)
        send(message)

    message.refresh_from_db()
    assert message.next_attempt_at == dt.datetime(2026, 6, 1, 8, 0, tzinfo=paris)


def test_transactional_email_reaches_a_paused_contact(smtp_route: SmtpServer) -> None:
    contact = paused_contact(timezone.now() + dt.timedelta(days=30))
    [receipt] = write_messages(email_sequence(contact.organization, is_transactional=True), contact)
    [news] = write_messages(email_sequence(contact.organization), contact)

    report = send(receipt, news)

    assert (report.sent, report.deferred) == (1, 1)
    assert Message.objects.get(pk=receipt.pk).status == Message.Status.SENT


def test_a_pause_that_is_over_changes_nothing(smtp_route: SmtpServer) -> None:
    contact = paused_contact(timezone.now() - dt.timedelta(minutes=1))
    [message] = write_messages(email_sequence(contact.organization), contact)

    assert send(message).sent == 1
