"""A sequence's analytics count distinct messages per email step and in total, as the
delivery.selectors docstring defines them: bounces at once or later, opens and clicks by people
and by machines apart, and enrollments by state and reason; in a fixed number of queries."""

from __future__ import annotations

import pytest
from django.utils import timezone

from api.tests.clients import key_client
from delivery.models import Event, Message
from delivery.selectors import sequence_analytics
from delivery.tests.factories import EventFactory, MessageFactory, email_sequence, email_step, enrollment_for
from organizations.models import ApiKey
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment, Sequence
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

OPEN, CLICK = Event.Type.OPEN, Event.Type.CLICK


def events(message: Message, *kinds: tuple[str, bool]) -> None:
    for kind, is_machine in kinds:
        EventFactory(message=message, type=kind, is_machine=is_machine)


def end(enrollment: Enrollment, status: str, reason: str = "") -> None:
    Enrollment.objects.filter(pk=enrollment.pk).update(status=status, exit_reason=reason, finished_at=timezone.now())


@pytest.fixture
def sequence() -> Sequence:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2)
    first, second = email_step(sequence, 1), email_step(sequence, 2)
    enrollments = [enrollment_for(sequence, ContactFactory(organization=organization)) for _ in range(6)]
    sent = Message.Status.SENT
    m1, m2, m3, m4, m5, m6 = (
        MessageFactory(enrollment=enrollment, step=first, status=status)
        for enrollment, status in zip(
            enrollments, [sent, sent, sent, Message.Status.BOUNCED, sent, Message.Status.FAILED], strict=True
        )
    )
    events(m1, (OPEN, False), (OPEN, False), (OPEN, True))
    events(m2, (OPEN, True), (CLICK, True))
    events(m3, (CLICK, False), (CLICK, True))
    events(m4, (Event.Type.BOUNCE, False))  # recorded with the bounce itself
    events(m5, (Event.Type.BOUNCE, False))  # a bounce report after the server accepted it
    MessageFactory(enrollment=enrollments[0], step=second, status=Message.Status.QUEUED, sent_at=None)
    MessageFactory(enrollment=enrollments[1], step=second, status=Message.Status.CANCELLED, sent_at=None)
    m9 = MessageFactory(enrollment=enrollments[2], step=second, status=sent)
    events(m9, (Event.Type.UNSUBSCRIBE, False), (Event.Type.COMPLAINT, False))
    # A message of a step deleted since: in the totals only.
    orphan = MessageFactory(enrollment=enrollments[3], step=None, status=sent)
    events(orphan, (OPEN, False))
    end(enrollments[1], Enrollment.Status.COMPLETED)
    end(enrollments[2], Enrollment.Status.EXITED, Enrollment.ExitReason.UNSUBSCRIBED)
    end(enrollments[3], Enrollment.Status.EXITED, Enrollment.ExitReason.BOUNCED)
    end(enrollments[4], Enrollment.Status.FAILED, Enrollment.ExitReason.SEND_FAILED)
    end(enrollments[5], Enrollment.Status.EXITED, Enrollment.ExitReason.EXIT_STEP)
    # Another sequence's mail counts nowhere here.
    other = email_sequence(sequence.organization, name="Other")
    noise = MessageFactory(enrollment=enrollment_for(other, ContactFactory(organization=sequence.organization)))
    events(noise, (OPEN, False))
    return sequence


def test_each_email_step_counts_distinct_messages_by_what_happened_to_them(sequence):
    response = key_client(sequence.organization, ApiKey.Scope.READ).get(
        f"/api/v1/email-sequences/{sequence.pk}/analytics/"
    )

    assert response.status_code == 200
    first, second = response.json()["steps"]
    assert (first["position"], second["position"]) == (1, 3)
    assert first["counts"] == {
        "reached": 6,
        "queued": 0,
        "sent": 5,
        "delivered": 3,
        "bounced": 2,
        "failed": 1,
        "cancelled": 0,
        "opened": 2,
        "machine_opens": 1,
        "clicked": 1,
        "machine_clicks": 1,
        "unsubscribed": 0,
        "complained": 0,
    }
    assert second["counts"] == {
        "reached": 3,
        "queued": 1,
        "sent": 1,
        "delivered": 1,
        "bounced": 0,
        "failed": 0,
        "cancelled": 1,
        "opened": 0,
        "machine_opens": 0,
        "clicked": 0,
        "machine_clicks": 0,
        "unsubscribed": 1,
        "complained": 1,
    }


def test_totals_add_up_the_steps_and_the_mail_of_deleted_steps(sequence):
    totals = key_client(sequence.organization).get(f"/api/v1/email-sequences/{sequence.pk}/analytics").json()["totals"]

    assert (totals["reached"], totals["sent"], totals["delivered"], totals["opened"]) == (10, 7, 5, 3)
    assert (totals["bounced"], totals["machine_opens"], totals["unsubscribed"]) == (2, 1, 1)


def test_enrollments_are_counted_by_state_and_reason(sequence):
    body = key_client(sequence.organization).get(f"/api/v1/email-sequences/{sequence.pk}/analytics").json()

    counts = body["enrollments"]
    assert (counts["enrolled"], counts["active"], counts["completed"], counts["exited"], counts["failed"]) == (
        6,
        1,
        1,
        3,
        1,
    )
    assert {reason: n for reason, n in counts["exited_by_reason"].items() if n} == {
        "unsubscribed": 1,
        "bounced": 1,
        "exit_step": 1,
    }
    assert {reason: n for reason, n in counts["failed_by_reason"].items() if n} == {"send_failed": 1}


def test_analytics_take_the_same_few_queries_whatever_the_volume(sequence, django_assert_num_queries):
    with django_assert_num_queries(4):
        sequence_analytics(sequence=sequence)


def test_a_sequence_without_mail_has_zero_counts():
    sequence = email_sequence(OrganizationFactory())

    analytics = sequence_analytics(sequence=sequence)

    assert analytics.totals.reached == 0 and analytics.steps[0].counts.opened == 0
    assert analytics.enrollments.enrolled == 0
