"""Each message a route accepts is recorded (sent, with its route and the provider's id) before
the next one is handed over: a worker killed mid-batch leaves at most the one message in hand
accepted but unrecorded, the only one that can arrive twice."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import SwitchableSmtpServer
from delivery import signing
from delivery.models import Message
from delivery.tests.factories import many_messages, route_to, send
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

Servers = Callable[[], SwitchableSmtpServer]


def test_every_accepted_message_is_recorded_before_the_next_arrives(smtp_servers: Servers) -> None:
    organization = OrganizationFactory()
    server = smtp_servers()
    route = route_to(server, organization)
    messages = many_messages(organization, 30)

    assert send(*messages).sent == 30

    received, arrivals = server.received, server.arrivals
    recorded = {message.pk: message for message in Message.objects.filter(pk__in=[m.pk for m in messages])}
    order = [signing.unsign("correlation", mail.parsed()["X-Emailseq-ID"])[0] for mail in received]
    for index, message_id in enumerate(order[:-1]):
        assert recorded[message_id].sent_at.timestamp() <= arrivals[index + 1], (
            f"message {index} was recorded after message {index + 1} arrived"
        )
    for index, message_id in enumerate(order):
        message = recorded[message_id]
        assert (message.status, message.route_id) == (Message.Status.SENT, route.pk)
        assert message.provider_message_id == f"Q{index + 1:06d}"
