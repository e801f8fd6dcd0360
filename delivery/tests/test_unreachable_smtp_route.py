"""When the SMTP server cannot be reached, nothing is lost: the messages stay queued for a
retry and are delivered, once each, when the server is back."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db.models import Max

from conftest import SmtpServer, free_port
from delivery.models import Message
from delivery.tests.factories import email_sequence
from emailseq.environment import EmailConfig
from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_connection_refused_leaves_the_messages_queued_and_they_go_once_the_server_is_back(
    settings,
    smtp_server: SmtpServer,
    tick,
) -> None:
    settings.EMAIL = EmailConfig(kind="smtp", host="127.0.0.1", port=free_port(), timeout=5)
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2)
    contacts = [ContactFactory(organization=organization) for _ in range(3)]
    sequence_services.enrollments_create(sequence=sequence, contacts=contacts)

    tick()

    messages = Message.objects.filter(sequence=sequence)
    assert messages.count() == 3
    for message in messages:
        assert message.status == Message.Status.QUEUED
        assert message.attempts == 0  # an outage costs a message none of its attempts
        assert message.lease_expires_at is None
        assert message.next_attempt_at > message.created_at
        assert "cannot connect" in message.response

    settings.EMAIL = EmailConfig(kind="smtp", host="127.0.0.1", port=smtp_server.port, timeout=10)
    latest = messages.aggregate(latest=Max("next_attempt_at"))["latest"]
    with time_machine.travel(latest + dt.timedelta(seconds=1)):
        tick()
        tick()

    assert sorted(mail.recipients for mail in smtp_server.received) == sorted((c.email,) for c in contacts)
    assert set(messages.values_list("status", "attempts")) == {(Message.Status.SENT, 1)}
