"""Editing an active sequence, as documented in sequences/services.py: content edits reach every
message not yet sent; an inserted step reaches contacts who have not passed its position;
deleting a step moves the contacts waiting on it to the step that followed; a changed delay
leaves contacts already waiting where they are."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Step
from sequences.tests.helpers import (
    captured_mail,
    delay_step,
    draft_sequence,
    email_step,
    subjects_by_recipient,
    template,
    tick,
    utc,
)
from subscribers.tests.factories import ContactFactory, TagFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)
DAY = dt.timedelta(days=1)


def at(moment: dt.datetime, capture) -> None:
    with time_machine.travel(moment, tick=False):
        tick(capture)


# Content -------------------------------------------------------------------------------------


def test_a_template_edit_reaches_messages_written_but_not_yet_sent_and_never_sent_ones(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    welcome = email_step(sequence, "Welcome, version one")
    services.sequence_activate(sequence=sequence)
    early, queued = ContactFactory.create_batch(2, organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollment_create(sequence=sequence, contact=early)
        tick(django_capture_on_commit_callbacks)
        services.enrollment_create(sequence=sequence, contact=queued)
        with django_capture_on_commit_callbacks(execute=False):
            engine.advance_due_enrollments()
    assert Message.objects.get(contact=queued).status == Message.Status.QUEUED

    services.template_update(
        template=welcome.template,
        subject="Welcome, version two",
        html_body="<html><body><p>Second draft for {{ contact.first_name }}</p></body></html>",
    )
    # The lost send task is made up for by the sweep once the dispatch grace has passed.
    at(START + dt.timedelta(minutes=5), django_capture_on_commit_callbacks)

    mail = {str(message["To"]): message for message in captured_mail(organization)}
    assert str(mail[early.email]["Subject"]) == "Welcome, version one"
    assert str(mail[queued.email]["Subject"]) == "Welcome, version two"
    assert f"Second draft for {queued.first_name}" in mail[queued.email].get_body(("html",)).get_content()
    # Sent mail is never touched: the record of the early message keeps what went out.
    assert Message.objects.get(contact=early).subject == "Welcome, version one"
    assert Message.objects.get(contact=queued).subject == "Welcome, version two"


def test_pointing_an_email_step_at_another_template_applies_to_unsent_messages(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "Welcome")
    delay_step(sequence, DAY)
    follow_up = email_step(sequence, "Old follow-up")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)

    services.step_update(step=follow_up, template=template(organization, subject="New follow-up"))
    at(START + DAY, django_capture_on_commit_callbacks)

    assert subjects_by_recipient(captured_mail(organization)) == {contact.email: ["Welcome", "New follow-up"]}


# Adding steps --------------------------------------------------------------------------------


def test_an_inserted_step_reaches_contacts_not_yet_past_it_and_skips_those_past_it(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "A")
    delay_step(sequence, DAY)
    email_step(sequence, "C")
    delay_step(sequence, DAY)
    email_step(sequence, "E")
    services.sequence_activate(sequence=sequence)
    ahead, behind = ContactFactory.create_batch(2, organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollment_create(sequence=sequence, contact=ahead)
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(START + DAY, tick=False):
        services.enrollment_create(sequence=sequence, contact=behind)
        tick(django_capture_on_commit_callbacks)
    # `ahead` has had C and waits for E; `behind` has had A and waits for C.

    inserted = email_step(sequence, "B, after C", position=4)

    assert list(sequence.steps.values_list("name", flat=True)) == ["A", "", "C", "B, after C", "", "E"]
    assert inserted.position == 4
    for days in (2, 3, 4):
        at(START + days * DAY, django_capture_on_commit_callbacks)
    assert subjects_by_recipient(captured_mail(organization)) == {
        ahead.email: ["A", "C", "E"],
        behind.email: ["A", "C", "B, after C", "E"],
    }
    assert set(Enrollment.objects.values_list("status", flat=True)) == {Enrollment.Status.COMPLETED}


def test_a_step_added_at_the_end_reaches_contacts_still_in_the_sequence_only(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "A")
    delay_step(sequence, DAY)
    email_step(sequence, "B")
    services.sequence_activate(sequence=sequence)
    finished, waiting = ContactFactory.create_batch(2, organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollment_create(sequence=sequence, contact=finished)
        tick(django_capture_on_commit_callbacks)
    at(START + DAY, django_capture_on_commit_callbacks)
    with time_machine.travel(START + DAY, tick=False):
        services.enrollment_create(sequence=sequence, contact=waiting)
        tick(django_capture_on_commit_callbacks)

    email_step(sequence, "Appended")
    for days in (2, 3):
        at(START + days * DAY, django_capture_on_commit_callbacks)

    assert subjects_by_recipient(captured_mail(organization)) == {
        finished.email: ["A", "B"],
        waiting.email: ["A", "B", "Appended"],
    }


# Deleting steps ------------------------------------------------------------------------------


def test_deleting_the_step_contacts_wait_on_moves_them_to_the_following_step(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "A")
    delay_step(sequence, DAY)
    doomed = email_step(sequence, "B, deleted")
    second_delay = delay_step(sequence, 2 * DAY)
    email_step(sequence, "C")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)
    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert enrollment.current_step == doomed

    services.step_delete(step=doomed)

    enrollment.refresh_from_db()
    assert enrollment.current_step == second_delay
    assert enrollment.next_run_at == START + DAY
    at(START + DAY, django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert enrollment.next_run_at == START + 3 * DAY
    at(START + 3 * DAY, django_capture_on_commit_callbacks)
    assert subjects_by_recipient(captured_mail(organization)) == {contact.email: ["A", "C"]}
    assert not Step.objects.filter(pk=doomed.pk).exists()


def test_deleting_a_sent_step_keeps_its_messages_in_the_history(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    sent = email_step(sequence, "Already sent")
    delay_step(sequence, DAY)
    email_step(sequence, "Next")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)
    with time_machine.travel(START, tick=False):
        services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)

    services.step_delete(step=sent)
    at(START + DAY, django_capture_on_commit_callbacks)

    history = Message.objects.filter(contact=contact).order_by("id")
    assert [(message.step_id, message.subject, message.status) for message in history] == [
        (None, "Already sent", Message.Status.SENT),
        (sequence.steps.get(name="Next").pk, "Next", Message.Status.SENT),
    ]


def test_deleting_the_last_step_someone_waits_on_lets_them_complete(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "A")
    delay_step(sequence, DAY)
    last = email_step(sequence, "Last, deleted")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)
    with time_machine.travel(START, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)

    services.step_delete(step=last)
    at(START + DAY, django_capture_on_commit_callbacks)

    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.COMPLETED
    assert subjects_by_recipient(captured_mail(organization)) == {contact.email: ["A"]}


def test_a_branch_whose_target_is_deleted_falls_back_to_the_next_step() -> None:
    organization = OrganizationFactory()
    vip = TagFactory(organization=organization)
    sequence = draft_sequence(organization)
    branch = services.step_create(
        sequence=sequence, kind=Step.Kind.CONDITION, condition={"type": "has_tag", "tag": vip.pk}
    )
    no_email = email_step(sequence, "Regular")
    services.step_create(sequence=sequence, kind=Step.Kind.EXIT)
    yes_email = email_step(sequence, "VIP, deleted")
    services.step_update(step=branch, yes_step=yes_email, no_step=no_email)
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)
    contact.tags.add(vip)

    services.step_delete(step=yes_email)
    services.enrollment_create(sequence=sequence, contact=contact, now=START)
    engine.advance_due_enrollments(now=START)

    branch.refresh_from_db()
    assert branch.yes_step is None
    assert list(Message.objects.values_list("step__name", flat=True)) == ["Regular"]


# Changing waits ------------------------------------------------------------------------------


def test_a_changed_delay_does_not_move_contacts_already_waiting_but_applies_to_later_arrivals(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "A")
    delay = delay_step(sequence, DAY)
    email_step(sequence, "B")
    services.sequence_activate(sequence=sequence)
    waiting, later = ContactFactory.create_batch(2, organization=organization)
    with time_machine.travel(START, tick=False):
        waiting_enrollment = services.enrollment_create(sequence=sequence, contact=waiting)
        tick(django_capture_on_commit_callbacks)

    services.step_update(step=delay, delay=5 * DAY)
    with time_machine.travel(START + dt.timedelta(hours=2), tick=False):
        later_enrollment = services.enrollment_create(sequence=sequence, contact=later)
        tick(django_capture_on_commit_callbacks)

    waiting_enrollment.refresh_from_db()
    later_enrollment.refresh_from_db()
    assert waiting_enrollment.next_run_at == START + DAY
    assert later_enrollment.next_run_at == START + dt.timedelta(hours=2) + 5 * DAY
    at(START + DAY, django_capture_on_commit_callbacks)
    assert subjects_by_recipient(captured_mail(organization)) == {waiting.email: ["A", "B"], later.email: ["A"]}


def test_a_changed_wait_until_time_does_not_move_contacts_already_waiting() -> None:
    organization = OrganizationFactory(timezone="UTC")
    sequence = draft_sequence(organization)
    wait = services.step_create(sequence=sequence, kind=Step.Kind.WAIT_UNTIL, wait_until_time=dt.time(18, 0))
    email_step(sequence, "Evening")
    services.sequence_activate(sequence=sequence)
    waiting, later = ContactFactory.create_batch(2, organization=organization, timezone="")
    services.enrollment_create(sequence=sequence, contact=waiting, now=START)
    engine.advance_due_enrollments(now=START)

    services.step_update(step=wait, wait_until_time=dt.time(20, 0))
    services.enrollment_create(sequence=sequence, contact=later, now=START)
    engine.advance_due_enrollments(now=START)

    assert Enrollment.objects.get(contact=waiting).next_run_at == utc(2025, 3, 3, 18)
    assert Enrollment.objects.get(contact=later).next_run_at == utc(2025, 3, 3, 20)
