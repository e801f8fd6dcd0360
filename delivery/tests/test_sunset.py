"""The sunset policy: a contact mailed for at least N days without a human open or click in the
last N days gets no more marketing email. Its message is cancelled and its enrollment ends with
reason "sunset". Machine opens and clicks do not count; a new contact gets its chance;
transactional email still goes out."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from conftest import SmtpServer
from delivery.composer import click_url, open_pixel_url
from delivery.models import Message
from delivery.tests.factories import BROWSER, email_sequence, send, write_messages
from delivery.tests.test_frequency_cap import sent_earlier
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

BARRACUDA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"


@pytest.fixture
def contact() -> Contact:
    """A contact of an organization with a 30-day sunset, mailed 40 days ago and not since."""
    organization = OrganizationFactory(sunset_days=30)
    contact = ContactFactory(organization=organization)
    sent_earlier(email_sequence(organization, subject="Welcome"), contact, timezone.now() - dt.timedelta(days=40))
    return contact


def welcome(contact: Contact) -> Message:
    """The one email the contact got, 40 days ago."""
    return Message.objects.get(contact=contact, status=Message.Status.SENT)


def new_marketing_email(contact: Contact, **sequence_fields: object) -> Message:
    """The first email of a new two-email sequence (its enrollment stays active after it)."""
    [message] = write_messages(email_sequence(contact.organization, emails=2, **sequence_fields), contact)
    return message


def fetch(path_url: str, user_agent: str, days_ago: int) -> None:
    with time_machine.travel(timezone.now() - dt.timedelta(days=days_ago)):
        response = Client().get("/" + path_url.split("/", 3)[3], HTTP_USER_AGENT=user_agent, REMOTE_ADDR="198.51.100.7")
    assert response.status_code in (200, 302)


def test_a_contact_without_human_engagement_for_the_sunset_period_gets_no_more_marketing_email(
    smtp_route: SmtpServer, contact: Contact
) -> None:
    message = new_marketing_email(contact)

    report = send(message)

    assert (report.sent, report.cancelled) == (0, 1)
    assert smtp_route.received == []
    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.response == "sunset: no human open or click in 30 days"
    enrollment = Enrollment.objects.get(pk=message.enrollment_id)
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.SUNSET)
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE, "sunset is a sending policy, not an unsubscribe"


def test_a_sunset_on_a_sequences_last_email_says_so_on_the_completed_enrollment(
    smtp_route: SmtpServer, contact: Contact
) -> None:
    [message] = write_messages(email_sequence(contact.organization), contact)
    assert Enrollment.objects.get(pk=message.enrollment_id).status == Enrollment.Status.COMPLETED

    assert send(message).cancelled == 1

    enrollment = Enrollment.objects.get(pk=message.enrollment_id)
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.SUNSET)


@pytest.mark.parametrize("engagement", ["click", "open"])
def test_a_human_open_or_click_within_the_period_keeps_the_mail_coming(
    smtp_route: SmtpServer, contact: Contact, engagement: str
) -> None:
    url = click_url(welcome(contact).pk, 0) if engagement == "click" else open_pixel_url(welcome(contact).pk)
    fetch(url, BROWSER, days_ago=29)

    assert send(new_marketing_email(contact)).sent == 1
    assert [mail.recipients for mail in smtp_route.received] == [(contact.email,)]


def test_machine_opens_and_clicks_do_not_count_as_engagement(smtp_route: SmtpServer, contact: Contact) -> None:
    fetch(click_url(welcome(contact).pk, 0), BARRACUDA, days_ago=2)
    fetch(open_pixel_url(welcome(contact).pk), "Mozilla/5.0", days_ago=1)  # Apple's privacy proxy
    assert contact.events.filter(is_machine=True).count() == 2

    assert send(new_marketing_email(contact)).cancelled == 1
    assert smtp_route.received == []


def test_engagement_older_than_the_period_does_not_count(smtp_route: SmtpServer, contact: Contact) -> None:
    fetch(click_url(welcome(contact).pk, 0), BROWSER, days_ago=31)

    assert send(new_marketing_email(contact)).cancelled == 1


def test_a_contact_mailed_for_less_than_the_period_is_not_sunset(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory(sunset_days=30)
    newcomer, never_mailed = ContactFactory(organization=organization), ContactFactory(organization=organization)
    sent_earlier(email_sequence(organization), newcomer, timezone.now() - dt.timedelta(days=29))

    messages = write_messages(email_sequence(organization, emails=2), newcomer, never_mailed)

    assert send(*messages).sent == 2


def test_only_marketing_email_makes_a_contact_old_enough_to_be_sunset(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory(sunset_days=30)
    customer = ContactFactory(organization=organization)
    receipts = email_sequence(organization, is_transactional=True)
    sent_earlier(receipts, customer, timezone.now() - dt.timedelta(days=300))

    assert send(new_marketing_email(customer)).sent == 1


def test_transactional_email_still_reaches_a_sunset_contact(smtp_route: SmtpServer, contact: Contact) -> None:
    receipt = new_marketing_email(contact, is_transactional=True)
    news = new_marketing_email(contact)

    report = send(receipt, news)

    assert (report.sent, report.cancelled) == (1, 1)
    assert Message.objects.get(pk=receipt.pk).status == Message.Status.SENT


def test_without_a_sunset_period_nobody_is_sunset(smtp_route: SmtpServer, contact: Contact) -> None:
    type(contact.organization).objects.filter(pk=contact.organization_id).update(sunset_days=None)

    assert send(new_marketing_email(contact)).sent == 1


def test_a_contact_whose_pause_ended_within_the_period_is_not_sunset(smtp_route: SmtpServer, contact: Contact) -> None:
    Contact.objects.filter(pk=contact.pk).update(paused_until=timezone.now() - dt.timedelta(days=3))

    assert send(new_marketing_email(contact)).sent == 1
