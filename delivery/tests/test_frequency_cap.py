"""Frequency caps across all sequences of an organization: at most N marketing emails per contact
per day (the contact's own day) and per rolling 7 days. A capped email is deferred to when the
cap frees, never dropped and never sent twice; transactional sequences are exempt and do not
count."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import SmtpServer
from delivery import policies
from delivery.models import Message
from delivery.tests.factories import MessageFactory, email_sequence, email_step, enrollment_for, send, write_messages
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment, Sequence
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def local(year: int, month: int, day: int, hour: int, minute: int = 0, tz: zoneinfo.ZoneInfo = NEW_YORK) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz)


def sent_earlier(sequence: Sequence, contact: Contact, sent_at: dt.datetime) -> Message:
    """A message of `sequence` that reached the contact at `sent_at` (its enrollment is over)."""
    enrollment = enrollment_for(
        sequence,
        contact,
        status=Enrollment.Status.COMPLETED,
        finished_at=sent_at,
        current_step=None,
        next_run_at=None,
        enrolled_at=sent_at,
    )
    return MessageFactory(enrollment=enrollment, step=email_step(sequence), sent_at=sent_at)


def capped_organization(**caps: int) -> Organization:
    return OrganizationFactory(timezone="Europe/Paris", **caps)


def test_a_contact_in_five_sequences_gets_at_most_the_daily_cap_each_of_its_days_and_every_email_in_the_end(
    smtp_route: SmtpServer, tick
) -> None:
    organization = capped_organization(frequency_cap_daily=2)
    contact = ContactFactory(organization=organization, timezone="America/New_York")
    sequences = [email_sequence(organization, subject=f"Offer {number}") for number in range(1, 6)]
    arrivals: list[list[str]] = []

    def arrived_since(before: int) -> list[str]:
        return [str(mail.parsed()["Subject"]) for mail in smtp_route.received[before:]]

    # 20:00 in New York is already the next day in UTC (and in Paris): the day is the contact's.
    moments = [
        local(2026, 5, 4, 20),  # enrolled: every sequence's email is due at once
        local(2026, 5, 4, 23, 30),  # same local day: nothing more
        local(2026, 5, 5, 0, 1),  # the next local day: two more
        local(2026, 5, 5, 18),
        local(2026, 5, 6, 9),  # the last one
        local(2026, 5, 7, 9),  # nothing left
    ]
    with time_machine.travel(moments[0]):
        for sequence in sequences:
            sequence_services.enrollments_create(sequence=sequence, contacts=[contact])
    for moment in moments:
        with time_machine.travel(moment):
            before = len(smtp_route.received)
            tick()
            tick()
            arrivals.append(arrived_since(before))

    assert [len(day) for day in arrivals] == [2, 0, 2, 0, 1, 0]
    subjects = [subject for day in arrivals for subject in day]
    assert sorted(subjects) == [f"Offer {number}" for number in range(1, 6)], "each email once, none lost"
    messages = Message.objects.filter(contact=contact).order_by("id")
    assert [message.status for message in messages] == [Message.Status.SENT] * 5
    assert [message.attempts for message in messages] == [1] * 5, "a deferral is not an attempt"
    by_subject = {message.subject: message for message in messages}
    # Oldest first: the emails go out in the order the engine wrote them.
    assert [by_subject[subject].pk for subject in subjects] == sorted(message.pk for message in messages)
    sent_days = [message.sent_at.astimezone(NEW_YORK).date() for message in messages]
    assert max(sent_days.count(day) for day in set(sent_days)) == 2


def test_a_capped_email_goes_back_to_the_queue_until_the_contacts_next_day_without_an_attempt(
    smtp_route: SmtpServer,
) -> None:
    organization = capped_organization(frequency_cap_daily=1)
    contact = ContactFactory(organization=organization, timezone="Asia/Tokyo")
    sequences = [email_sequence(organization, emails=2) for _ in range(2)]
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")

    with time_machine.travel(local(2026, 5, 4, 15, tz=tokyo), tick=False):
        first = write_messages(sequences[0], contact)
        second = write_messages(sequences[1], contact)
        report = send(*first, *second)

    assert (report.sent, report.deferred) == (1, 1)
    [capped] = second
    capped.refresh_from_db()
    assert capped.status == Message.Status.QUEUED
    assert capped.attempts == 0
    assert capped.next_attempt_at == local(2026, 5, 5, 0, tz=tokyo)
    assert capped.response == "deferred until 2026-05-04 15:00 UTC: daily cap of 1 reached"
    assert len(smtp_route.received) == 1


def test_a_deferred_email_waits_for_its_sequences_send_window(smtp_route: SmtpServer) -> None:
    organization = capped_organization(frequency_cap_daily=1)
    contact = ContactFactory(organization=organization, timezone="America/New_York")
    weekdays = list(range(5))
    sequences = [
        email_sequence(organization, emails=2, send_start_hour=9, send_end_hour=17, send_days=weekdays)
        for _ in range(2)
    ]

    # Friday afternoon: the next window opens on Monday at nine.
    with time_machine.travel(local(2026, 5, 8, 14), tick=False):
        messages = write_messages(sequences[0], contact) + write_messages(sequences[1], contact)
        send(*messages)

    capped = Message.objects.get(pk=messages[1].pk)
    assert capped.status == Message.Status.QUEUED
    assert capped.next_attempt_at == local(2026, 5, 11, 9)


def test_emails_sent_earlier_in_the_day_count_towards_the_cap(smtp_route: SmtpServer) -> None:
    organization = capped_organization(frequency_cap_daily=2)
    contact = ContactFactory(organization=organization, timezone="America/New_York")
    earlier = email_sequence(organization)
    sequences = [email_sequence(organization, emails=2) for _ in range(2)]

    with time_machine.travel(local(2026, 5, 4, 16), tick=False):
        sent_earlier(earlier, contact, local(2026, 5, 4, 0, 30))
        sent_earlier(earlier, ContactFactory(organization=organization), local(2026, 5, 4, 9))  # someone else's
        sent_earlier(earlier, contact, local(2026, 5, 3, 23, 59))  # yesterday, locally
        messages = write_messages(sequences[0], contact) + write_messages(sequences[1], contact)
        report = send(*messages)

    assert (report.sent, report.deferred) == (1, 1)
    assert [mail.recipients for mail in smtp_route.received] == [(contact.email,)]


def test_the_weekly_cap_defers_until_the_oldest_send_leaves_the_seven_days(smtp_route: SmtpServer, tick) -> None:
    organization = capped_organization(frequency_cap_daily=5, frequency_cap_weekly=3)
    contact = ContactFactory(organization=organization, timezone="America/New_York")
    earlier = email_sequence(organization)
    oldest = local(2026, 5, 1, 10, 17)
    for sent_at in (oldest, local(2026, 5, 3, 11), local(2026, 5, 5, 8)):
        sent_earlier(earlier, contact, sent_at)
    sequence = email_sequence(organization)

    with time_machine.travel(local(2026, 5, 6, 12), tick=False):
        [message] = write_messages(sequence, contact)
        assert send(message).deferred == 1
    message.refresh_from_db()
    assert (message.status, message.next_attempt_at) == (Message.Status.QUEUED, oldest + dt.timedelta(days=7))
    assert "weekly cap of 3 reached" in message.response

    with time_machine.travel(oldest + dt.timedelta(days=7, seconds=-60)):
        tick()
    assert smtp_route.received == []
    with time_machine.travel(oldest + dt.timedelta(days=7, minutes=1)):
        tick()
    assert [mail.recipients for mail in smtp_route.received] == [(contact.email,)]
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.SENT, 1)


def test_transactional_emails_are_exempt_from_the_cap_and_do_not_count_towards_it(smtp_route: SmtpServer) -> None:
    organization = capped_organization(frequency_cap_daily=1, frequency_cap_weekly=1)
    contact = ContactFactory(organization=organization)
    receipts = email_sequence(organization, emails=2, subject="Receipt {n}", is_transactional=True)
    news = [email_sequence(organization, emails=2, subject=f"News {number}") for number in (1, 2)]

    with time_machine.travel(local(2026, 5, 4, 12), tick=False):
        password_resets = email_sequence(organization, is_transactional=True)
        sent_earlier(password_resets, contact, local(2026, 5, 4, 8))  # this morning: does not count
        messages = write_messages(news[0], contact) + write_messages(receipts, contact)
        messages += write_messages(news[1], contact)
        report = send(*messages)

    assert (report.sent, report.deferred) == (2, 1)
    subjects = sorted(str(mail.parsed()["Subject"]) for mail in smtp_route.received)
    assert subjects == ["News 1", "Receipt 1"]


def test_caps_apply_to_each_contact_separately(smtp_route: SmtpServer) -> None:
    organization = capped_organization(frequency_cap_daily=1)
    contacts = [ContactFactory(organization=organization) for _ in range(3)]
    sequences = [email_sequence(organization, emails=2) for _ in range(2)]

    messages = write_messages(sequences[0], *contacts) + write_messages(sequences[1], *contacts)
    report = send(*messages)

    assert (report.sent, report.deferred) == (3, 3)
    assert sorted(mail.recipients[0] for mail in smtp_route.received) == sorted(c.email for c in contacts)


def test_without_caps_every_due_email_goes_out(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    contact = ContactFactory(organization=organization)
    sequences = [email_sequence(organization, emails=2) for _ in range(4)]

    messages = [message for sequence in sequences for message in write_messages(sequence, contact)]

    assert send(*messages).sent == 4


def test_an_email_another_worker_is_sending_to_the_contact_counts_and_the_check_is_repeated_soon(
    smtp_route: SmtpServer,
) -> None:
    organization = capped_organization(frequency_cap_daily=2)
    contact = ContactFactory(organization=organization)
    sequences = [email_sequence(organization, emails=2) for _ in range(3)]
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        elsewhere, *mine = [message for sequence in sequences for message in write_messages(sequence, contact)]
        # Claimed by another worker that has not recorded its outcome yet.
        Message.objects.filter(pk=elsewhere.pk).update(
            status=Message.Status.SENDING, lease_expires_at=now + dt.timedelta(minutes=10)
        )
        report = send(*mine)

    assert (report.sent, report.deferred) == (1, 1)
    waiting = Message.objects.get(pk=mine[1].pk)
    assert waiting.status == Message.Status.QUEUED
    assert waiting.next_attempt_at == now + dt.timedelta(seconds=settings.SEND_RETRY_BASE_SECONDS)
    assert "another batch is sending to this contact" in waiting.response


def test_the_policies_decide_a_batch_in_the_same_number_of_queries_whatever_its_size() -> None:
    def queries_to_decide(contact_count: int) -> int:
        organization = capped_organization(frequency_cap_daily=1, frequency_cap_weekly=3, sunset_days=30)
        contacts = [ContactFactory(organization=organization) for _ in range(contact_count)]
        earlier = email_sequence(organization)
        for contact in contacts:
            sent_earlier(earlier, contact, timezone.now() - dt.timedelta(days=3))
        sequences = [email_sequence(organization, emails=2) for _ in range(3)]
        messages = [message for sequence in sequences for message in write_messages(sequence, *contacts)]
        claimed = Message.objects.filter(pk__in=[message.pk for message in messages])
        claimed.update(status=Message.Status.SENDING)  # as the send task's claim leaves them
        rows = list(claimed.order_by("id").values("id", "organization_id", "contact_id", "enrollment_id"))
        with CaptureQueriesContext(connection) as queries:
            verdict = policies.sending_policies_apply(rows=rows, now=timezone.now())
        assert (len(verdict.sendable), verdict.deferred) == (contact_count, 2 * contact_count)
        return len(queries)

    assert queries_to_decide(2) == queries_to_decide(20) <= 5
