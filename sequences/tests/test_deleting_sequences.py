"""A sequence, or a whole organization, can be deleted with its contacts' history; a single
step that contacts are waiting on can only go through the service that moves them along."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import RestrictedError

from delivery.models import Message
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence, Step
from sequences.tests.helpers import delay_step, draft_sequence, email_step
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def sequence_with_history() -> Sequence:
    sequence = draft_sequence(OrganizationFactory())
    email_step(sequence, "Hello")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Again")
    services.sequence_activate(sequence=sequence)
    services.enrollments_create(sequence=sequence, contacts=[ContactFactory(organization=sequence.organization)])
    engine.advance_due_enrollments()
    return sequence


def test_a_sequence_with_enrollments_and_messages_can_be_deleted() -> None:
    sequence = sequence_with_history()

    sequence.delete()

    assert not Enrollment.objects.exists() and not Message.objects.exists() and not Step.objects.exists()


def test_an_organization_can_be_deleted_with_everything_in_it() -> None:
    sequence = sequence_with_history()

    sequence.organization.delete()

    assert not Organization.objects.exists() and not Enrollment.objects.exists()


def test_a_step_someone_waits_on_cannot_be_deleted_around_the_service() -> None:
    sequence_with_history()
    waiting_on = Enrollment.objects.get().current_step

    with pytest.raises(RestrictedError):
        waiting_on.delete()
    services.step_delete(step=waiting_on)

    assert Enrollment.objects.get().current_step is None
