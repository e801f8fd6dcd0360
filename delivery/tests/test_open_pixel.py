"""The open pixel is a tiny GIF that no cache keeps, and each fetch records an open."""

from __future__ import annotations

import pytest
from django.test import Client

from delivery.composer import open_pixel_url
from delivery.models import Event, Message
from delivery.tests.factories import BROWSER

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_the_pixel_is_a_gif_with_no_store_caching_headers(delivered_message: Message) -> None:
    response = Client().get(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response.content.startswith((b"GIF87a", b"GIF89a"))
    assert response.content.endswith(b";")
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "no-cache", "private"} <= cache_control
    assert response["Pragma"] == "no-cache"
    assert response["Expires"] == "0"


def test_each_fetch_records_an_open_with_ip_and_user_agent(delivered_message: Message) -> None:
    client = Client()
    path = path_of(open_pixel_url(delivered_message.pk))

    client.get(path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.40")
    client.get(path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.41")

    events = list(Event.objects.filter(message=delivered_message).order_by("id"))
    assert [event.type for event in events] == [Event.Type.OPEN, Event.Type.OPEN]
    assert [event.ip for event in events] == ["198.51.100.40", "198.51.100.41"]
    assert all(event.user_agent == BROWSER and event.contact_id == delivered_message.contact_id for event in events)
    assert all(not event.is_machine for event in events)


def test_the_pixel_answers_only_get_and_head(delivered_message: Message) -> None:
    response = Client().post(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 405
    assert not Event.objects.exists()
