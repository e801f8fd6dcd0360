"""A route's circuit breaker: it opens after a run of connection failures, the route is skipped
while it is open, one probe goes through when its time comes (one worker wins it), a failed
probe opens it again for twice as long, and a probe that gets through closes it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine
from django.utils import timezone

from conftest import SwitchableSmtpServer, free_port
from delivery import routing
from delivery.models import DeliveryRoute, Message
from delivery.tests.factories import DeliveryRouteFactory, arrived_message_ids, many_messages, route_to, send
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

Servers = Callable[[], SwitchableSmtpServer]


def refresh(route: DeliveryRoute) -> DeliveryRoute:
    route.refresh_from_db()
    return route


def test_the_circuit_opens_after_the_threshold_of_failures_and_the_route_is_then_skipped(
    settings, smtp_servers: Servers
) -> None:
    settings.ROUTE_CIRCUIT_FAILURES = 2
    organization = OrganizationFactory()
    primary, fallback = smtp_servers(), smtp_servers()
    primary.refuse()
    route = route_to(primary, organization, priority=1)
    route_to(fallback, organization, priority=2)

    send(*many_messages(organization, 2))
    assert (refresh(route).circuit, route.failures_in_a_row) == (DeliveryRoute.Circuit.CLOSED, 1)

    before = timezone.now()
    send(*many_messages(organization, 2))
    route = refresh(route)
    assert (route.circuit, route.failures_in_a_row) == (DeliveryRoute.Circuit.OPEN, 2)
    assert route.circuit_opened_at >= before
    expected_probe = route.circuit_opened_at + dt.timedelta(seconds=settings.ROUTE_CIRCUIT_COOLDOWN_SECONDS)
    assert route.probe_at == expected_probe

    send(*many_messages(organization, 3))
    assert primary.handler.mail_commands == 2, "an open route was tried"
    assert len(fallback.received) == 7


def test_a_connection_refused_counts_as_a_failure(settings) -> None:
    settings.ROUTE_CIRCUIT_FAILURES = 1
    organization = OrganizationFactory()
    route = DeliveryRouteFactory(organization=organization, url=f"smtp://127.0.0.1:{free_port()}?timeout=5")

    report = send(*many_messages(organization, 2))

    assert report.deferred == 2
    route = refresh(route)
    assert route.circuit == DeliveryRoute.Circuit.OPEN
    assert "cannot connect" in route.last_error
    # Deferred until the probe, with no attempt counted.
    assert set(Message.objects.values_list("attempts", "next_attempt_at")) == {(0, route.probe_at)}


def open_route(settings, server: SwitchableSmtpServer, organization) -> DeliveryRoute:
    settings.ROUTE_CIRCUIT_FAILURES = 1
    server.refuse()
    route = route_to(server, organization, priority=1)
    send(*many_messages(organization, 1))
    assert refresh(route).circuit == DeliveryRoute.Circuit.OPEN
    return route


def test_a_failed_probe_reopens_the_circuit_for_twice_the_cooldown(settings, smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    primary, fallback = smtp_servers(), smtp_servers()
    route = open_route(settings, primary, organization)
    route_to(fallback, organization, priority=2)
    commands = primary.handler.mail_commands

    with time_machine.travel(route.probe_at + dt.timedelta(seconds=1)):
        probed_at = timezone.now()
        send(*many_messages(organization, 5))

    assert primary.handler.mail_commands == commands + 1, "more than one probe message"
    assert len(fallback.received) == 5
    route = refresh(route)
    assert (route.circuit, route.failures_in_a_row) == (DeliveryRoute.Circuit.OPEN, 2)
    cooldown = route.probe_at - probed_at
    assert dt.timedelta(seconds=2 * settings.ROUTE_CIRCUIT_COOLDOWN_SECONDS) <= cooldown
    assert cooldown <= dt.timedelta(seconds=2 * settings.ROUTE_CIRCUIT_COOLDOWN_SECONDS + 5)


def test_the_cooldown_stops_growing_at_its_maximum(settings) -> None:
    settings.ROUTE_CIRCUIT_FAILURES = 3
    settings.ROUTE_CIRCUIT_COOLDOWN_SECONDS = 60
    settings.ROUTE_CIRCUIT_MAX_COOLDOWN_SECONDS = 600

    assert [routing.cooldown(failures).total_seconds() for failures in (1, 3, 4, 5, 6, 40)] == [
        60,
        60,
        120,
        240,
        480,
        600,
    ]


def test_a_probe_that_gets_through_closes_the_circuit_and_the_route_takes_the_rest(
    settings, smtp_servers: Servers
) -> None:
    organization = OrganizationFactory()
    primary = smtp_servers()
    route = open_route(settings, primary, organization)
    primary.refuse(None)

    with time_machine.travel(route.probe_at + dt.timedelta(seconds=1)):
        messages = many_messages(organization, 6)
        report = send(*messages)

    assert report.sent == 6
    assert set(arrived_message_ids(primary)) == {message.pk for message in messages}
    route = refresh(route)
    assert (route.circuit, route.failures_in_a_row, route.probe_at, route.circuit_opened_at) == (
        DeliveryRoute.Circuit.CLOSED,
        0,
        None,
        None,
    )


def test_only_one_worker_wins_the_probe(settings, smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    route = open_route(settings, smtp_servers(), organization)
    later = route.probe_at + dt.timedelta(seconds=1)
    first, second = DeliveryRoute.objects.get(pk=route.pk), DeliveryRoute.objects.get(pk=route.pk)

    assert routing.probe_claim(route=first, now=later) is True
    assert routing.probe_claim(route=second, now=later) is False
    assert refresh(route).circuit == DeliveryRoute.Circuit.HALF_OPEN
    # A probe whose worker died is taken again once its time has passed once more.
    assert routing.probe_claim(route=second, now=refresh(route).probe_at + dt.timedelta(seconds=1)) is True


def test_messages_of_a_route_whose_circuit_is_open_wait_for_the_probe_without_an_attempt(
    settings, smtp_servers: Servers
) -> None:
    organization = OrganizationFactory()
    route = open_route(settings, smtp_servers(), organization)

    report = send(*(messages := many_messages(organization, 3)))

    assert report.deferred == 3
    for message in Message.objects.filter(pk__in=[message.pk for message in messages]):
        assert (message.status, message.attempts) == (Message.Status.QUEUED, 0)
        assert message.next_attempt_at == route.probe_at
