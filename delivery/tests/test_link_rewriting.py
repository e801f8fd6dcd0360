"""Links go through the click tracker unless marked data-no-track or tracking is off; the same
URL twice shares one tracked index; the pixel is there only when opens are tracked."""

from __future__ import annotations

import html
import re
from urllib.parse import unquote

import pytest

from delivery import signing
from delivery.models import Message
from delivery.tests.factories import captured_mail, email_sequence, mail_to, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("capture_route")]

SHOP = "https://shop.example.com/new?ref=mail&x=1"
DOCS = "https://docs.example.com/start"
PRIVATE = "https://private.example.com/account"
HTML = f"""<html><body>
<p><a href="{html.escape(SHOP)}">New arrivals</a></p>
<p><a href="{DOCS}" class="button">Get started</a></p>
<p><a class="banner" href="{html.escape(SHOP)}">Shop again</a></p>
<p><a data-no-track href="{PRIVATE}">Your account</a></p>
<p><a href="mailto:help@example.com">Write to us</a></p>
<p><a href="{{{{ unsubscribe_url }}}}">Leave</a></p>
</body></html>"""
TEXT = f"New arrivals: {SHOP}\nYour account: {PRIVATE}\n"
CLICK = re.compile(r'/t/c/([A-Za-z0-9_-]+)\?u=([^\s"<>]+)')
PIXEL = re.compile(r'<img src="[^"]*/t/o/([A-Za-z0-9_-]+)\.gif"')


def send_one(text_body: str = TEXT, **sequence_fields: object) -> tuple[Message, str, str]:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, html_body=HTML, text_body=text_body, **sequence_fields)
    [message] = write_messages(sequence, ContactFactory(organization=organization))
    assert send(message).sent == 1
    message.refresh_from_db()
    [mail] = captured_mail(organization.pk)
    return (
        message,
        mail.get_body(preferencelist=("html",)).get_content(),
        mail.get_body(preferencelist=("plain",)).get_content(),
    )


def click_ids(href: str) -> tuple[int, ...] | None:
    """The (message, link index) of a tracked link, verified against the target it carries."""
    token, target = CLICK.search(href).groups()
    return signing.unsign("click-to", token, covering=unquote(target).encode())


def hrefs(body: str) -> list[str]:
    return [html.unescape(href) for href in re.findall(r'<a\b[^>]*href="([^"]*)"', body)]


def test_each_distinct_url_is_stored_once_and_shares_one_tracked_index() -> None:
    message, body, _text = send_one()

    assert message.links[:2] == [SHOP, DOCS] and message.links.count(SHOP) == 1
    shop_first, docs, shop_again = hrefs(body)[:3]
    assert shop_first == shop_again
    assert click_ids(shop_first) == (message.pk, 0)
    assert click_ids(docs) == (message.pk, 1)
    assert SHOP not in body and html.escape(SHOP) not in body and DOCS not in body


def test_links_marked_data_no_track_mailto_and_unsubscribe_are_left_alone() -> None:
    message, body, _text = send_one()
    links = hrefs(body)

    assert PRIVATE in links and "mailto:help@example.com" in links
    unsubscribe = [link for link in links if "/u/" in link]
    assert unsubscribe and all(not CLICK.search(link) for link in unsubscribe)
    assert signing.unsign("unsubscribe", unsubscribe[0].rsplit("/", 1)[1]) == (message.pk, message.contact_id)


@pytest.mark.parametrize("text_body", [TEXT, ""], ids=["written-text-part", "text-part-derived-from-html"])
def test_a_link_marked_data_no_track_is_not_tracked_in_the_text_part_either(text_body: str) -> None:
    message, _body, text = send_one(text_body)

    assert PRIVATE in text
    assert PRIVATE not in message.links


def test_urls_in_the_text_part_use_the_same_tracked_link_as_the_html() -> None:
    _message, body, text = send_one()

    tracked_shop = hrefs(body)[0]
    assert f"New arrivals: {tracked_shop}" in text
    assert SHOP not in text


def test_without_click_tracking_the_original_links_stay_and_none_are_stored() -> None:
    message, body, text = send_one(track_clicks=False)

    assert message.links == []
    assert hrefs(body)[:4] == [SHOP, DOCS, SHOP, PRIVATE]
    assert not CLICK.search(body) and not CLICK.search(text)
    assert f"New arrivals: {SHOP}" in text


def test_the_open_pixel_is_added_only_when_opens_are_tracked() -> None:
    tracked, tracked_body, _text = send_one()
    [token] = PIXEL.findall(tracked_body)
    assert signing.unsign("open", token) == (tracked.pk,)
    assert tracked_body.index("/t/o/") < tracked_body.lower().rindex("</body>")

    _untracked, untracked_body, _text = send_one(track_opens=False)
    assert "/t/o/" not in untracked_body and "<img" not in untracked_body


PERSONAL_HTML = """<html><body>
<p><a href="https://app.example.com/account/{{ contact.properties.account }}/plan">Your plan</a></p>
<p><a href="https://docs.example.com/start">Docs</a></p>
<p><a data-no-track href="https://private.example.com/{{ contact.properties.account }}">Private</a></p>
</body></html>"""


def test_a_personalized_link_is_tracked_with_each_contacts_own_url() -> None:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, html_body=PERSONAL_HTML)
    contacts = [ContactFactory(organization=organization, properties={"account": number}) for number in (7, 8)]
    messages = write_messages(sequence, *contacts)
    assert send(*messages).sent == 2

    for message, contact in zip(messages, contacts, strict=True):
        message.refresh_from_db()
        account = contact.properties["account"]
        assert message.links == ["https://docs.example.com/start", f"https://app.example.com/account/{account}/plan"]
        body = mail_to(captured_mail(organization.pk), contact.email).get_body(preferencelist=("html",)).get_content()
        plan, docs, private = hrefs(body)[:3]
        assert click_ids(plan) == (message.pk, 1)
        assert click_ids(docs) == (message.pk, 0)
        assert private == f"https://private.example.com/{account}"
        assert "\x1e" not in body and "\x1d" not in body and "\x1f" not in body
        text = mail_to(captured_mail(organization.pk), contact.email).get_body(preferencelist=("plain",)).get_content()
        assert f"https://private.example.com/{account}" in text
        assert "/t/c/" in text and f"https://app.example.com/account/{account}" not in text


def test_a_url_that_arrives_in_contact_data_never_becomes_a_tracked_redirect() -> None:
    organization = OrganizationFactory()
    sequence = email_sequence(
        organization,
        html_body=PERSONAL_HTML.replace("</body>", "<p>Hi {{ contact.first_name }}</p></body>"),
        text_body="Hi {{ contact.first_name }}, your plan: https://docs.example.com/start",
    )
    contact = ContactFactory(
        organization=organization, first_name="https://evil.example/login", properties={"account": 1}
    )
    [message] = write_messages(sequence, contact)
    assert send(message).sent == 1

    message.refresh_from_db()
    assert not any("evil.example" in url for url in message.links)
    text = mail_to(captured_mail(organization.pk), contact.email).get_body(preferencelist=("plain",)).get_content()
    assert "Hi https://evil.example/login" in text
