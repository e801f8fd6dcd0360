"""Pausing a sequence holds its queued messages, even those already handed to a send task;
resuming sends each of them once."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.db import connections
from django.utils import timezone

from conftest import SmtpServer, free_port
from delivery.models import Message
from delivery.tests.factories import email_sequence, queued_message, send, write_messages
from emailseq.environment import EmailConfig
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences import services as sequence_services
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_pausing_holds_queued_messages_and_resuming_sends_each_once(smtp_route: SmtpServer, tick) -> None:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2)
    contacts = [ContactFactory(organization=organization) for _ in range(3)]
    messages = write_messages(sequence, *contacts)

    sequence_services.sequence_pause(sequence=sequence)
    # The send task that was dispatched before the pause runs now.
    report = send(*messages)

    assert (report.held, report.sent) == (3, 0)
    held = Message.objects.filter(pk__in=[message.pk for message in messages])
    assert set(held.values_list("status", "next_attempt_at", "lease_expires_at", "attempts")) == {
        (Message.Status.QUEUED, None, None, 0)
    }
    with time_machine.travel(timezone.now() + dt.timedelta(hours=6)):
        tick()
    assert smtp_route.received == []

    sequence_services.sequence_activate(sequence=sequence)
    tick()

    assert sorted(mail.recipients for mail in smtp_route.received) == sorted((c.email,) for c in contacts)
    assert set(held.values_list("status", "attempts")) == {(Message.Status.SENT, 1)}
    # Later passes, and the stale task running again, send nothing more.
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=30)):
        tick()
        assert send(*messages).sent == 0
    assert len(smtp_route.received) == 3


class GatedSmtpServer:
    """Accepts everything, but holds each DATA until the test opens the gate."""

    def __init__(self) -> None:
        self.data_started = threading.Event()
        self.gate = threading.Event()
        self.recipients: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.data_started.set()
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
        self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def gated_server(settings) -> Iterator[GatedSmtpServer]:
    handler, port = GatedSmtpServer(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL = EmailConfig(kind="smtp", host="127.0.0.1", port=port, timeout=30)
    try:
        yield handler
    finally:
        handler.gate.set()
        controller.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_message_held_by_a_batch_in_flight_is_sent_when_the_sequence_resumes_meanwhile(
    gated_server: GatedSmtpServer,
) -> None:
    organization = OrganizationFactory()
    running, paused = email_sequence(organization, emails=2), email_sequence(organization, emails=2)
    other, contact = ContactFactory(organization=organization), ContactFactory(organization=organization)
    in_batch = [queued_message(running, other), queued_message(paused, contact)]
    sequence_services.sequence_pause(sequence=paused)

    # A send task takes both; while it is still talking to the server, the sequence resumes.
    worker = threading.Thread(target=send_and_close, args=in_batch)
    worker.start()
    assert gated_server.data_started.wait(10)
    sequence_services.sequence_activate(sequence=paused)
    gated_server.gate.set()
    worker.join(30)

    held = Message.objects.get(pk=in_batch[1].pk)
    assert held.status == Message.Status.QUEUED
    with time_machine.travel(timezone.now() + dt.timedelta(hours=1)):
        engine.tick()
    held.refresh_from_db()
    assert held.status == Message.Status.SENT, f"stuck: queued with next_attempt_at={held.next_attempt_at}"
    assert sorted(gated_server.recipients) == sorted([other.email, contact.email])


def send_and_close(*messages: Message) -> None:
    try:
        send(*messages)
    finally:
        connections.close_all()
