"""A refusal is a bounce only when it is about the address. Relay, policy and content refusals
fail the message and leave the contact mailable; a route that refuses everything is treated as
down, and its messages wait instead of failing."""

from __future__ import annotations

import pytest

from conftest import SmtpServer
from delivery.models import Message
from delivery.services import REJECTIONS_BEFORE_ROUTE_DOWN
from delivery.tests.factories import email_sequence, send, write_messages
from delivery.transports import Outcome
from delivery.transports.smtp import classify_reply
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("code", "text", "after_data", "outcome"),
    [
        (550, "5.1.1 User unknown", False, Outcome.PERMANENT),
        (550, "No such user here", False, Outcome.PERMANENT),
        (552, "5.2.2 Mailbox full", False, Outcome.REJECTED),
        (550, "5.2.1 Mailbox disabled", False, Outcome.PERMANENT),
        (554, "5.7.1 Relay access denied", False, Outcome.REJECTED),
        (550, "5.7.26 Unauthenticated email is not accepted", True, Outcome.REJECTED),
        (552, "5.3.4 Message size exceeds fixed limit", True, Outcome.REJECTED),
        (554, "Message rejected as spam", True, Outcome.REJECTED),
        (550, "5.1.1 User unknown", True, Outcome.PERMANENT),
        (451, "4.7.1 Greylisted", False, Outcome.TRANSIENT),
        (250, "2.0.0 Ok", True, Outcome.ACCEPTED),
    ],
)
def test_replies_are_classified_by_what_they_say_about_the_address(code, text, after_data, outcome) -> None:
    assert classify_reply(code, text, after_data=after_data) is outcome


def test_a_relay_refusal_fails_the_message_and_leaves_the_contact_mailable(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    refused, accepted = ContactFactory(organization=organization), ContactFactory(organization=organization)
    smtp_route.reply_to_rcpt(refused.email, "554 5.7.1 Relay access denied")
    messages = write_messages(email_sequence(organization, emails=2), refused, accepted)

    report = send(*messages)

    assert (report.sent, report.failed, report.bounced) == (1, 1, 0)
    refused.refresh_from_db()
    assert refused.status == Contact.Status.ACTIVE
    assert not Suppression.objects.exists()
    assert Message.objects.get(contact=refused).status == Message.Status.FAILED
    assert Enrollment.objects.get(contact=refused).status == Enrollment.Status.ACTIVE


def test_a_route_that_refuses_everything_is_treated_as_down_and_nothing_is_failed(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    contacts = [ContactFactory(organization=organization) for _ in range(REJECTIONS_BEFORE_ROUTE_DOWN + 3)]
    for contact in contacts:
        smtp_route.reply_to_rcpt(contact.email, "554 5.7.1 Relay access denied")
    messages = write_messages(email_sequence(organization), *contacts)

    report = send(*messages)

    assert (report.retried, report.deferred, report.failed) == (REJECTIONS_BEFORE_ROUTE_DOWN, 3, 0)
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.QUEUED}
    assert set(Contact.objects.values_list("status", flat=True)) == {Contact.Status.ACTIVE}
