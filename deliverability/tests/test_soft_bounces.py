"""Soft bounces (a full mailbox, 5.2.2) count, once per message; an address is suppressed as
bounced only once the organization's limit of soft bounces falls within its window. Delay
warnings, network trouble and temporary failures that do not name the mailbox are recorded only.
Hard bounces suppress at once."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from deliverability import receiver, reports, verp
from deliverability.models import BounceReport
from deliverability.tests.bounce_mail import CORPUS
from delivery.models import Event, Message
from delivery.tests.factories import MessageFactory, email_sequence, email_step, enrollment_for
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

MAILBOX_FULL = (CORPUS / "lhost-outlook-01.eml").read_bytes()  # Hotmail: 550 5.2.2 Mailbox Full
FAILED_RECIPIENT = b"kijitora@example.jp"


def sent_message(organization: Organization, contact: Contact) -> Message:
    sequence = email_sequence(organization, emails=2)
    return MessageFactory(
        enrollment=enrollment_for(sequence, contact), step=email_step(sequence), recipient=contact.email
    )


def mailbox_full_report(message: Message, number: int) -> bytes:
    """Hotmail's mailbox-full DSN, as it would come back for `message` (one of several DSNs)."""
    return (
        MAILBOX_FULL.replace(FAILED_RECIPIENT, message.contact.email.encode())
        .replace(b"<a0xtAEHLB0000d09e@BLU004-OMC3S13.hotmail.example.com>", f"<dsn-{number}@hotmail.example>".encode())
        .replace(b"\n", b"\r\n")
    )


def soft_bounce(message: Message, number: int) -> None:
    received = receiver.report_receive(
        raw=mailbox_full_report(message, number), envelope_recipients=[verp.return_path(message.pk)]
    )
    assert received.applied == 1


def is_suppressed(contact: Contact) -> bool:
    return Suppression.objects.filter(organization=contact.organization, email_hash=email_hash(contact.email)).exists()


def status_of(contact: Contact) -> str:
    return Contact.objects.values_list("status", flat=True).get(pk=contact.pk)


def test_soft_bounces_suppress_only_when_the_limit_is_reached() -> None:
    organization = OrganizationFactory(soft_bounce_limit=3, soft_bounce_window_days=14)
    contact = ContactFactory(organization=organization)
    messages = [sent_message(organization, contact) for _ in range(3)]

    soft_bounce(messages[0], 1)
    soft_bounce(messages[1], 2)
    assert status_of(contact) == Contact.Status.ACTIVE and not is_suppressed(contact)
    assert BounceReport.objects.filter(classification="soft", reason="mailboxfull").count() == 2
    assert Event.objects.filter(type=Event.Type.SOFT_BOUNCE).count() == 2

    soft_bounce(messages[2], 3)

    assert status_of(contact) == Contact.Status.BOUNCED
    suppression = Suppression.objects.get(organization=organization, email_hash=email_hash(contact.email))
    assert suppression.reason == Suppression.Reason.BOUNCED
    assert "3 soft bounces in 14 days" in suppression.detail


def test_soft_bounces_older_than_the_window_do_not_count() -> None:
    organization = OrganizationFactory(soft_bounce_limit=2, soft_bounce_window_days=7)
    contact = ContactFactory(organization=organization)
    messages = [sent_message(organization, contact) for _ in range(3)]
    with time_machine.travel(timezone.now() - dt.timedelta(days=8)):
        soft_bounce(messages[0], 1)

    soft_bounce(messages[1], 2)
    assert status_of(contact) == Contact.Status.ACTIVE

    soft_bounce(messages[2], 3)
    assert status_of(contact) == Contact.Status.BOUNCED


def test_each_organization_has_its_own_limit_and_its_own_count() -> None:
    strict = OrganizationFactory(soft_bounce_limit=1)
    lenient = OrganizationFactory(soft_bounce_limit=5)
    in_strict = ContactFactory(organization=strict, email="full@example.net")
    in_lenient = ContactFactory(organization=lenient, email="full@example.net")

    soft_bounce(sent_message(lenient, in_lenient), 1)
    soft_bounce(sent_message(lenient, in_lenient), 2)
    assert status_of(in_strict) == status_of(in_lenient) == Contact.Status.ACTIVE

    soft_bounce(sent_message(strict, in_strict), 3)
    assert status_of(in_strict) == Contact.Status.BOUNCED
    assert status_of(in_lenient) == Contact.Status.ACTIVE


def test_the_same_soft_bounce_reported_twice_counts_once() -> None:
    organization = OrganizationFactory(soft_bounce_limit=2)
    contact = ContactFactory(organization=organization)
    message = sent_message(organization, contact)

    soft_bounce(message, 1)
    again = receiver.report_receive(
        raw=mailbox_full_report(message, 1), envelope_recipients=[verp.return_path(message.pk)]
    )

    assert (again.applied, again.duplicates) == (0, 1)
    assert status_of(contact) == Contact.Status.ACTIVE
    assert BounceReport.objects.count() == 1


def test_a_hard_bounce_suppresses_at_once_whatever_the_soft_limit() -> None:
    organization = OrganizationFactory(soft_bounce_limit=10)
    contact = ContactFactory(organization=organization)
    message = sent_message(organization, contact)

    applied = reports.bounce_report_apply(
        message=message,
        source=BounceReport.Source.INBOUND,
        classification=BounceReport.Classification.HARD,
        dedupe_key="test:hard",
        status="5.1.1",
        reply="550",
        reason="userunknown",
        diagnostic="550 5.1.1 user unknown",
    )

    assert applied.applied and applied.suppressed and applied.contact_changed
    assert status_of(contact) == Contact.Status.BOUNCED and is_suppressed(contact)


@pytest.mark.parametrize("classification", ["auto_reply", "not_bounce"])
def test_auto_replies_and_non_bounces_are_recorded_and_change_nothing(classification: str) -> None:
    organization = OrganizationFactory(soft_bounce_limit=1)
    contact = ContactFactory(organization=organization)
    message = sent_message(organization, contact)

    applied = reports.bounce_report_apply(
        message=message, source="inbound", classification=classification, dedupe_key=f"test:{classification}"
    )

    assert applied.applied and not applied.suppressed
    assert BounceReport.objects.get().classification == classification
    assert status_of(contact) == Contact.Status.ACTIVE and not is_suppressed(contact)
    assert not Event.objects.exists()


def test_soft_failures_that_are_about_the_sender_are_recorded_but_never_counted() -> None:
    organization = OrganizationFactory(soft_bounce_limit=1)
    contact = ContactFactory(organization=organization)

    for number, reason in enumerate(("blocked", "spamdetected", "securityerror")):
        reports.bounce_report_apply(
            message=sent_message(organization, contact),
            source=BounceReport.Source.INBOUND,
            classification=BounceReport.Classification.SOFT,
            dedupe_key=f"test:{number}",
            status="5.7.1",
            reply="554",
            reason=reason,
            diagnostic="554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
        )

    assert BounceReport.objects.filter(classification="soft").count() == 3
    assert status_of(contact) == Contact.Status.ACTIVE and not is_suppressed(contact)


DELAY_WARNING = """\
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: bounce@bounces.example.test
Subject: Delayed Mail (still being retried)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"
Message-Id: <warning-%(number)d@mx.example.org>

--B
Content-Type: text/plain

# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #

<%(email)s>: %(diagnostic)s

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; %(email)s
Action: delayed
Status: %(status)s
Diagnostic-Code: X-Postfix; %(diagnostic)s
Will-Retry-Until: Mon,  6 Jan 2025 00:00:00 +0000

--B--
"""


@pytest.mark.parametrize(
    ("status", "diagnostic"),
    [
        ("4.4.1", "connect to example.net[192.0.2.1]:25: Connection timed out"),
        ("4.2.2", "host example.net said: 452 4.2.2 Mailbox full"),
    ],
)
def test_delay_warnings_are_recorded_but_never_counted(status: str, diagnostic: str) -> None:
    organization = OrganizationFactory(soft_bounce_limit=1)
    contact = ContactFactory(organization=organization)
    message = sent_message(organization, contact)

    for number in range(3):  # the MTA warns again every few hours while it keeps trying
        fields = {"number": number, "email": contact.email, "status": status, "diagnostic": diagnostic}
        raw = (DELAY_WARNING % fields).encode()
        received = receiver.report_receive(raw=raw, envelope_recipients=[verp.return_path(message.pk)])
        assert received.applied == 1

    assert status_of(contact) == Contact.Status.ACTIVE and not is_suppressed(contact)
    assert {report.reason.split(": ")[0] for report in BounceReport.objects.all()} == {"delayed"}
    assert BounceReport.objects.filter(classification="soft").count() == 3


def test_soft_bounces_reported_again_for_one_message_count_once() -> None:
    organization = OrganizationFactory(soft_bounce_limit=2)
    contact = ContactFactory(organization=organization)
    first, second = sent_message(organization, contact), sent_message(organization, contact)

    for number in range(3):  # distinct reports (their own Message-IDs) about one message
        soft_bounce(first, number)
    assert status_of(contact) == Contact.Status.ACTIVE

    soft_bounce(second, 3)
    assert status_of(contact) == Contact.Status.BOUNCED
    assert "2 soft bounces" in Suppression.objects.get(organization=organization).detail


@pytest.mark.parametrize(
    ("status", "reply", "reason", "diagnostic"),
    [
        ("4.4.7", "", "expired", "Delivery time expired"),
        ("5.4.7", "", "expired", "Delivery time expired: the host never answered"),
        ("4.4.1", "451", "expired", "451 4.4.1 No answer from host"),
        ("4.1.1", "450", "userunknown", "450 4.1.1 Recipient address rejected: try again later"),
        ("", "452", "filtered", "452 Recipient refused for now"),
    ],
)
def test_network_trouble_and_temporary_failures_that_do_not_name_the_mailbox_never_count(
    status: str, reply: str, reason: str, diagnostic: str
) -> None:
    organization = OrganizationFactory(soft_bounce_limit=1)
    contact = ContactFactory(organization=organization)

    applied = reports.bounce_report_apply(
        message=sent_message(organization, contact),
        source=BounceReport.Source.INBOUND,
        classification=BounceReport.Classification.SOFT,
        dedupe_key="test:soft",
        status=status,
        reply=reply,
        reason=reason,
        diagnostic=diagnostic,
    )

    assert applied.applied and not applied.counted
    assert status_of(contact) == Contact.Status.ACTIVE and not is_suppressed(contact)


def test_a_permanent_failure_about_the_mailbox_counts() -> None:
    organization = OrganizationFactory(soft_bounce_limit=1)
    contact = ContactFactory(organization=organization)

    applied = reports.bounce_report_apply(
        message=sent_message(organization, contact),
        source=BounceReport.Source.INBOUND,
        classification=BounceReport.Classification.SOFT,
        dedupe_key="test:soft",
        status="5.2.1",
        reply="550",
        reason="filtered",
        diagnostic="550 5.2.1 The email account that you tried to reach is disabled",
    )

    assert applied.counted and applied.suppressed
    assert status_of(contact) == Contact.Status.BOUNCED
