"""Refusals while sending are delivery reports like any other: classified by the same rules as
DSNs and webhooks, recorded as a BounceReport (source smtp_reply), and applied once."""

from __future__ import annotations

import pytest

from conftest import SmtpServer
from deliverability import receiver, verp
from deliverability.models import BounceReport
from deliverability.tests.bounce_mail import CORPUS
from delivery.models import Event
from delivery.tests.factories import email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def status_of(contact: Contact) -> str:
    return Contact.objects.values_list("status", flat=True).get(pk=contact.pk)


def test_an_unknown_user_refused_at_rcpt_is_a_hard_bounce_report(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    contact = ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, f"550 5.1.1 <{contact.email}>: Recipient address rejected: User unknown")
    [message] = write_messages(email_sequence(organization, emails=2), contact)

    assert send(message).bounced == 1

    report = BounceReport.objects.get(message=message)
    assert (report.source, report.classification, report.reply, report.status, report.reason) == (
        "smtp_reply",
        "hard",
        "550",
        "5.1.1",
        "userunknown",
    )
    assert report.recipient_hash == email_hash(contact.email)
    assert status_of(contact) == Contact.Status.BOUNCED
    assert Suppression.objects.get(organization=organization).reason == Suppression.Reason.BOUNCED
    assert Event.objects.filter(message=message, type=Event.Type.BOUNCE).count() == 1


def test_the_dsn_that_follows_a_refusal_is_recorded_but_bounces_the_message_once(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    contact = ContactFactory(organization=organization, email="kijitora@example.co.jp")
    smtp_route.reply_to_rcpt(contact.email, "550 5.1.1 User unknown")
    [message] = write_messages(email_sequence(organization, emails=2), contact)
    send(message)

    dsn = (CORPUS / "lhost-postfix-04.eml").read_bytes().replace(b"\n", b"\r\n")
    received = receiver.report_receive(raw=dsn, envelope_recipients=[verp.return_path(message.pk)])

    assert received.applied == 1
    assert list(BounceReport.objects.order_by("id").values_list("source", "classification")) == [
        ("smtp_reply", "hard"),
        ("inbound", "hard"),
    ]
    assert Event.objects.filter(message=message, type=Event.Type.BOUNCE).count() == 1


def test_a_refusal_without_an_enhanced_code_is_classified_by_its_text(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    contact = ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, "550 No such user here")
    [message] = write_messages(email_sequence(organization), contact)

    send(message)

    assert BounceReport.objects.get().classification == BounceReport.Classification.HARD
    assert status_of(contact) == Contact.Status.BOUNCED


def test_a_full_mailbox_while_sending_counts_as_a_soft_bounce_once_per_message(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory(soft_bounce_limit=2)
    contact = ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, "452 4.2.2 Mailbox full", "452 4.2.2 Mailbox full")
    [message] = write_messages(email_sequence(organization, emails=2), contact)

    assert send(message).retried == 1
    assert send(message).retried == 1  # the retry, refused again

    # Two refusals of one message: one soft bounce, under the limit of two.
    [report] = BounceReport.objects.all()
    assert (report.source, report.classification, report.status) == ("smtp_reply", "soft", "4.2.2")
    assert status_of(contact) == Contact.Status.ACTIVE
    assert Event.objects.filter(type=Event.Type.SOFT_BOUNCE).count() == 1


def test_a_full_mailbox_refused_permanently_is_a_soft_bounce_and_fails_only_the_message(
    smtp_route: SmtpServer,
) -> None:
    organization = OrganizationFactory(soft_bounce_limit=1)
    contact, other = ContactFactory(organization=organization), ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, "552 5.2.2 Mailbox full")
    smtp_route.reply_to_rcpt(other.email, "554 5.7.1 Relay access denied")
    messages = write_messages(email_sequence(organization, emails=2), contact, other)

    assert send(*messages).failed == 2

    # Counted (and with a limit of one, suppressed); the relay refusal says nothing about the address.
    [report] = BounceReport.objects.all()
    assert (report.contact_id, report.classification, report.status) == (contact.pk, "soft", "5.2.2")
    assert status_of(contact) == Contact.Status.BOUNCED
    assert status_of(other) == Contact.Status.ACTIVE


@pytest.mark.parametrize(
    "reply", ["451 4.7.1 Greylisted, try again later", "421 4.4.2 Connection timed out", "450 4.3.2 System busy"]
)
def test_temporary_failures_that_are_not_about_the_mailbox_count_for_nothing(
    reply: str, smtp_route: SmtpServer
) -> None:
    organization = OrganizationFactory(soft_bounce_limit=1)
    contact = ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, reply)
    [message] = write_messages(email_sequence(organization), contact)

    send(message)

    assert not BounceReport.objects.exists()
    assert status_of(contact) == Contact.Status.ACTIVE
