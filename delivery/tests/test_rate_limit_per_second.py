"""A route limited to N messages per second never delivers more than N in any one-second
window, measured at the receiving server (the time each message's DATA ended there), whether one
batch sends or several send at once; and the limit costs only the waiting it needs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.utils import timezone

from conftest import SwitchableSmtpServer
from delivery import routing
from delivery.models import Message
from delivery.services import SendReport
from delivery.tests.factories import arrived_message_ids, many_messages, route_to, send
from organizations.tests.factories import OrganizationFactory

Servers = Callable[[], SwitchableSmtpServer]

PER_SECOND = 20
HOUR = dt.timedelta(hours=1)


def most_in_any_second(arrivals: list[float]) -> int:
    """The most arrivals in any window [t, t + 1 s): the busiest window starts at an arrival."""
    times = sorted(arrivals)
    most, end = 0, 0
    for start, first in enumerate(times):
        while end < len(times) and times[end] < first + 1.0:
            end += 1
        most = max(most, end - start)
    return most


def test_the_busiest_window_is_found_wherever_it_lies() -> None:
    assert most_in_any_second([0.0, 0.5, 0.99, 1.0, 1.98]) == 3
    assert most_in_any_second([0.0, 0.9, 1.1, 1.5, 1.89, 2.5]) == 4
    assert most_in_any_second([]) == 0


@pytest.mark.django_db
def test_one_batch_never_delivers_more_than_n_in_any_second(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    server = smtp_servers()
    route_to(server, organization, per_second=PER_SECOND)
    messages = many_messages(organization, 4 * PER_SECOND)

    assert send(*messages).sent == 4 * PER_SECOND

    arrivals = server.arrivals
    assert len(arrivals) == 4 * PER_SECOND
    assert most_in_any_second(arrivals) <= PER_SECOND
    # Limited, not stalled: N at once, then N a second.
    assert 2.9 <= max(arrivals) - min(arrivals) <= 6


@pytest.mark.django_db(transaction=True)
def test_batches_sending_at_once_share_the_limit(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    server = smtp_servers()
    # Resting while the messages are written: their dispatch (at once, outside a test
    # transaction) finds no route and leaves them queued for the two batches below.
    route = route_to(server, organization, per_second=PER_SECOND, throttled_until=timezone.now() + HOUR)
    batches = [many_messages(organization, 2 * PER_SECOND) for _ in range(2)]
    assert server.received == []
    routing.route_reset(route=route)

    def worker(batch: list[Message]) -> SendReport:
        try:
            return send(*batch)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(worker, batches))

    assert [report.sent for report in reports] == [2 * PER_SECOND] * 2
    assert sorted(arrived_message_ids(server).values()) == [1] * 4 * PER_SECOND
    assert most_in_any_second(server.arrivals) <= PER_SECOND
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}
