"""A new route warms up: on day n of its schedule it takes at most the day's ceiling. What it
cannot take goes to the next route, or waits (no attempt counted) for the next warm-up day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine
from django.utils import timezone

from conftest import SwitchableSmtpServer
from delivery import routing
from delivery.models import Message
from delivery.tests.factories import arrived_message_ids, many_messages, route_to, send
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

Servers = Callable[[], SwitchableSmtpServer]


def test_a_warming_route_takes_the_days_ceiling_and_the_rest_waits_for_the_next_day(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    server = smtp_servers()
    started = timezone.now() - dt.timedelta(hours=1)
    route = route_to(server, organization, warmup_schedule=[3, 10], warmup_started_at=started)
    messages = many_messages(organization, 5)

    report = send(*messages)

    assert (report.sent, report.deferred) == (3, 2)
    waiting = Message.objects.filter(status=Message.Status.QUEUED)
    assert set(waiting.values_list("attempts", "next_attempt_at")) == {(0, started + dt.timedelta(days=1))}
    assert "warm-up ceiling is used up" in waiting.first().response

    with time_machine.travel(started + dt.timedelta(days=1, seconds=1)):
        assert send(*waiting).sent == 2
        more = many_messages(organization, 10)
        assert (send(*more).sent, Message.objects.filter(status=Message.Status.QUEUED).count()) == (8, 2)
    assert sum(arrived_message_ids(server).values()) == 13
    route.refresh_from_db()
    assert route.warmup_schedule == [3, 10]


def test_what_a_warming_route_cannot_take_goes_to_the_next_route(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    new, established = smtp_servers(), smtp_servers()
    route_to(new, organization, priority=1, warmup_schedule=[3], warmup_started_at=timezone.now())
    route_to(established, organization, priority=2)
    messages = many_messages(organization, 7)

    assert send(*messages).sent == 7

    assert len(new.received) == 3 and len(established.received) == 4
    assert arrived_message_ids(new) + arrived_message_ids(established) == {message.pk: 1 for message in messages}


def test_after_its_last_day_the_schedule_no_longer_limits_the_route(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    route = route_to(
        smtp_servers(),
        organization,
        warmup_schedule=[3, 10],
        warmup_started_at=timezone.now() - dt.timedelta(days=2, minutes=1),
    )

    assert routing.route_limits(route=route, now=timezone.now()) is None
