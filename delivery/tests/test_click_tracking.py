"""A genuine click is recorded and redirects to exactly the URL stored for the message."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.http import QueryDict
from django.test import Client, RequestFactory

from delivery import views
from delivery.composer import click_url
from delivery.models import Event, Message
from delivery.tests.factories import BROWSER

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_a_click_redirects_to_the_stored_url_of_that_link(delivered_message: Message) -> None:
    client = Client()

    for index, stored in enumerate(delivered_message.links):
        response = client.get(path_of(click_url(delivered_message.pk, index)), HTTP_USER_AGENT=BROWSER)
        assert response.status_code == 302
        assert response["Location"] == stored


def test_the_query_string_of_the_click_request_is_ignored(delivered_message: Message) -> None:
    path = path_of(click_url(delivered_message.pk, 1))

    response = Client().get(
        path, {"url": "https://evil.example.net/", "next": "https://evil.example.net/"}, HTTP_USER_AGENT=BROWSER
    )

    assert response.status_code == 302
    assert response["Location"] == "https://docs.example.com/start"


def test_the_redirect_is_not_cached_and_sends_no_referrer(delivered_message: Message) -> None:
    response = Client().get(path_of(click_url(delivered_message.pk, 0)), HTTP_USER_AGENT=BROWSER)

    assert "no-store" in response["Cache-Control"]
    assert response["Referrer-Policy"] == "no-referrer"


def test_a_click_is_recorded_with_the_url_ip_and_user_agent(delivered_message: Message) -> None:
    Client().get(path_of(click_url(delivered_message.pk, 0)), HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.23")

    [event] = Event.objects.filter(message=delivered_message)
    assert event.type == Event.Type.CLICK
    assert event.contact_id == delivered_message.contact_id
    assert event.organization_id == delivered_message.organization_id
    assert event.url == "https://shop.example.com/new?ref=mail&x=1"
    assert event.ip == "198.51.100.23"
    assert event.user_agent == BROWSER
    assert not event.is_machine and event.machine_reason == ""


def test_the_forwarded_address_counts_only_behind_a_proxy(settings, delivered_message: Message) -> None:
    path = path_of(click_url(delivered_message.pk, 0))
    client = Client()

    client.get(path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="17.58.1.2")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The client sent a forged entry of its own; our proxy appended the address it saw.
    client.get(path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="17.1.1.1, 203.0.113.8")

    direct, proxied = Event.objects.filter(message=delivered_message).order_by("id")
    assert direct.ip == "10.0.0.5" and not direct.is_machine
    assert proxied.ip == "203.0.113.8" and not proxied.is_machine


def test_a_malformed_forwarded_address_does_not_break_tracking(settings, delivered_message: Message) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    response = Client().get(
        path_of(click_url(delivered_message.pk, 0)),
        HTTP_USER_AGENT=BROWSER,
        REMOTE_ADDR="10.0.0.5",
        HTTP_X_FORWARDED_FOR="unknown",
    )

    assert response.status_code == 302
    [event] = Event.objects.filter(message=delivered_message)
    assert event.ip in (None, "10.0.0.5")


def test_a_link_that_carries_its_target_redirects_there_under_its_mac(delivered_message: Message) -> None:
    target = "https://shop.example.com/new?ref=mail&x=1"
    path = path_of(click_url(delivered_message.pk, 0, target))
    assert "?u=https%3A%2F%2Fshop.example.com%2Fnew%3Fref%3Dmail%26x%3D1" in path

    response = Client().get(path, HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 302 and response["Location"] == target
    [event] = Event.objects.filter(message=delivered_message)
    assert (event.type, event.url) == (Event.Type.CLICK, target)


@pytest.mark.parametrize("altered", ["https://evil.example.net/", "https://shop.example.com/new?ref=mail&x=2", ""])
def test_a_target_changed_in_transit_is_refused(delivered_message: Message, altered: str) -> None:
    token_path = path_of(click_url(delivered_message.pk, 0, "https://shop.example.com/new?ref=mail&x=1")).split("?")[0]

    response = Client().get(token_path, {"u": altered}, HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 404
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "query",
    [
        "u=" + quote("https://shop.example/a?b=1&c=d e#f", safe=""),
        "u=" + quote("https://exämple.test/€/ünï?q=ü", safe=""),
        "u=https%3A%2F%2Fa.example%2Fx+y",  # a plus is a space, as in any query
        "u=%ZZbroken%",  # a stray percent stays as it is
        "u=%FF%FE",  # not UTF-8: replacement characters
        "u=",
        "u=a&u=b",  # the last one wins
        "x=1&u=https%3A%2F%2Fa.example%2F",
        "u=https://a.example/é",  # raw non-ASCII (a client that did not encode it)
        "",
    ],
)
def test_the_link_target_is_read_as_django_reads_the_query(query: str) -> None:
    request = RequestFactory().get("/t/c/token", QUERY_STRING=query)

    assert views._link_target(request) == QueryDict(query).get("u")
