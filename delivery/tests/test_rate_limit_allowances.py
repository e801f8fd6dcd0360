"""Per-hour and per-day allowances and concurrent connections of a route: what a route cannot
take now goes to the next route, or waits (no attempt counted) until its allowance renews."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone

from conftest import SwitchableSmtpServer
from delivery import ratelimit, routing
from delivery.models import Message
from delivery.tests.factories import arrived_message_ids, many_messages, route_to, send
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

Servers = Callable[[], SwitchableSmtpServer]


def next_utc(period: dt.timedelta) -> dt.datetime:
    now = timezone.now().timestamp()
    seconds = period.total_seconds()
    return dt.datetime.fromtimestamp((now // seconds + 1) * seconds, tz=dt.UTC)


@pytest.mark.parametrize(("limit", "period"), [("per_hour", dt.timedelta(hours=1)), ("per_day", dt.timedelta(days=1))])
def test_a_route_whose_allowance_is_used_up_holds_the_rest_until_it_renews(
    smtp_servers: Servers, limit: str, period: dt.timedelta
) -> None:
    organization = OrganizationFactory()
    server = smtp_servers()
    route_to(server, organization, **{limit: 2})
    renews = next_utc(period)

    report = send(*many_messages(organization, 5))

    assert (report.sent, report.deferred) == (2, 3)
    assert len(server.received) == 2
    waiting = Message.objects.filter(status=Message.Status.QUEUED)
    assert set(waiting.values_list("attempts", "next_attempt_at")) == {(0, renews)}


def test_a_route_whose_allowance_is_used_up_hands_the_rest_to_the_next(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    limited, fallback = smtp_servers(), smtp_servers()
    route_to(limited, organization, priority=1, per_hour=4)
    route_to(fallback, organization, priority=2)

    first, second = many_messages(organization, 3), many_messages(organization, 3)
    assert send(*first).sent == 3 and send(*second).sent == 3

    assert len(limited.received) == 4 and len(fallback.received) == 2
    assert sum((arrived_message_ids(limited) + arrived_message_ids(fallback)).values()) == 6


def test_connection_slots_are_limited_and_given_back(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    route = route_to(smtp_servers(), organization, max_connections=2)
    limits = routing.route_limits(route=route, now=timezone.now())

    first = ratelimit.connection_acquire(limits, lease=60)
    second = ratelimit.connection_acquire(limits, lease=60)
    assert first and second and ratelimit.connection_acquire(limits, lease=60) is None

    ratelimit.connection_release(limits, first)
    assert ratelimit.connection_acquire(limits, lease=60) is not None


def test_a_slot_whose_worker_died_frees_itself_when_its_lease_ends(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    route = route_to(smtp_servers(), organization, max_connections=1)
    limits = routing.route_limits(route=route, now=timezone.now())

    assert ratelimit.connection_acquire(limits, lease=0.2) is not None
    assert ratelimit.connection_acquire(limits, lease=60) is None
    deadline = timezone.now() + dt.timedelta(seconds=5)
    while ratelimit.connection_acquire(limits, lease=60) is None:
        assert timezone.now() < deadline, "the slot was never freed"


def test_a_batch_that_finds_every_connection_taken_goes_to_the_next_route(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    busy, fallback = smtp_servers(), smtp_servers()
    route = route_to(busy, organization, priority=1, max_connections=1)
    route_to(fallback, organization, priority=2)
    held = ratelimit.connection_acquire(routing.route_limits(route=route, now=timezone.now()), lease=60)
    assert held is not None

    assert send(*many_messages(organization, 3)).sent == 3

    assert busy.received == [] and len(fallback.received) == 3
