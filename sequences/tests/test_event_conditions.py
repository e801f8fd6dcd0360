"""Custom events in sequences: a condition step of type "event" sends contacts who did the
thing (since they enrolled, or in the last N days) down the yes branch, in a real engine run;
a goal of type "event" takes the contact out, whether the event arrives through the events API
(at once) or the engine finds it at the next step."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError

from api.tests.clients import key_client
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.conditions import validate_condition, validate_goal
from sequences.models import Enrollment, Sequence, Step
from sequences.tests.helpers import (
    captured_mail,
    delay_step,
    draft_sequence,
    email_step,
    subjects_by_recipient,
    tick,
    utc,
)
from subscribers.models import Contact, ContactEvent
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)
CHECKED = START + dt.timedelta(days=1, minutes=1)


def purchase_sequence(organization: Organization, condition: dict[str, Any]) -> Sequence:
    """ "Welcome", a day's delay, then the condition: yes -> "Thanks"; no -> "Reminder", exit."""
    sequence = draft_sequence(organization)
    email_step(sequence, "Welcome")
    delay_step(sequence, dt.timedelta(days=1))
    branch = services.step_create(sequence=sequence, kind=Step.Kind.CONDITION, condition=condition)
    reminder = email_step(sequence, "Reminder")
    services.step_create(sequence=sequence, kind=Step.Kind.EXIT)
    thanks = email_step(sequence, "Thanks")
    services.step_update(step=branch, yes_step=thanks, no_step=reminder)
    services.sequence_activate(sequence=sequence)
    return sequence


def did(contact: Contact, name: str, at: dt.datetime) -> None:
    ContactEvent.objects.create(organization=contact.organization, contact=contact, name=name, occurred_at=at)


def run(sequence: Sequence, contacts: list[Contact], capture: Any) -> dict[str, list[str]]:
    with time_machine.travel(START, tick=False):
        services.enrollments_create(sequence=sequence, contacts=contacts)
        tick(capture)
    with time_machine.travel(CHECKED, tick=False):
        tick(capture)
    return subjects_by_recipient(captured_mail(sequence.organization))


def test_an_event_since_enrollment_takes_the_yes_branch_in_a_real_run(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = purchase_sequence(organization, {"type": "event", "name": "purchased"})
    buyer, browser, earlier_buyer, future_buyer = ContactFactory.create_batch(4, organization=organization)
    did(buyer, "purchased", START + dt.timedelta(hours=2))
    did(browser, "viewed_pricing", START + dt.timedelta(hours=2))
    did(earlier_buyer, "purchased", START - dt.timedelta(days=3))
    did(future_buyer, "purchased", CHECKED + dt.timedelta(hours=1))

    mail = run(sequence, [buyer, browser, earlier_buyer, future_buyer], django_capture_on_commit_callbacks)

    assert mail == {
        buyer.email: ["Welcome", "Thanks"],
        browser.email: ["Welcome", "Reminder"],
        earlier_buyer.email: ["Welcome", "Reminder"],
        future_buyer.email: ["Welcome", "Reminder"],
    }
    assert Enrollment.objects.get(contact=buyer).status == Enrollment.Status.COMPLETED
    assert Enrollment.objects.get(contact=browser).exit_reason == Enrollment.ExitReason.EXIT_STEP


def test_within_days_looks_back_from_now_whether_or_not_before_enrollment(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = purchase_sequence(organization, {"type": "event", "name": "purchased", "within_days": 7})
    recent, old = ContactFactory.create_batch(2, organization=organization)
    did(recent, "purchased", START - dt.timedelta(days=5))
    did(old, "purchased", START - dt.timedelta(days=10))

    mail = run(sequence, [recent, old], django_capture_on_commit_callbacks)

    assert mail == {recent.email: ["Welcome", "Thanks"], old.email: ["Welcome", "Reminder"]}


def test_an_event_reported_through_the_api_decides_the_branch(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = purchase_sequence(organization, {"type": "event", "name": "purchased"})
    buyer, other = ContactFactory.create_batch(2, organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollments_create(sequence=sequence, contacts=[buyer, other])
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(START + dt.timedelta(hours=3), tick=False):
        response = key_client(organization).post(
            "/api/v1/events/", {"events": [{"email": buyer.email, "name": "purchased"}]}, format="json"
        )
        assert response.status_code == 201
    with time_machine.travel(CHECKED, tick=False):
        tick(django_capture_on_commit_callbacks)

    mail = subjects_by_recipient(captured_mail(organization))
    assert mail == {buyer.email: ["Welcome", "Thanks"], other.email: ["Welcome", "Reminder"]}


def two_email_sequence_with_goal(organization: Organization, goal: dict[str, Any]) -> Sequence:
    sequence = draft_sequence(organization, goal=goal)
    email_step(sequence, "Welcome")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Follow-up")
    services.sequence_activate(sequence=sequence)
    return sequence


def test_an_event_goal_found_by_the_engine_ends_the_enrollment_before_the_next_email(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence = two_email_sequence_with_goal(organization, {"type": "event", "name": "purchased"})
    buyer, early_buyer, browser = ContactFactory.create_batch(3, organization=organization)
    did(early_buyer, "purchased", START - dt.timedelta(hours=1))
    with time_machine.travel(START, tick=False):
        services.enrollments_create(sequence=sequence, contacts=[buyer, early_buyer, browser])
        tick(django_capture_on_commit_callbacks)
    # Stored past the events API (an import): only the engine can notice.
    did(buyer, "purchased", START + dt.timedelta(hours=1))
    did(browser, "purchase_abandoned", START + dt.timedelta(hours=1))

    with time_machine.travel(CHECKED, tick=False):
        tick(django_capture_on_commit_callbacks)

    assert subjects_by_recipient(captured_mail(organization)) == {
        buyer.email: ["Welcome"],
        early_buyer.email: ["Welcome", "Follow-up"],
        browser.email: ["Welcome", "Follow-up"],
    }
    assert Enrollment.objects.get(contact=buyer).exit_reason == Enrollment.ExitReason.GOAL_REACHED


def test_an_event_goal_reported_through_the_api_ends_the_enrollment_at_once(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = two_email_sequence_with_goal(organization, {"type": "event", "name": "purchased"})
    buyer = ContactFactory(organization=organization)
    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=buyer)
        tick(django_capture_on_commit_callbacks)

    with time_machine.travel(START + dt.timedelta(hours=1), tick=False):
        key_client(organization).post("/api/v1/events/", {"contact_id": buyer.pk, "name": "purchased"}, format="json")

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.GOAL_REACHED)
    assert enrollment.next_run_at is None


@pytest.mark.parametrize(
    "condition",
    [
        {"type": "event"},
        {"type": "event", "name": ""},
        {"type": "event", "name": " purchased"},
        {"type": "event", "name": "x" * 201},
        {"type": "event", "name": "purchased", "within_days": 0},
        {"type": "event", "name": "purchased", "within_days": "7"},
        {"type": "event", "name": "purchased", "within_days": True},
    ],
)
def test_a_malformed_event_condition_is_refused(condition: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        validate_condition(condition)


def test_an_event_goal_names_the_event_and_takes_no_window() -> None:
    validate_goal({"type": "event", "name": "purchased"})
    validate_condition({"type": "event", "name": "purchased", "within_days": 30})

    with pytest.raises(ValidationError, match="within_days"):
        validate_goal({"type": "event", "name": "purchased", "within_days": 7})
    with pytest.raises(ValidationError):
        validate_goal({"type": "event"})


def test_any_goal_check_of_a_contact_notices_an_event_goal_already_met() -> None:
    organization = OrganizationFactory()
    sequence = two_email_sequence_with_goal(organization, {"type": "event", "name": "purchased"})
    buyer, browser = ContactFactory.create_batch(2, organization=organization)
    with time_machine.travel(START, tick=False):
        enrollments = services.enrollments_create(sequence=sequence, contacts=[buyer, browser]).enrolled
    did(buyer, "purchased", START + dt.timedelta(hours=1))
    did(browser, "purchased", START - dt.timedelta(hours=1))

    with time_machine.travel(START + dt.timedelta(hours=2), tick=False):
        assert services.goals_check_for_contact(contact=buyer) == 1
        assert services.goals_check_for_contact(contact=browser) == 0

    exit_reasons = {e.contact_id: Enrollment.objects.get(pk=e.pk).exit_reason for e in enrollments}
    assert exit_reasons == {buyer.pk: Enrollment.ExitReason.GOAL_REACHED, browser.pk: ""}
