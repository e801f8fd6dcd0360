"""Every message ends with the organization's name, postal address and an unsubscribe link, in
both parts (CAN-SPAM, CASL)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from delivery.tests.factories import captured_mail, email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.links import preferences_url
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("capture_route")]


@pytest.fixture
def mail():
    organization = OrganizationFactory(
        name="Smith & Sons <Outfitters>", postal_address="12 Harbour Road\nUnit 4\n\nPortsmouth PO1 2AB"
    )
    sequence = email_sequence(organization)
    [message] = write_messages(sequence, ContactFactory(organization=organization))
    assert send(message).sent == 1
    [mail] = captured_mail(organization.pk)
    return mail


def preferences_link(mail) -> str:
    [contact] = Contact.objects.filter(email=mail["To"])
    return preferences_url(contact.pk)


def unsubscribe_link(mail) -> str:
    return re.match(r"<([^>]+)>", mail["List-Unsubscribe"]).group(1)


def test_html_footer_carries_the_escaped_name_the_postal_address_and_the_unsubscribe_link(mail) -> None:
    body = mail.get_body(preferencelist=("html",)).get_content()
    footer = body[body.index("Smith &amp; Sons") :]

    assert "Smith &amp; Sons &lt;Outfitters&gt;<br>12 Harbour Road<br>Unit 4<br>Portsmouth PO1 2AB<br>" in footer
    assert f'<a href="{unsubscribe_link(mail)}"' in footer
    assert "<Outfitters>" not in body
    # The footer goes inside the document, before </body>.
    assert body.rstrip().endswith("</body></html>")
    assert body.index("Smith &amp; Sons") < body.lower().rindex("</body>")


def test_text_footer_carries_the_name_the_postal_address_and_the_unsubscribe_and_preference_links(mail) -> None:
    text = mail.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")

    assert text.endswith(
        "-- \nSmith & Sons <Outfitters>\n12 Harbour Road\nUnit 4\n\nPortsmouth PO1 2AB\n"
        f"Unsubscribe: {unsubscribe_link(mail)}\nEmail preferences: {preferences_link(mail)}\n"
    )


def test_the_preference_link_of_the_footer_opens_the_contacts_preference_page(mail, client) -> None:
    body = mail.get_body(preferencelist=("html",)).get_content()

    assert f'<a href="{preferences_link(mail)}"' in body
    page = client.get(preferences_link(mail).removeprefix(settings.BASE_URL))
    assert page.status_code == 200 and mail["To"] in page.content.decode()
