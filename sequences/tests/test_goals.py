"""Sequence goals: a contact who meets the goal (a tag, or a property comparison) leaves the
sequence, whether the engine notices at its next step or the change comes through the
subscribers services (then at once, before anything else is sent)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from delivery import services as delivery_services
from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment
from sequences.tests.helpers import captured_mail, delay_step, draft_sequence, email_step, tick, utc
from subscribers import services as subscriber_services
from subscribers.tests.factories import ContactFactory, TagFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)
PRO_PLAN = {"type": "property", "key": "plan", "operator": "equals", "value": "pro"}


def two_email_sequence(organization, goal):
    """Welcome now, a follow-up in a day, and a goal."""
    sequence = draft_sequence(organization, goal=goal)
    email_step(sequence, "Welcome")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Follow-up")
    services.sequence_activate(sequence=sequence)
    return sequence


def assert_goal_reached(enrollment: Enrollment) -> None:
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.EXITED
    assert enrollment.exit_reason == Enrollment.ExitReason.GOAL_REACHED
    assert enrollment.finished_at is not None
    assert enrollment.next_run_at is None


def test_a_tag_goal_met_between_steps_removes_the_contact_at_the_next_step(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    customer = TagFactory(organization=organization, name="customer")
    sequence = two_email_sequence(organization, {"type": "has_tag", "tag": customer.pk})
    contact = ContactFactory(organization=organization)
    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
    # Tagged without the services (a bulk import): only the engine can notice.
    contact.tags.add(customer)
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ACTIVE

    with time_machine.travel(START + dt.timedelta(days=1, minutes=1), tick=False):
        tick(django_capture_on_commit_callbacks)

    assert_goal_reached(enrollment)
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["Welcome"]


def test_a_property_goal_met_before_the_first_step_means_no_email_at_all(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = two_email_sequence(organization, PRO_PLAN)
    already_pro = ContactFactory(organization=organization, properties={"plan": "Pro"})
    free = ContactFactory(organization=organization, properties={"plan": "free"})
    services.enrollments_create(sequence=sequence, contacts=[already_pro, free])

    tick(django_capture_on_commit_callbacks)

    assert_goal_reached(Enrollment.objects.get(contact=already_pro))
    assert Enrollment.objects.get(contact=free).status == Enrollment.Status.ACTIVE
    assert [str(mail["To"]) for mail in captured_mail(organization)] == [free.email]


def test_adding_the_goal_tag_through_the_services_removes_the_contact_at_once() -> None:
    organization = OrganizationFactory()
    customer = TagFactory(organization=organization, name="customer")
    with_goal = two_email_sequence(organization, {"type": "has_tag", "tag": customer.pk})
    without_goal = two_email_sequence(organization, None)
    contact = ContactFactory(organization=organization)
    goal_enrollment = services.enrollment_create(sequence=with_goal, contact=contact)
    other_enrollment = services.enrollment_create(sequence=without_goal, contact=contact)

    subscriber_services.contact_tag_add(contact=contact, tag=customer)

    assert_goal_reached(goal_enrollment)
    other_enrollment.refresh_from_db()
    assert other_enrollment.status == Enrollment.Status.ACTIVE


def test_another_tag_leaves_the_contact_in_the_sequence(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    customer = TagFactory(organization=organization, name="customer")
    sequence = two_email_sequence(organization, {"type": "has_tag", "tag": customer.pk})
    contact = ContactFactory(organization=organization)
    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)

    subscriber_services.contact_tag_add(contact=contact, tag=TagFactory(organization=organization, name="lead"))
    with time_machine.travel(START + dt.timedelta(days=1, minutes=1), tick=False):
        tick(django_capture_on_commit_callbacks)

    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.COMPLETED
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["Welcome", "Follow-up"]


def test_a_property_goal_met_through_contact_update_removes_the_contact_at_once() -> None:
    organization = OrganizationFactory()
    sequence = two_email_sequence(organization, PRO_PLAN)
    contact = ContactFactory(organization=organization, properties={"plan": "free", "seats": 3})
    enrollment = services.enrollment_create(sequence=sequence, contact=contact)

    subscriber_services.contact_update(contact=contact, first_name="Renamed")
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ACTIVE

    subscriber_services.contact_update(contact=contact, properties={"plan": "pro", "seats": 3})
    assert_goal_reached(enrollment)


def test_reaching_the_goal_cancels_an_email_written_but_not_yet_sent(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = two_email_sequence(organization, PRO_PLAN)
    contact = ContactFactory(organization=organization)
    enrollment = services.enrollment_create(sequence=sequence, contact=contact)
    # The engine writes the message; its send task has not run yet.
    with django_capture_on_commit_callbacks(execute=False):
        engine.advance_due_enrollments()
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED

    subscriber_services.contact_update(contact=contact, properties={"plan": "pro"})
    # The send task arrives late: it finds nothing to send.
    report = delivery_services.messages_send(message_ids=[message.pk])

    assert_goal_reached(enrollment)
    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert report.sent == 0
    assert captured_mail(organization) == []


def test_a_goal_is_checked_for_every_contact_of_a_batch() -> None:
    organization = OrganizationFactory()
    customer = TagFactory(organization=organization, name="customer")
    sequence = two_email_sequence(organization, {"type": "has_tag", "tag": customer.pk})
    contacts = ContactFactory.create_batch(6, organization=organization)
    for contact in contacts[::2]:
        contact.tags.add(customer)
    services.enrollments_create(sequence=sequence, contacts=contacts, now=START)

    engine.advance_due_enrollments(now=START)

    for index, contact in enumerate(contacts):
        enrollment = Enrollment.objects.get(contact=contact)
        if index % 2 == 0:
            assert_goal_reached(enrollment)
        else:
            assert enrollment.status == Enrollment.Status.ACTIVE
    assert sorted(Message.objects.values_list("contact", flat=True)) == sorted(c.pk for c in contacts[1::2])
