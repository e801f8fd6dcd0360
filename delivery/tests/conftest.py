"""Fixtures for the delivery tests; the shared ones (SMTP server, workers) are in /conftest.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone

from delivery.models import Message
from delivery.tests.factories import MessageFactory, email_sequence, email_step, enrollment_for
from emailseq.environment import EmailConfig
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from subscribers.tests.factories import ContactFactory


@pytest.fixture
def capture_route(settings) -> None:
    """Outgoing mail goes to the local mailbox (the embedded default), whatever EMAIL_URL says."""
    settings.EMAIL = EmailConfig(kind="capture", mailbox_dir=str(settings.MAILBOX_DIR))


@pytest.fixture
def delivered_message(db: None) -> Message:
    """A message that left an hour ago with two tracked links."""
    organization = OrganizationFactory()
    sequence = email_sequence(organization)
    enrollment = enrollment_for(sequence, ContactFactory(organization=organization))
    return MessageFactory(
        enrollment=enrollment,
        step=email_step(sequence),
        sent_at=timezone.now() - dt.timedelta(hours=1),
        links=["https://shop.example.com/new?ref=mail&x=1", "https://docs.example.com/start"],
    )


@pytest.fixture
def tick(django_capture_on_commit_callbacks) -> Callable[[], None]:
    """One scheduler pass, with the send tasks it dispatches run as they would after commit."""

    def run() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            engine.tick()

    return run
