"""A server that refuses our sender (5xx to MAIL FROM) says nothing about the recipient: the
message is retried later, and the contact stays mailable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from conftest import free_port
from delivery.models import Event, Message
from delivery.tests.factories import email_sequence, send, write_messages
from emailseq.environment import EmailConfig
from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

SENDER_REFUSED = "550 5.7.1 Sender address rejected: not owned by user"


class RefusingSender:
    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        return SENDER_REFUSED


@pytest.fixture
def refusing_server(settings) -> Iterator[None]:
    port = free_port()
    controller = Controller(RefusingSender(), hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL = EmailConfig(kind="smtp", host="127.0.0.1", port=port, timeout=10)
    try:
        yield
    finally:
        controller.stop()


@pytest.mark.usefixtures("refusing_server")
def test_a_refused_sender_is_retried_and_bounces_no_one() -> None:
    organization = OrganizationFactory()
    contacts = [ContactFactory(organization=organization) for _ in range(2)]
    messages = write_messages(email_sequence(organization, emails=2), *contacts)

    report = send(*messages)

    assert (report.retried, report.bounced) == (2, 0)
    for message in Message.objects.filter(pk__in=[m.pk for m in messages]):
        assert (message.status, message.attempts) == (Message.Status.QUEUED, 1)
        assert message.response == f"MAIL FROM refused: {SENDER_REFUSED}"
    assert set(Contact.objects.values_list("status", flat=True)) == {Contact.Status.ACTIVE}
    assert not Suppression.objects.exists()
    assert not Event.objects.exists()
