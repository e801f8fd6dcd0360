"""The tick's sweep: a queued message whose dispatch was lost is dispatched again once its grace
has passed, and a message whose worker died holding it is released when the lease expires."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from conftest import SmtpServer
from delivery import services
from delivery.models import Message
from delivery.tests.factories import email_sequence, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def grace() -> dt.timedelta:
    return dt.timedelta(seconds=settings.SEND_DISPATCH_GRACE_SECONDS)


@pytest.fixture
def lost() -> Message:
    """A queued message whose hand-off to a send task never happened."""
    organization = OrganizationFactory()
    [message] = write_messages(email_sequence(organization, emails=2), ContactFactory(organization=organization))
    return message


def test_a_lost_dispatch_is_sent_by_the_sweep_once_its_grace_has_passed(
    smtp_route: SmtpServer,
    lost: Message,
    tick,
) -> None:
    tick()
    assert smtp_route.received == [], "dispatched again within the grace"

    with time_machine.travel(lost.next_attempt_at + dt.timedelta(seconds=1)):
        tick()
        tick()

    assert [mail.recipients for mail in smtp_route.received] == [(lost.contact.email,)]
    lost.refresh_from_db()
    assert (lost.status, lost.attempts) == (Message.Status.SENT, 1)


def test_the_sweep_dispatches_a_message_again_only_after_another_grace(
    lost: Message, django_capture_on_commit_callbacks
) -> None:
    moment = lost.next_attempt_at + dt.timedelta(seconds=1)

    with time_machine.travel(moment, tick=False), django_capture_on_commit_callbacks() as dispatched:
        assert services.messages_sweep() == 1
        assert services.messages_sweep() == 0
    assert len(dispatched) == 1  # and, say, the broker loses it

    lost.refresh_from_db()
    assert lost.next_attempt_at == moment + grace()
    with time_machine.travel(moment + grace(), tick=False):
        assert services.messages_sweep() == 1


def test_a_message_whose_lease_expired_is_released_and_sent(smtp_route: SmtpServer, lost: Message, tick) -> None:
    now = timezone.now()
    Message.objects.filter(pk=lost.pk).update(
        status=Message.Status.SENDING, lease_expires_at=now + dt.timedelta(seconds=settings.SEND_LEASE_SECONDS)
    )

    with time_machine.travel(now + grace() + dt.timedelta(seconds=1)):
        tick()
    assert smtp_route.received == [], "taken from a worker that may still hold it"
    assert Message.objects.get(pk=lost.pk).status == Message.Status.SENDING

    with time_machine.travel(now + dt.timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)):
        tick()

    assert [mail.recipients for mail in smtp_route.received] == [(lost.contact.email,)]
    lost.refresh_from_db()
    assert (lost.status, lost.lease_expires_at) == (Message.Status.SENT, None)
