"""A message is multipart/alternative (text and HTML) that any mail parser reads back exactly,
with non-ASCII names, subjects and bodies encoded correctly."""

from __future__ import annotations

from email.headerregistry import Address

import pytest

from delivery.models import Message
from delivery.tests.factories import captured_files, captured_mail, email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("capture_route")]

LONG_LINE = "Très long paragraphe — " + "éàü€ " * 60 + "= fin."
HTML = f"""<html><body>
<p>Liebe {{{{ contact.first_name }}}} {{{{ contact.last_name }}}}, schöne Grüße aus Zürich ☕</p>
<p>{LONG_LINE}</p>
<p>.a line that starts with a dot</p>
<p>From the start of a line, 100% = sure</p>
</body></html>"""


@pytest.fixture
def sent_message() -> Message:
    organization = OrganizationFactory(name="Café Zürich GmbH", postal_address="Bahnhofstraße 1\n8001 Zürich")
    sequence = email_sequence(
        organization,
        subject="Grüße, {{ contact.first_name }} ✓ — Ihr Angebot für {{ contact.last_name }}",
        html_body=HTML,
        from_name="Zoë von Café Zürich",
        from_email="news@cafe.example",
    )
    contact = ContactFactory(organization=organization, first_name="Zoë", last_name="Ñúñez-Øster")
    [message] = write_messages(sequence, contact)
    assert send(message).sent == 1
    message.refresh_from_db()
    return message


def test_message_is_multipart_alternative_with_a_text_and_an_html_part(sent_message: Message) -> None:
    [mail] = captured_mail(sent_message.organization_id)

    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert not mail.defects and not any(part.defects for part in parts)


def test_non_ascii_subject_and_sender_name_round_trip(sent_message: Message) -> None:
    [mail] = captured_mail(sent_message.organization_id)

    assert mail["Subject"] == "Grüße, Zoë ✓ — Ihr Angebot für Ñúñez-Øster"
    assert sent_message.subject == mail["Subject"]
    [sender] = mail["From"].addresses
    assert sender == Address("Zoë von Café Zürich", addr_spec="news@cafe.example")
    assert mail["To"] == sent_message.contact.email == sent_message.recipient


def test_html_and_text_bodies_round_trip_through_the_email_package(sent_message: Message) -> None:
    [mail] = captured_mail(sent_message.organization_id)
    html = mail.get_body(preferencelist=("html",)).get_content()
    text = mail.get_body(preferencelist=("plain",)).get_content()

    assert "Liebe Zoë Ñúñez-Øster, schöne Grüße aus Zürich ☕" in html
    assert LONG_LINE in html
    assert "<p>.a line that starts with a dot</p>" in html
    assert "<p>From the start of a line, 100% = sure</p>" in html
    # The text part is derived from the HTML when the template has none.
    assert "Liebe Zoë Ñúñez-Øster, schöne Grüße aus Zürich ☕" in text
    assert LONG_LINE in text
    assert "<p>" not in text


def test_wire_format_is_seven_bit_with_crlf_lines_within_the_length_limit(sent_message: Message) -> None:
    [path] = captured_files(sent_message.organization_id)
    raw = path.read_bytes()

    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert not any(b"\n" in line or b"\r" in line for line in lines), "bare CR or LF in the message"
    assert max(len(line) for line in lines) <= 998
