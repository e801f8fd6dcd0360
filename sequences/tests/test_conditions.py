"""Condition steps: opened / clicked (automated events never count; a human click also counts
as an open), has_tag and property comparisons, each sending the contact down the yes or the no
branch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError

from delivery import services as delivery_services
from delivery.models import Event, Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence, Step
from sequences.tests.helpers import captured_mail, delay_step, draft_sequence, email_step, tick, utc
from subscribers.tests.factories import ContactFactory, TagFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)


def add_branches(sequence: Sequence, condition: dict[str, Any]) -> Step:
    """condition -> yes: "Yes" email then the end; no: "No" email then an exit step."""
    branch = services.step_create(sequence=sequence, kind=Step.Kind.CONDITION, condition=condition)
    no_email = email_step(sequence, "No")
    services.step_create(sequence=sequence, kind=Step.Kind.EXIT)
    yes_email = email_step(sequence, "Yes")
    return services.step_update(step=branch, yes_step=yes_email, no_step=no_email)


def branch_taken(enrollment: Enrollment) -> str:
    enrollment.refresh_from_db()
    names = set(Message.objects.filter(enrollment=enrollment).values_list("step__name", flat=True))
    if "Yes" in names:
        assert "No" not in names
        assert enrollment.status == Enrollment.Status.COMPLETED
        return "yes"
    assert "No" in names
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.EXIT_STEP)
    return "no"


# Opened and clicked --------------------------------------------------------------------------


class EngagementSequence:
    """First email, a day's delay, then a condition on the recipient's engagement."""

    def __init__(self, condition_type: str, *, on_second_email: bool = False) -> None:
        self.organization = OrganizationFactory()
        self.sequence = draft_sequence(self.organization)
        self.first = email_step(self.sequence, "First")
        self.second = email_step(self.sequence, "Second") if on_second_email else None
        delay_step(self.sequence, dt.timedelta(days=1))
        watched = self.second if on_second_email else None
        add_branches(self.sequence, {"type": condition_type, "step": watched.pk if watched else None})
        services.sequence_activate(sequence=self.sequence)
        self.contact = ContactFactory(organization=self.organization)

    def send_first_emails(self, capture: Any) -> Enrollment:
        with time_machine.travel(START, tick=False):
            enrollment = services.enrollment_create(sequence=self.sequence, contact=self.contact)
            tick(capture)
        assert Message.objects.filter(enrollment=enrollment, status=Message.Status.SENT).exists()
        return enrollment

    def record(self, step: Step, event_type: str, *, is_machine: bool = False) -> None:
        message = Message.objects.get(step=step, contact=self.contact)
        delivery_services.event_record(
            message=message,
            contact=self.contact,
            type=event_type,
            occurred_at=START + dt.timedelta(hours=1),
            user_agent="Barracuda Sentinel" if is_machine else "Mozilla/5.0",
            is_machine=is_machine,
            machine_reason="scanner_user_agent" if is_machine else "",
        )

    def evaluate(self, capture: Any) -> None:
        with time_machine.travel(START + dt.timedelta(days=1, minutes=1), tick=False):
            tick(capture)


@pytest.mark.parametrize(
    ("condition", "events", "expected"),
    [
        ("opened", [(Event.Type.OPEN, False)], "yes"),
        ("opened", [], "no"),
        ("opened", [(Event.Type.OPEN, True)], "no"),
        ("opened", [(Event.Type.CLICK, False)], "yes"),
        ("opened", [(Event.Type.CLICK, True), (Event.Type.OPEN, True)], "no"),
        ("clicked", [(Event.Type.CLICK, False)], "yes"),
        ("clicked", [(Event.Type.OPEN, False)], "no"),
        ("clicked", [(Event.Type.CLICK, True)], "no"),
        ("clicked", [(Event.Type.CLICK, True), (Event.Type.CLICK, False)], "yes"),
        ("clicked", [(Event.Type.UNSUBSCRIBE, False)], "no"),
    ],
    ids=[
        "human-open-counts-as-opened",
        "no-open-is-not-opened",
        "machine-open-does-not-count",
        "human-click-counts-as-opened",
        "machine-click-and-open-do-not-count",
        "human-click-counts-as-clicked",
        "an-open-is-not-a-click",
        "machine-click-does-not-count",
        "one-human-click-among-machine-clicks-counts",
        "other-events-are-not-clicks",
    ],
)
def test_engagement_conditions_count_only_human_opens_and_clicks(
    django_capture_on_commit_callbacks, condition: str, events: list[tuple[str, bool]], expected: str
) -> None:
    flow = EngagementSequence(condition)
    enrollment = flow.send_first_emails(django_capture_on_commit_callbacks)
    for event_type, is_machine in events:
        flow.record(flow.first, event_type, is_machine=is_machine)

    flow.evaluate(django_capture_on_commit_callbacks)

    assert branch_taken(enrollment) == expected
    subjects = [str(mail["Subject"]) for mail in captured_mail(flow.organization)]
    assert subjects == ["First", "Yes" if expected == "yes" else "No"]


def test_a_condition_on_a_named_email_ignores_clicks_on_other_emails(django_capture_on_commit_callbacks) -> None:
    flow = EngagementSequence("clicked", on_second_email=True)
    enrollment = flow.send_first_emails(django_capture_on_commit_callbacks)
    flow.record(flow.first, Event.Type.CLICK)

    flow.evaluate(django_capture_on_commit_callbacks)

    assert branch_taken(enrollment) == "no"


def test_a_condition_on_a_named_email_counts_clicks_on_that_email(django_capture_on_commit_callbacks) -> None:
    flow = EngagementSequence("clicked", on_second_email=True)
    enrollment = flow.send_first_emails(django_capture_on_commit_callbacks)
    flow.record(flow.second, Event.Type.CLICK)

    flow.evaluate(django_capture_on_commit_callbacks)

    assert branch_taken(enrollment) == "yes"


def test_engagement_in_an_earlier_enrollment_does_not_count_for_a_new_one(django_capture_on_commit_callbacks) -> None:
    flow = EngagementSequence("clicked")
    Sequence.objects.filter(pk=flow.sequence.pk).update(reentry_policy=Sequence.ReentryPolicy.AFTER_EXIT)
    flow.sequence.refresh_from_db()
    first_time = flow.send_first_emails(django_capture_on_commit_callbacks)
    flow.record(flow.first, Event.Type.CLICK)
    flow.evaluate(django_capture_on_commit_callbacks)
    assert branch_taken(first_time) == "yes"

    with time_machine.travel(START + dt.timedelta(days=2), tick=False):
        second_time = services.enrollment_create(sequence=flow.sequence, contact=flow.contact)
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(START + dt.timedelta(days=3, minutes=1), tick=False):
        tick(django_capture_on_commit_callbacks)

    assert branch_taken(second_time) == "no"


def test_each_contact_in_a_batch_takes_their_own_branch(django_capture_on_commit_callbacks) -> None:
    flow = EngagementSequence("opened")
    others = ContactFactory.create_batch(4, organization=flow.organization)
    with time_machine.travel(START, tick=False):
        services.enrollments_create(sequence=flow.sequence, contacts=[flow.contact, *others])
        tick(django_capture_on_commit_callbacks)
    openers = {others[0], others[2]}
    for contact in openers:
        message = Message.objects.get(step=flow.first, contact=contact)
        delivery_services.event_record(message=message, contact=contact, type=Event.Type.OPEN)

    flow.evaluate(django_capture_on_commit_callbacks)

    for contact in [flow.contact, *others]:
        expected = "yes" if contact in openers else "no"
        assert branch_taken(Enrollment.objects.get(contact=contact)) == expected, contact.email


# Tags and properties -------------------------------------------------------------------------


def branching_on(organization, condition: dict[str, Any]) -> Sequence:
    sequence = draft_sequence(organization)
    add_branches(sequence, condition)
    services.sequence_activate(sequence=sequence)
    return sequence


def test_has_tag_sends_tagged_contacts_down_the_yes_branch() -> None:
    organization = OrganizationFactory()
    vip = TagFactory(organization=organization, name="vip")
    other_tag = TagFactory(organization=organization, name="newsletter")
    sequence = branching_on(organization, {"type": "has_tag", "tag": vip.pk})
    tagged = ContactFactory(organization=organization)
    tagged.tags.add(vip, other_tag)
    untagged = ContactFactory(organization=organization)
    untagged.tags.add(other_tag)
    services.enrollments_create(sequence=sequence, contacts=[tagged, untagged], now=START)

    engine.advance_due_enrollments(now=START)

    assert branch_taken(Enrollment.objects.get(contact=tagged)) == "yes"
    assert branch_taken(Enrollment.objects.get(contact=untagged)) == "no"


@pytest.mark.parametrize(
    ("condition", "properties", "expected"),
    [
        ({"operator": "equals", "value": "pro"}, {"plan": " Pro "}, "yes"),
        ({"operator": "equals", "value": "pro"}, {"plan": "free"}, "no"),
        ({"operator": "equals", "value": "pro"}, {}, "no"),
        ({"operator": "equals", "value": 10}, {"plan": "10.0"}, "yes"),
        ({"operator": "not_equals", "value": "pro"}, {"plan": "free"}, "yes"),
        ({"operator": "not_equals", "value": "pro"}, {"plan": "PRO"}, "no"),
        ({"operator": "contains", "value": "acme"}, {"plan": "Acme Corp"}, "yes"),
        ({"operator": "contains", "value": "beta"}, {"plan": ["alpha", "beta"]}, "yes"),
        ({"operator": "contains", "value": "gamma"}, {"plan": ["alpha", "beta"]}, "no"),
        ({"operator": "not_contains", "value": "acme"}, {"plan": "Initech"}, "yes"),
        ({"operator": "greater_than", "value": 100}, {"plan": "250"}, "yes"),
        ({"operator": "greater_than", "value": 100}, {"plan": 99.5}, "no"),
        ({"operator": "greater_than", "value": 100}, {"plan": "lots"}, "no"),
        ({"operator": "less_than", "value": "3"}, {"plan": 2}, "yes"),
        ({"operator": "less_than", "value": 3}, {}, "no"),
        ({"operator": "is_set"}, {"plan": "free"}, "yes"),
        ({"operator": "is_set"}, {"plan": ""}, "no"),
        ({"operator": "is_not_set"}, {"other": 1}, "yes"),
        ({"operator": "is_not_set"}, {"plan": 0}, "no"),
    ],
)
def test_property_comparisons_choose_the_branch(
    condition: dict[str, Any], properties: dict[str, Any], expected: str
) -> None:
    organization = OrganizationFactory()
    sequence = branching_on(organization, {"type": "property", "key": "plan", **condition})
    contact = ContactFactory(organization=organization, properties=properties)
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=START)

    engine.advance_due_enrollments(now=START)

    assert branch_taken(enrollment) == expected


def test_a_condition_without_branch_targets_continues_with_the_next_step_either_way() -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    services.step_create(
        sequence=sequence, kind=Step.Kind.CONDITION, condition={"type": "property", "key": "x", "operator": "is_set"}
    )
    email_step(sequence, "Everyone")
    services.sequence_activate(sequence=sequence)
    contacts = [
        ContactFactory(organization=organization, properties={"x": 1}),
        ContactFactory(organization=organization),
    ]
    services.enrollments_create(sequence=sequence, contacts=contacts, now=START)

    engine.advance_due_enrollments(now=START)

    assert sorted(Message.objects.values_list("contact", flat=True)) == sorted(contact.pk for contact in contacts)
    assert set(Enrollment.objects.values_list("status", flat=True)) == {Enrollment.Status.COMPLETED}


# Shape of a condition ------------------------------------------------------------------------


def test_a_branch_may_not_lead_back_to_an_earlier_step() -> None:
    sequence = draft_sequence(OrganizationFactory())
    first = email_step(sequence, "First")
    branch = services.step_create(
        sequence=sequence, kind=Step.Kind.CONDITION, condition={"type": "opened", "step": first.pk}
    )

    with pytest.raises(ValidationError) as error:
        services.step_update(step=branch, yes_step=first)

    assert "later step" in str(error.value)


def test_a_condition_may_only_name_an_earlier_email_of_its_own_sequence() -> None:
    organization = OrganizationFactory()
    other = draft_sequence(organization)
    elsewhere = email_step(other, "Elsewhere")
    sequence = draft_sequence(organization)
    wait = delay_step(sequence, dt.timedelta(days=1))

    for named in (elsewhere, wait):
        with pytest.raises(ValidationError, match="earlier email step of this sequence"):
            services.step_create(
                sequence=sequence, kind=Step.Kind.CONDITION, condition={"type": "opened", "step": named.pk}
            )


@pytest.mark.parametrize(
    "condition",
    [
        None,
        {"type": "replied"},
        {"type": "has_tag"},
        {"type": "property", "key": "plan", "operator": "resembles", "value": "pro"},
        {"type": "property", "key": "plan", "operator": "equals"},
        {"type": "clicked", "step": "first"},
    ],
)
def test_a_malformed_condition_is_rejected(condition: Any) -> None:
    sequence = draft_sequence(OrganizationFactory())

    with pytest.raises(ValidationError) as error:
        services.step_create(sequence=sequence, kind=Step.Kind.CONDITION, condition=condition)

    assert "condition" in error.value.message_dict
    assert not sequence.steps.exists()
