"""Opens and clicks that look automated (link scanners, Apple's privacy proxy, HEAD requests,
fetches right after delivery) are recorded but flagged as machine, with the reason."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

from delivery.composer import click_url, open_pixel_url
from delivery.machines import TOO_FAST
from delivery.models import Event, Message
from delivery.tests.factories import BROWSER

pytestmark = pytest.mark.django_db

OUTLOOK_SAFELINKS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (compatible; Microsoft SafeLinks)"
BARRACUDA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
HUMAN_IP = "198.51.100.77"


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


@pytest.fixture(params=["open", "click"])
def tracked_path(request, delivered_message: Message) -> str:
    if request.param == "open":
        return path_of(open_pixel_url(delivered_message.pk))
    return path_of(click_url(delivered_message.pk, 0))


def only_event() -> Event:
    [event] = Event.objects.all()
    return event


@pytest.mark.parametrize(
    ("user_agent", "ip", "reason"),
    [
        (BARRACUDA, HUMAN_IP, "scanner_user_agent"),
        (OUTLOOK_SAFELINKS, HUMAN_IP, "scanner_user_agent"),
        ("python-requests/2.32.3", HUMAN_IP, "scanner_user_agent"),
        ("Mozilla/5.0", HUMAN_IP, "apple_privacy_proxy"),
        (BROWSER, "17.58.101.4", "apple_privacy_proxy"),
        ("", HUMAN_IP, "no_user_agent"),
    ],
    ids=["barracuda", "safelinks", "script", "apple-proxy-user-agent", "apple-network", "no-user-agent"],
)
def test_automated_fetches_are_flagged_with_their_reason(
    tracked_path: str, user_agent: str, ip: str, reason: str
) -> None:
    response = Client().get(tracked_path, HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)

    assert response.status_code in (200, 302)
    event = only_event()
    assert event.is_machine is True
    assert event.machine_reason == reason
    assert event.user_agent == user_agent and event.ip == ip


def test_head_requests_are_flagged(tracked_path: str) -> None:
    response = Client().head(tracked_path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=HUMAN_IP)

    assert response.status_code in (200, 302)
    event = only_event()
    assert (event.is_machine, event.machine_reason) == (True, "head_request")


def test_a_person_reading_later_is_not_flagged(tracked_path: str) -> None:
    Client().get(tracked_path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=HUMAN_IP)

    event = only_event()
    assert (event.is_machine, event.machine_reason) == (False, "")


def test_fetches_within_seconds_of_sending_are_flagged_and_later_ones_are_not(
    tracked_path: str, delivered_message: Message
) -> None:
    sent_at = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
    Message.objects.filter(pk=delivered_message.pk).update(sent_at=sent_at)
    client = Client()

    with time_machine.travel(sent_at + TOO_FAST - dt.timedelta(seconds=2), tick=False):
        client.get(tracked_path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=HUMAN_IP)
    with time_machine.travel(sent_at + TOO_FAST + dt.timedelta(seconds=1), tick=False):
        client.get(tracked_path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=HUMAN_IP)

    fast, later = Event.objects.order_by("occurred_at")
    assert (fast.is_machine, fast.machine_reason) == (True, "too_fast_after_delivery")
    assert (later.is_machine, later.machine_reason) == (False, "")
