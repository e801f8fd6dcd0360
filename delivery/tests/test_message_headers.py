"""Message-ID on our domain, List-Unsubscribe (https and mailto) with one-click POST, a
correlation id that verifies, and contact data that cannot add headers."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import pytest

from conftest import SmtpServer
from delivery import signing
from delivery.models import Message
from delivery.tests.factories import captured_mail, email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def domains(settings) -> None:
    settings.BASE_URL = "https://links.example.org"
    settings.MESSAGE_ID_DOMAIN = "mid.example.org"
    settings.UNSUBSCRIBE_MAILTO_DOMAIN = "unsub.example.org"


@pytest.fixture
def sent_message(domains: None, capture_route: None) -> Message:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, reply_to="replies@example.com")
    [message] = write_messages(sequence, ContactFactory(organization=organization))
    assert send(message).sent == 1
    message.refresh_from_db()
    return message


def test_message_id_is_on_the_message_id_domain_and_recorded(sent_message: Message) -> None:
    [mail] = captured_mail(sent_message.organization_id)

    assert re.fullmatch(rf"<{sent_message.pk}\.[A-Za-z0-9_-]+@mid\.example\.org>", mail["Message-ID"])
    assert sent_message.message_id_header == mail["Message-ID"]


def test_list_unsubscribe_offers_the_https_link_and_a_mailto_for_this_contact(sent_message: Message) -> None:
    [mail] = captured_mail(sent_message.organization_id)

    https, mailto = re.fullmatch(r"<([^>]+)>,\s*<([^>]+)>", mail["List-Unsubscribe"]).groups()
    token = re.fullmatch(r"https://links\.example\.org/u/([A-Za-z0-9_-]+)", https).group(1)
    assert signing.unsign("unsubscribe", token) == (sent_message.pk, sent_message.contact_id)
    assert mailto == f"mailto:unsubscribe+{token}@unsub.example.org?subject=unsubscribe"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_correlation_id_verifies_for_this_message_and_no_other_purpose(sent_message: Message) -> None:
    [mail] = captured_mail(sent_message.organization_id)
    correlation = mail["X-Emailseq-ID"]

    assert signing.unsign("correlation", correlation) == (sent_message.pk,)
    # Same layout as an open token, but a different key: it cannot be used as a pixel token.
    assert signing.unsign("open", correlation) is None


def test_date_reply_to_and_feedback_id_are_set(sent_message: Message) -> None:
    [mail] = captured_mail(sent_message.organization_id)

    assert abs((parsedate_to_datetime(mail["Date"]) - sent_message.sent_at).total_seconds()) < 60
    assert mail["Reply-To"] == "replies@example.com"
    assert mail["Feedback-ID"] == f"{sent_message.sequence_id}:{sent_message.organization_id}:emailseq"


def test_line_breaks_in_contact_fields_cannot_inject_headers_or_recipients(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, subject="Hi {{ contact.first_name }} from {{ contact.properties.company }}")
    contact = ContactFactory(
        organization=organization,
        first_name="Eve\r\nBcc: victim@example.net",
        properties={"company": "ACME\nX-Injected: yes\r\n\r\n<b>body</b>"},
    )
    [message] = write_messages(sequence, contact)

    assert send(message).sent == 1

    [received] = smtp_route.received
    assert received.recipients == (contact.email,)
    mail = received.parsed()
    assert mail["Bcc"] is None and mail["X-Injected"] is None
    assert mail.get_all("Subject") == ["Hi Eve Bcc: victim@example.net from ACME X-Injected: yes <b>body</b>"]
    assert not mail.defects


def test_line_breaks_in_the_sender_name_cannot_inject_headers(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, from_name="Acme\r\nBcc: victim@example.net")
    [message] = write_messages(sequence, ContactFactory(organization=organization))

    assert send(message).sent == 1

    mail = smtp_route.received[0].parsed()
    assert mail["Bcc"] is None and not mail.defects
    assert mail["From"].addresses[0].display_name == "Acme Bcc: victim@example.net"
