"""Who may be enrolled: skip reasons, the re-entry policy, and at most one active enrollment per
contact and sequence (a database constraint, not just a check)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from delivery.tests.factories import enrollment_for
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence
from sequences.services import SkipReason
from sequences.tests.factories import SequenceFactory
from sequences.tests.helpers import delay_step, draft_sequence, email_step, utc
from subscribers import services as subscriber_services
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)


def one_email_sequence(organization, **fields) -> Sequence:
    sequence = draft_sequence(organization, **fields)
    email_step(sequence, "Hello")
    return services.sequence_activate(sequence=sequence)


def test_enrolled_contacts_start_at_the_first_step_due_at_once() -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    first = delay_step(sequence, dt.timedelta(hours=1))
    email_step(sequence, "Later")
    services.sequence_activate(sequence=sequence)

    report = services.enrollments_create(
        sequence=sequence, contacts=ContactFactory.create_batch(3, organization=organization), now=START
    )

    assert report.enrolled_count == 3
    assert not report.skipped
    for enrollment in Enrollment.objects.all():
        assert (enrollment.status, enrollment.current_step, enrollment.next_run_at) == ("active", first, START)
        assert enrollment.enrolled_at == START


def test_contacts_who_may_not_be_enrolled_are_skipped_and_counted_by_reason() -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization)
    welcome = ContactFactory.create_batch(2, organization=organization)
    unsubscribed = ContactFactory(organization=organization, status=Contact.Status.UNSUBSCRIBED)
    bounced = ContactFactory(organization=organization, status=Contact.Status.BOUNCED)
    # Suppressed by staff while still marked active: the suppression list has the last word.
    suppressed = ContactFactory(organization=organization)
    subscriber_services.suppression_add(
        organization=organization, email=suppressed.email.upper(), reason=Suppression.Reason.MANUAL
    )
    already = ContactFactory(organization=organization)
    services.enrollment_create(sequence=sequence, contact=already)
    stranger = ContactFactory(organization=OrganizationFactory())

    report = services.enrollments_create(
        sequence=sequence, contacts=[*welcome, unsubscribed, bounced, suppressed, already, stranger]
    )

    assert {enrollment.contact for enrollment in report.enrolled} == set(welcome)
    assert report.skipped == {
        SkipReason.NOT_MAILABLE: 2,
        SkipReason.SUPPRESSED: 1,
        SkipReason.ALREADY_ENROLLED: 1,
        SkipReason.OTHER_ORGANIZATION: 1,
    }
    assert set(Enrollment.objects.values_list("contact", flat=True)) == {c.pk for c in [*welcome, already]}


def test_enrolling_one_contact_explains_why_it_cannot_be_enrolled() -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization)
    contact = ContactFactory(organization=organization, status=Contact.Status.COMPLAINED)

    assert "not mailable" in services.enrollment_refusal(sequence=sequence, contact=contact)
    with pytest.raises(ValidationError) as error:
        services.enrollment_create(sequence=sequence, contact=contact)

    assert error.value.code == SkipReason.NOT_MAILABLE
    assert not Enrollment.objects.exists()


@pytest.mark.parametrize("status", [Sequence.Status.DRAFT, Sequence.Status.ARCHIVED])
def test_contacts_cannot_be_enrolled_into_a_sequence_that_is_not_running(status: str) -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization)
    Sequence.objects.filter(pk=sequence.pk).update(status=status)
    sequence.refresh_from_db()

    with pytest.raises(ValidationError):
        services.enrollments_create(sequence=sequence, contacts=[ContactFactory(organization=organization)])

    assert not Enrollment.objects.exists()


def test_a_sequence_without_steps_takes_no_contacts() -> None:
    organization = OrganizationFactory()
    sequence = SequenceFactory(organization=organization, status=Sequence.Status.ACTIVE)
    contact = ContactFactory(organization=organization)

    assert services.enrollment_refusal(sequence=sequence, contact=contact) == "The sequence has no steps."
    with pytest.raises(ValidationError):
        services.enrollment_create(sequence=sequence, contact=contact)


# Re-entry ------------------------------------------------------------------------------------


def finish(enrollment: Enrollment, status: str) -> None:
    Enrollment.objects.filter(pk=enrollment.pk).update(
        status=status, finished_at=timezone.now(), current_step=None, next_run_at=None
    )


@pytest.mark.parametrize("ended", [Enrollment.Status.COMPLETED, Enrollment.Status.EXITED, Enrollment.Status.FAILED])
def test_with_reentry_never_a_contact_goes_through_a_sequence_only_once(ended: str) -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization, reentry_policy=Sequence.ReentryPolicy.NEVER)
    contact = ContactFactory(organization=organization)
    finish(services.enrollment_create(sequence=sequence, contact=contact), ended)

    report = services.enrollments_create(sequence=sequence, contacts=[contact])

    assert report.enrolled_count == 0
    assert report.skipped == {SkipReason.ALREADY_COMPLETED: 1}
    assert Enrollment.objects.filter(contact=contact).count() == 1


def test_with_reentry_after_exit_a_contact_may_come_back_once_the_previous_enrollment_ended() -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization, reentry_policy=Sequence.ReentryPolicy.AFTER_EXIT)
    contact = ContactFactory(organization=organization)
    first = services.enrollment_create(sequence=sequence, contact=contact)

    while_active = services.enrollments_create(sequence=sequence, contacts=[contact])
    assert while_active.skipped == {SkipReason.ALREADY_ENROLLED: 1}

    engine.advance_due_enrollments()
    first.refresh_from_db()
    assert first.status == Enrollment.Status.COMPLETED
    again = services.enrollments_create(sequence=sequence, contacts=[contact])

    assert again.enrolled_count == 1
    assert Enrollment.objects.filter(contact=contact, status=Enrollment.Status.ACTIVE).get() == again.enrolled[0]
    assert Enrollment.objects.filter(contact=contact).count() == 2


# The constraint ------------------------------------------------------------------------------


def test_the_database_refuses_a_second_active_enrollment_of_a_contact_in_a_sequence() -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization, reentry_policy=Sequence.ReentryPolicy.AFTER_EXIT)
    contact = ContactFactory(organization=organization)
    enrollment_for(sequence, contact)

    with pytest.raises(IntegrityError), transaction.atomic():
        enrollment_for(sequence, contact)

    assert Enrollment.objects.filter(contact=contact).count() == 1


def test_the_constraint_allows_finished_enrollments_beside_an_active_one() -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization, reentry_policy=Sequence.ReentryPolicy.AFTER_EXIT)
    contact = ContactFactory(organization=organization)
    for status in (Enrollment.Status.COMPLETED, Enrollment.Status.EXITED):
        enrollment_for(sequence, contact, status=status, finished_at=timezone.now(), next_run_at=None)

    enrollment_for(sequence, contact)
    enrollment_for(sequence, ContactFactory(organization=organization))

    assert Enrollment.objects.filter(contact=contact).count() == 3


def test_the_same_contact_may_be_active_in_different_sequences() -> None:
    organization = OrganizationFactory()
    contact = ContactFactory(organization=organization)

    for _ in range(2):
        services.enrollment_create(sequence=one_email_sequence(organization), contact=contact)

    assert Enrollment.objects.filter(contact=contact, status=Enrollment.Status.ACTIVE).count() == 2


def test_a_contact_enrolled_meanwhile_by_someone_else_is_skipped_not_doubled(monkeypatch) -> None:
    organization = OrganizationFactory()
    sequence = one_email_sequence(organization)
    late, free = ContactFactory.create_batch(2, organization=organization)
    eligible = services._eligible

    def racing(sequence, contacts, report):
        chosen = eligible(sequence, contacts, report)
        # Another request enrolls `late` between the check and the insert.
        enrollment_for(sequence, late)
        return chosen

    monkeypatch.setattr(services, "_eligible", racing)

    report = services.enrollments_create(sequence=sequence, contacts=[late, free])

    assert [enrollment.contact for enrollment in report.enrolled] == [free]
    assert report.skipped == {SkipReason.ALREADY_ENROLLED: 1}
    assert Enrollment.objects.filter(contact=late).count() == 1
