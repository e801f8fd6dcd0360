"""Throttling replies slow a route down and never fail a message: the message waits (no attempt
counted) or goes out through the next route, the route rests and then sends at a reduced share
of its per-second limit, which it earns back as its sends go through."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine
from django.utils import timezone

from conftest import SwitchableSmtpServer
from delivery import routing
from delivery.models import DeliveryRoute, Message
from delivery.tests.factories import arrived_message_ids, many_messages, route_to, send
from delivery.transports import is_throttling_reply
from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact

pytestmark = pytest.mark.django_db

Servers = Callable[[], SwitchableSmtpServer]

GMAIL_RATE = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address."
YAHOO_VOLUME = (
    "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"
)
OUTLOOK_BUSY = "451 4.7.500 Server busy. Please try again later from [192.0.2.1]."
TOO_MANY = "450 4.7.1 Too many messages, slow down"


@pytest.mark.parametrize(
    ("code", "text", "throttling"),
    [
        (421, GMAIL_RATE[4:], True),
        (421, YAHOO_VOLUME[4:], True),
        (451, OUTLOOK_BUSY[4:], True),
        (450, TOO_MANY[4:], True),
        (452, "4.5.3 Too many recipients", True),
        (451, "4.7.1 Try again later", False),  # greylisting: one recipient, retried as usual
        (452, "4.2.2 Mailbox full: over quota", False),  # the recipient's mailbox: a soft bounce
        (450, "4.2.0 Mailbox temporarily unavailable", False),
        (554, "5.7.1 Rate limit policy violation", False),  # permanent refusals are not throttling
    ],
)
def test_which_replies_are_throttling(code: int, text: str, throttling: bool) -> None:
    assert is_throttling_reply(code, text) is throttling


def test_a_throttling_reply_to_a_recipient_defers_the_message_without_an_attempt_and_rests_the_route(
    settings, smtp_servers: Servers
) -> None:
    organization = OrganizationFactory()
    server = smtp_servers()
    route = route_to(server, organization, per_second=50)
    messages = many_messages(organization, 4)
    server.reply_to_rcpt(messages[1].contact.email, TOO_MANY)

    before = timezone.now()
    report = send(*messages)

    assert (report.sent, report.deferred, report.retried, report.failed, report.bounced) == (1, 3, 0, 0, 0)
    route.refresh_from_db()
    pause = dt.timedelta(seconds=settings.ROUTE_THROTTLE_PAUSE_SECONDS)
    assert before + pause <= route.throttled_until <= timezone.now() + pause
    assert route.rate_factor == 0.5
    assert (route.failures_in_a_row, route.circuit) == (1, DeliveryRoute.Circuit.CLOSED)
    waiting = Message.objects.exclude(pk=messages[0].pk)
    assert set(waiting.values_list("status", "attempts", "next_attempt_at")) == {
        (Message.Status.QUEUED, 0, route.throttled_until)
    }
    assert Message.objects.get(pk=messages[1].pk).response.startswith("not tried, the route is unavailable: 450")
    assert set(Contact.objects.values_list("status", flat=True)) == {Contact.Status.ACTIVE}

    with time_machine.travel(route.throttled_until + dt.timedelta(seconds=1)):
        assert send(*waiting).sent == 3
    route.refresh_from_db()
    # Earning the rate back: a tenth per batch that goes through.
    assert (route.rate_factor, route.failures_in_a_row) == (0.6, 0)
    assert sorted(arrived_message_ids(server).values()) == [1, 1, 1, 1]


def test_a_throttled_route_hands_its_messages_to_the_next_route(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    primary, fallback = smtp_servers(), smtp_servers()
    primary.refuse(GMAIL_RATE)
    primary_route = route_to(primary, organization, priority=1)
    route_to(fallback, organization, priority=2)
    messages = many_messages(organization, 5)

    assert send(*messages).sent == 5

    assert set(arrived_message_ids(fallback)) == {message.pk for message in messages}
    primary_route.refresh_from_db()
    assert primary_route.throttled_until > timezone.now()
    assert "unusual rate" in primary_route.last_error
    # While it rests, the next batch does not even knock.
    commands = primary.handler.mail_commands
    assert send(*many_messages(organization, 2)).sent == 2
    assert primary.handler.mail_commands == commands


def test_a_throttled_route_sends_at_a_share_of_its_per_second_limit(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    route = route_to(smtp_servers(), organization, per_second=10, rate_factor=0.25)

    limits = routing.route_limits(route=route, now=timezone.now())

    # 10 per 4 seconds: never more than the limit in a second, and a quarter of the rate.
    assert (limits.per_second, round(limits.window, 2)) == (10, 4.0)


def test_throttling_again_and_again_keeps_a_floor_of_the_rate(settings, smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    route = route_to(smtp_servers(), organization, per_second=10)

    for _ in range(10):
        routing.route_failed(route=route, error=TOO_MANY, throttled=True, now=timezone.now())

    route.refresh_from_db()
    assert route.rate_factor == routing.MIN_RATE_FACTOR
    assert route.circuit == DeliveryRoute.Circuit.OPEN  # a run of throttling replies opens it too
