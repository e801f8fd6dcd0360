"""A send batch stops taking new messages well before its task's time limit: what it did not
try goes back to the queue, with no attempt counted, instead of being resent after a kill."""

from __future__ import annotations

import pytest

from delivery.models import Message
from delivery.tests.factories import email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_messages_a_batch_has_no_time_left_for_go_back_untried(settings, smtp_route) -> None:
    organization = OrganizationFactory()
    messages = write_messages(
        email_sequence(organization), *[ContactFactory(organization=organization) for _ in range(3)]
    )
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0  # the deadline has passed before the first message

    report = send(*messages)

    assert (report.sent, report.deferred) == (0, 3)
    assert smtp_route.received == []
    assert set(Message.objects.values_list("status", "attempts", "response")) == {
        (Message.Status.QUEUED, 0, "not tried: the batch ran out of time")
    }
