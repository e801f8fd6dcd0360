"""A message is sent once however often its id reaches a send task: the row is claimed by
one caller only, in turn or at the same moment."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from conftest import SmtpServer
from delivery import services
from delivery.models import Message
from delivery.services import SendReport
from delivery.tests.factories import email_sequence, queued_message, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory


def batch_of(count: int) -> list[Message]:
    organization = OrganizationFactory()
    contacts = [ContactFactory(organization=organization) for _ in range(count)]
    return write_messages(email_sequence(organization, emails=2), *contacts)


@pytest.mark.django_db
def test_sending_the_same_ids_twice_delivers_once(smtp_route: SmtpServer) -> None:
    messages = batch_of(3)

    first = send(*messages)
    second = send(*messages)
    repeated = services.messages_send(message_ids=[messages[0].pk] * 3)

    assert first.sent == 3
    assert second == SendReport() and repeated == SendReport()
    assert len(smtp_route.received) == 3
    assert set(Message.objects.values_list("status", "attempts")) == {(Message.Status.SENT, 1)}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_the_same_ids_at_once_deliver_each_message_once(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2)
    # Written directly: in a committing test the engine's own hand-off would send them at once.
    messages = [queued_message(sequence, ContactFactory(organization=organization)) for _ in range(30)]
    ids = [message.pk for message in messages]
    start = threading.Barrier(2)
    reports: list[SendReport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            reports.append(services.messages_send(message_ids=ids))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sum(report.sent for report in reports) == 30
    assert sorted(mail.recipients[0] for mail in smtp_route.received) == sorted(m.contact.email for m in messages)
    assert set(Message.objects.values_list("status", "attempts")) == {(Message.Status.SENT, 1)}
