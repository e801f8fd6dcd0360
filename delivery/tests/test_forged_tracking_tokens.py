"""Tracking links verify their signature: anything forged, altered or out of range is a 404,
never a redirect, and records nothing."""

from __future__ import annotations

import string

import pytest
from django.test import Client

from delivery import signing
from delivery.composer import click_url, open_pixel_url
from delivery.models import Event, Message
from delivery.tests.factories import BROWSER

pytestmark = pytest.mark.django_db

ALPHABET = string.ascii_letters + string.digits + "-_"


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gif")


def assert_not_found(response) -> None:
    assert response.status_code == 404
    assert not response.has_header("Location")


def click(token: str):
    return Client().get(f"/t/c/{token}", HTTP_USER_AGENT=BROWSER)


def pixel(token: str):
    return Client().get(f"/t/o/{token}.gif", HTTP_USER_AGENT=BROWSER)


@pytest.mark.parametrize(
    "token",
    [
        "x",
        "AAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not-a-token-at-all",
        "!!!!",
        "A" * 200,
        "AAAAAAAAAAE=",
    ],
)
def test_random_strings_get_404_on_both_tracking_urls(delivered_message: Message, token: str) -> None:
    assert_not_found(click(token))
    assert_not_found(pixel(token))
    assert not Event.objects.exists()


def test_changing_any_one_character_of_a_click_token_gets_404(delivered_message: Message) -> None:
    genuine = token_of(click_url(delivered_message.pk, 0))
    assert click(genuine).status_code == 302

    for position, character in enumerate(genuine):
        for replacement in (
            ALPHABET[(ALPHABET.index(character) + 1) % 64],
            ALPHABET[(ALPHABET.index(character) + 33) % 64],
        ):
            altered = genuine[:position] + replacement + genuine[position + 1 :]
            assert_not_found(click(altered))
    assert Event.objects.count() == 1


def test_changing_any_one_character_of_a_pixel_token_gets_404(delivered_message: Message) -> None:
    genuine = token_of(open_pixel_url(delivered_message.pk))

    for position, character in enumerate(genuine):
        altered = genuine[:position] + ALPHABET[(ALPHABET.index(character) + 1) % 64] + genuine[position + 1 :]
        assert_not_found(pixel(altered))
    assert not Event.objects.exists()


def test_tokens_of_another_purpose_get_404(delivered_message: Message) -> None:
    message_id = delivered_message.pk
    open_token = signing.sign("open", message_id)
    correlation = signing.sign("correlation", message_id)
    unsubscribe = signing.sign("unsubscribe", message_id, delivered_message.contact_id)

    assert_not_found(click(open_token))
    assert_not_found(click(unsubscribe))
    assert_not_found(click(correlation))
    assert_not_found(pixel(correlation))
    assert_not_found(pixel(signing.sign("click", message_id, 0)))
    assert not Event.objects.exists()


def test_a_link_index_beyond_the_stored_links_gets_404(delivered_message: Message) -> None:
    assert_not_found(click(signing.sign("click", delivered_message.pk, len(delivered_message.links))))
    assert_not_found(click(signing.sign("click", delivered_message.pk, 65535)))
    assert not Event.objects.exists()


def test_a_genuine_token_for_a_message_that_does_not_exist_gets_404(delivered_message: Message) -> None:
    missing = Message.objects.order_by("-pk").first().pk + 1000

    assert_not_found(click(signing.sign("click", missing, 0)))
    assert_not_found(pixel(signing.sign("open", missing)))
    assert not Event.objects.exists()


def test_a_token_signed_with_another_key_gets_404(settings, delivered_message: Message) -> None:
    settings.SECRET_KEY = "an attacker's guess at the key"
    forged_click = signing.sign("click", delivered_message.pk, 0)
    forged_open = signing.sign("open", delivered_message.pk)
    settings.SECRET_KEY = "the real key, " + "x" * 40

    assert_not_found(click(forged_click))
    assert_not_found(pixel(forged_open))
    assert click(signing.sign("click", delivered_message.pk, 0)).status_code == 302
