"""A temporary refusal (451 to RCPT) is retried with a growing backoff until it is delivered,
exactly once; after SEND_MAX_ATTEMPTS temporary failures the message is failed."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from conftest import SmtpServer
from delivery.models import Message
from delivery.tests.factories import email_sequence
from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

TRY_LATER = "451 4.7.1 Try again later"


def assert_backoff(message: Message, *, attempts: int, before: dt.datetime, after: dt.datetime) -> None:
    base = settings.SEND_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
    assert message.status == Message.Status.QUEUED
    assert message.attempts == attempts
    assert message.lease_expires_at is None
    assert before + dt.timedelta(seconds=0.9 * base) <= message.next_attempt_at
    assert message.next_attempt_at <= after + dt.timedelta(seconds=1.1 * base)


def test_a_451_to_rcpt_is_retried_with_growing_backoff_and_then_delivered_once(smtp_route: SmtpServer, tick) -> None:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2)
    contact, other = ContactFactory(organization=organization), ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, TRY_LATER, TRY_LATER)
    sequence_services.enrollments_create(sequence=sequence, contacts=[contact, other])

    before = timezone.now()
    tick()
    message = Message.objects.get(contact=contact)
    assert_backoff(message, attempts=1, before=before, after=timezone.now())
    assert message.response == TRY_LATER
    # The refusal of one recipient does not hold up the others in the batch.
    assert [mail.recipients for mail in smtp_route.received] == [(other.email,)]

    with time_machine.travel(message.next_attempt_at - dt.timedelta(seconds=5)):
        tick()
    assert Message.objects.get(pk=message.pk).attempts == 1, "retried before its time"

    with time_machine.travel(message.next_attempt_at + dt.timedelta(seconds=1)):
        before = timezone.now()
        tick()
        message.refresh_from_db()
        assert_backoff(message, attempts=2, before=before, after=timezone.now())

    with time_machine.travel(message.next_attempt_at + dt.timedelta(seconds=1)):
        tick()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts == 3
    assert message.response.startswith("250")

    with time_machine.travel(message.next_attempt_at + dt.timedelta(hours=1)):
        tick()
    to_contact = [mail for mail in smtp_route.received if mail.recipients == (contact.email,)]
    assert len(to_contact) == 1
    assert to_contact[0].parsed()["Message-ID"] == message.message_id_header
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE


def refuse_until_given_up(smtp_route: SmtpServer, tick) -> Message:
    """A contact whose server answers 451 to every attempt allowed; returns its message at the end."""
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2)
    contact = ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(contact.email, *[TRY_LATER] * settings.SEND_MAX_ATTEMPTS)
    sequence_services.enrollments_create(sequence=sequence, contacts=[contact])

    tick()
    message = Message.objects.get(contact=contact)
    for _retry in range(settings.SEND_MAX_ATTEMPTS - 1):
        assert message.status == Message.Status.QUEUED
        with time_machine.travel(message.next_attempt_at + dt.timedelta(seconds=1)):
            tick()
        message.refresh_from_db()
    return message


@pytest.fixture
def three_attempts(settings) -> None:
    settings.SEND_MAX_ATTEMPTS = 3


@pytest.mark.usefixtures("three_attempts")
def test_after_the_last_allowed_attempt_the_message_and_its_enrollment_fail(smtp_route: SmtpServer, tick) -> None:
    message = refuse_until_given_up(smtp_route, tick)

    assert message.status == Message.Status.FAILED
    assert message.next_attempt_at is None and message.lease_expires_at is None
    assert message.response == f"gave up: {TRY_LATER}"
    enrollment = message.enrollment
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.FAILED, Enrollment.ExitReason.SEND_FAILED)
    assert smtp_route.received == []

    # The server would accept it now, but a failed message is final.
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        tick()
    assert smtp_route.received == []
    # A temporary failure says nothing about the address: the contact stays mailable.
    assert Contact.objects.get(pk=message.contact_id).status == Contact.Status.ACTIVE


@pytest.mark.usefixtures("three_attempts")
def test_a_message_given_up_on_counts_every_attempt_it_made(smtp_route: SmtpServer, tick) -> None:
    message = refuse_until_given_up(smtp_route, tick)

    assert message.status == Message.Status.FAILED
    assert message.attempts == settings.SEND_MAX_ATTEMPTS
