"""Failover between an organization's routes: when the primary refuses (421 to everything),
every message goes out through the fallback within the same batch, none lost and none twice
(counted by X-Emailseq-ID at the receiving servers); once the primary answers again and its
probe time has come, traffic returns to it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine
from django.utils import timezone

from conftest import SwitchableSmtpServer
from delivery.models import DeliveryRoute, Message
from delivery.tests.factories import arrived_message_ids, many_messages, route_to, send, send_in_batches
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

Servers = Callable[[], SwitchableSmtpServer]


def test_a_2000_message_send_all_arrives_at_the_fallback_once_and_returns_to_the_recovered_primary(
    settings, smtp_servers: Servers
) -> None:
    organization = OrganizationFactory()
    primary, fallback = smtp_servers(), smtp_servers()
    primary.refuse()
    primary_route = route_to(primary, organization, name="primary", priority=1)
    fallback_route = route_to(fallback, organization, name="fallback", priority=2)
    messages = many_messages(organization, 2000)

    report = send_in_batches(messages)

    assert (report.sent, report.retried, report.deferred, report.failed) == (2000, 0, 0, 0)
    arrived = arrived_message_ids(fallback)
    assert set(arrived) == {message.pk for message in messages}, "lost messages"
    assert max(arrived.values()) == 1, "messages that arrived twice"
    assert primary.received == []
    assert set(Message.objects.filter(pk__in=arrived).values_list("status", "route_id", "attempts")) == {
        (Message.Status.SENT, fallback_route.pk, 1)
    }
    # The primary was tried by the first batches only; then its circuit opened and it was skipped.
    primary_route.refresh_from_db()
    assert primary_route.circuit == DeliveryRoute.Circuit.OPEN
    assert primary_route.failures_in_a_row == settings.ROUTE_CIRCUIT_FAILURES
    assert primary.handler.mail_commands == settings.ROUTE_CIRCUIT_FAILURES
    assert "421" in primary_route.last_error

    primary.refuse(None)  # recovered, but nobody knows before the probe
    before_probe = many_messages(organization, 20)
    assert send(*before_probe).sent == 20
    assert set(arrived_message_ids(fallback)) >= {message.pk for message in before_probe}

    with time_machine.travel(primary_route.probe_at + dt.timedelta(seconds=1)):
        after_probe = many_messages(organization, 200)
        assert send_in_batches(after_probe).sent == 200

    assert set(arrived_message_ids(primary)) == {message.pk for message in after_probe}
    assert not set(arrived_message_ids(fallback)) & {message.pk for message in after_probe}
    primary_route.refresh_from_db()
    assert (primary_route.circuit, primary_route.failures_in_a_row) == (DeliveryRoute.Circuit.CLOSED, 0)
    total = arrived_message_ids(primary) + arrived_message_ids(fallback)
    assert sum(total.values()) == len(total) == 2220


def test_a_primary_that_fails_mid_batch_hands_the_rest_to_the_fallback_none_twice(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    primary, fallback = smtp_servers(), smtp_servers()
    primary.handler.refuse_after = 7
    route_to(primary, organization, priority=1)
    route_to(fallback, organization, priority=2)
    messages = many_messages(organization, 30)

    report = send(*messages)

    assert report.sent == 30
    at_primary, at_fallback = arrived_message_ids(primary), arrived_message_ids(fallback)
    assert len(at_primary) == 7 and len(at_fallback) == 23
    assert not set(at_primary) & set(at_fallback)
    assert (at_primary + at_fallback) == {message.pk: 1 for message in messages}
    # The message refused with 421 was not an attempt against its count.
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}


def test_routes_are_tried_in_priority_order_and_inactive_ones_never(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    inactive, second, first = smtp_servers(), smtp_servers(), smtp_servers()
    route_to(inactive, organization, priority=0, is_active=False)
    route_to(second, organization, priority=5)
    first_route = route_to(first, organization, priority=2)
    messages = many_messages(organization, 5)

    assert send(*messages).sent == 5

    assert len(first.received) == 5 and second.received == [] and inactive.received == []
    assert set(Message.objects.values_list("route_id", flat=True)) == {first_route.pk}


def test_each_organization_sends_through_its_own_routes_and_one_without_routes_through_email_url(
    smtp_servers: Servers, smtp_route
) -> None:
    with_routes, without_routes = OrganizationFactory(), OrganizationFactory()
    own = smtp_servers()
    route_to(own, with_routes)
    mine, theirs = many_messages(with_routes, 3), many_messages(without_routes, 4)

    assert send(*mine, *theirs).sent == 7

    assert set(arrived_message_ids(own)) == {message.pk for message in mine}
    assert set(arrived_message_ids(smtp_route)) == {message.pk for message in theirs}
    assert list(Message.objects.filter(organization=without_routes).values_list("route_id", flat=True)) == [None] * 4


def test_when_every_route_refuses_the_messages_wait_in_the_queue(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    primary, fallback = smtp_servers(), smtp_servers()
    primary.refuse()
    fallback.refuse("421 4.4.5 Too busy, try later")
    route_to(primary, organization, priority=1)
    route_to(fallback, organization, priority=2)
    messages = many_messages(organization, 4)

    report = send(*messages)

    assert (report.sent, report.failed, report.retried + report.deferred) == (0, 0, 4)
    assert primary.received == [] and fallback.received == []
    statuses = set(Message.objects.values_list("status", flat=True))
    assert statuses == {Message.Status.QUEUED}
    assert all(message.next_attempt_at > timezone.now() for message in Message.objects.all())
