"""A permanent refusal (550 to RCPT) is a bounce: the contact becomes unmailable (status,
suppression, bounce event) and leaves every sequence of the organization at once."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from conftest import SmtpServer
from delivery.models import Event, Message
from delivery.tests.factories import email_sequence, enrollment_for, queued_message
from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NO_SUCH_USER = "550 5.1.1 <{}>: Recipient address rejected: User unknown"


def test_a_550_to_rcpt_bounces_the_contact_out_of_every_sequence(smtp_route: SmtpServer, tick) -> None:
    organization = OrganizationFactory()
    welcome = email_sequence(organization, emails=2, subject="Welcome {n}")
    contact, other = ContactFactory(organization=organization), ContactFactory(organization=organization)
    # Elsewhere: a message waiting for a retry, and an enrollment waiting for its time.
    retrying = queued_message(
        email_sequence(organization), contact, attempts=1, next_attempt_at=timezone.now() + dt.timedelta(hours=1)
    )
    waiting = enrollment_for(email_sequence(organization), contact, next_run_at=timezone.now() + dt.timedelta(days=3))
    smtp_route.reply_to_rcpt(contact.email, NO_SUCH_USER.format(contact.email))
    sequence_services.enrollments_create(sequence=welcome, contacts=[contact, other])

    tick()

    bounced = Message.objects.get(sequence=welcome, contact=contact)
    assert bounced.status == Message.Status.BOUNCED
    assert bounced.response.startswith("550 5.1.1")
    assert bounced.next_attempt_at is None and bounced.lease_expires_at is None
    contact.refresh_from_db()
    assert contact.status == Contact.Status.BOUNCED
    suppression = Suppression.objects.get(organization=organization, email_hash=email_hash(contact.email))
    assert suppression.reason == Suppression.Reason.BOUNCED
    [event] = Event.objects.filter(type=Event.Type.BOUNCE)
    assert (event.message_id, event.contact_id) == (bounced.pk, contact.pk)
    assert "550 5.1.1" in event.detail
    enrollments = Enrollment.objects.filter(contact=contact)
    assert enrollments.count() == 3
    assert set(enrollments.values_list("status", "exit_reason")) == {
        (Enrollment.Status.EXITED, Enrollment.ExitReason.BOUNCED)
    }
    retrying.refresh_from_db()
    assert retrying.status == Message.Status.CANCELLED
    waiting.refresh_from_db()
    assert waiting.next_run_at is None
    # The other recipient in the same batch is delivered, and stays enrolled.
    assert [mail.recipients for mail in smtp_route.received] == [(other.email,)]
    assert Enrollment.objects.get(contact=other).status == Enrollment.Status.ACTIVE

    with time_machine.travel(timezone.now() + dt.timedelta(days=3, minutes=1)):
        tick()
    assert [mail.recipients for mail in smtp_route.received] == [(other.email,), (other.email,)]
    assert not Message.objects.filter(contact=contact, status=Message.Status.SENT).exists()


def test_a_bounce_in_one_organization_leaves_the_same_address_mailable_in_another(
    smtp_route: SmtpServer,
    tick,
) -> None:
    ours, theirs = OrganizationFactory(), OrganizationFactory()
    bouncing = ContactFactory(organization=ours, email="shared@example.net")
    elsewhere = ContactFactory(organization=theirs, email="shared@example.net")
    smtp_route.reply_to_rcpt("shared@example.net", NO_SUCH_USER.format("shared@example.net"))
    sequence_services.enrollments_create(sequence=email_sequence(ours, emails=2), contacts=[bouncing])
    tick()
    assert Contact.objects.get(pk=bouncing.pk).status == Contact.Status.BOUNCED

    sequence_services.enrollments_create(sequence=email_sequence(theirs, emails=2), contacts=[elsewhere])
    tick()

    assert [mail.recipients for mail in smtp_route.received] == [("shared@example.net",)]
    assert Contact.objects.get(pk=elsewhere.pk).status == Contact.Status.ACTIVE
    assert not Suppression.objects.filter(organization=theirs).exists()
