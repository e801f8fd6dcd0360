"""At send time the row decides: a message to a contact who is no longer mailable, or whose
address is suppressed, is cancelled instead of sent; the rest of the batch goes out."""

from __future__ import annotations

import pytest

from conftest import SmtpServer
from delivery.models import Message
from delivery.tests.factories import email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers import services as subscriber_services
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch() -> tuple[list[Contact], list[Message]]:
    organization = OrganizationFactory()
    contacts = [ContactFactory(organization=organization) for _ in range(4)]
    return contacts, write_messages(email_sequence(organization, emails=2), *contacts)


def test_messages_to_contacts_no_longer_mailable_are_cancelled(
    smtp_route: SmtpServer, batch: tuple[list[Contact], list[Message]]
) -> None:
    contacts, messages = batch
    # Changed after the messages were written, by a path that does not touch enrollments.
    Contact.objects.filter(pk=contacts[0].pk).update(status=Contact.Status.UNSUBSCRIBED)
    Contact.objects.filter(pk=contacts[1].pk).update(status=Contact.Status.COMPLAINED)

    report = send(*messages)

    assert (report.sent, report.cancelled) == (2, 2)
    by_contact = {message.contact_id: message for message in Message.objects.filter(pk__in=[m.pk for m in messages])}
    assert by_contact[contacts[0].pk].status == Message.Status.CANCELLED
    assert by_contact[contacts[0].pk].response == "contact is unsubscribed"
    assert by_contact[contacts[1].pk].status == Message.Status.CANCELLED
    assert by_contact[contacts[1].pk].response == "contact is complained"
    assert sorted(mail.recipients for mail in smtp_route.received) == sorted([(c.email,) for c in contacts[2:]])


def test_messages_to_suppressed_addresses_are_cancelled(
    smtp_route: SmtpServer, batch: tuple[list[Contact], list[Message]]
) -> None:
    contacts, messages = batch
    suppressed = contacts[2]
    subscriber_services.suppression_add(
        organization=suppressed.organization, email=suppressed.email.upper(), reason=Suppression.Reason.MANUAL
    )

    report = send(*messages)

    assert (report.sent, report.cancelled) == (3, 1)
    message = Message.objects.get(contact=suppressed)
    assert (message.status, message.response) == (Message.Status.CANCELLED, "address is suppressed")
    assert (suppressed.email,) not in [mail.recipients for mail in smtp_route.received]
    assert len(smtp_route.received) == 3


def test_a_suppression_in_another_organization_does_not_cancel(
    smtp_route: SmtpServer, batch: tuple[list[Contact], list[Message]]
) -> None:
    contacts, messages = batch
    subscriber_services.suppression_add(
        organization=OrganizationFactory(), email=contacts[0].email, reason=Suppression.Reason.MANUAL
    )

    assert send(*messages).sent == 4
    assert len(smtp_route.received) == 4
