"""Unsubscribe, hard bounce and complaint make a contact unmailable at once: its status changes,
its address is suppressed, every active enrollment ends and unsent mail is cancelled. Repeating
one changes nothing; a complaint outranks an earlier unsubscribe or bounce."""

from __future__ import annotations

import pytest

from delivery.models import Message
from delivery.tests.factories import MessageFactory
from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers import services
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory, sequence_with_a_step

pytestmark = pytest.mark.django_db


def unsubscribe(contact: Contact) -> bool:
    return services.contact_unsubscribe(contact=contact, source="link", detail="footer")


def bounce(contact: Contact) -> bool:
    return services.contact_mark_bounced(contact=contact, detail="550 5.1.1 no such user")


def complain(contact: Contact) -> bool:
    return services.contact_mark_complained(contact=contact, detail="feedback loop")


STOPS = [
    (unsubscribe, Contact.Status.UNSUBSCRIBED, Suppression.Reason.UNSUBSCRIBED, Enrollment.ExitReason.UNSUBSCRIBED),
    (bounce, Contact.Status.BOUNCED, Suppression.Reason.BOUNCED, Enrollment.ExitReason.BOUNCED),
    (complain, Contact.Status.COMPLAINED, Suppression.Reason.COMPLAINED, Enrollment.ExitReason.COMPLAINED),
]
STOP_IDS = ["unsubscribe", "bounce", "complaint"]


@pytest.fixture
def enrolled() -> dict[str, object]:
    """A contact in two sequences (one with a queued message), and a bystander in the first."""
    organization = OrganizationFactory()
    contact = ContactFactory(organization=organization, email="ada@example.com")
    bystander = ContactFactory(organization=organization)
    first, second = sequence_with_a_step(organization), sequence_with_a_step(organization)
    enrollments = [
        sequence_services.enrollment_create(sequence=first, contact=contact),
        sequence_services.enrollment_create(sequence=second, contact=contact),
    ]
    queued = MessageFactory(
        enrollment=enrollments[0], step=first.steps.get(), status=Message.Status.QUEUED, sent_at=None
    )
    other = sequence_services.enrollment_create(sequence=first, contact=bystander)
    return {"contact": contact, "enrollments": enrollments, "queued": queued, "bystander_enrollment": other}


@pytest.mark.parametrize(("stop", "status", "reason", "exit_reason"), STOPS, ids=STOP_IDS)
def test_stopping_sets_the_status_suppresses_the_address_and_ends_every_enrollment(
    enrolled: dict, stop, status: str, reason: str, exit_reason: str
) -> None:
    contact: Contact = enrolled["contact"]

    was_mailable = stop(contact)

    assert was_mailable is True
    contact.refresh_from_db()
    assert (contact.status, contact.is_mailable) == (status, False)
    assert contact.status_changed_at is not None
    suppression = Suppression.objects.get(organization=contact.organization, email_hash=email_hash(contact.email))
    assert suppression.reason == reason
    for enrollment in enrolled["enrollments"]:
        enrollment.refresh_from_db()
        assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, exit_reason)
        assert enrollment.finished_at is not None and enrollment.next_run_at is None
    enrolled["queued"].refresh_from_db()
    assert enrolled["queued"].status == Message.Status.CANCELLED
    enrolled["bystander_enrollment"].refresh_from_db()
    assert enrolled["bystander_enrollment"].status == Enrollment.Status.ACTIVE


@pytest.mark.parametrize(("stop", "status", "reason", "exit_reason"), STOPS, ids=STOP_IDS)
def test_stopping_twice_changes_nothing_the_second_time(
    enrolled: dict, stop, status: str, reason: str, exit_reason: str
) -> None:
    contact: Contact = enrolled["contact"]
    stop(contact)
    contact.refresh_from_db()
    first_change = contact.status_changed_at
    finished = [Enrollment.objects.get(pk=enrollment.pk).finished_at for enrollment in enrolled["enrollments"]]

    again = stop(contact)

    assert again is False
    contact.refresh_from_db()
    assert (contact.status, contact.status_changed_at) == (status, first_change)
    assert Suppression.objects.filter(organization=contact.organization).count() == 1
    assert [Enrollment.objects.get(pk=enrollment.pk).finished_at for enrollment in enrolled["enrollments"]] == finished


def test_the_passed_contact_object_reflects_the_new_status() -> None:
    contact = ContactFactory()

    bounce(contact)

    assert contact.status == Contact.Status.BOUNCED


@pytest.mark.parametrize("earlier", [unsubscribe, bounce], ids=["unsubscribe", "bounce"])
def test_a_complaint_outranks_an_earlier_unsubscribe_or_bounce(earlier) -> None:
    contact = ContactFactory()
    earlier(contact)

    complain(contact)

    contact.refresh_from_db()
    assert contact.status == Contact.Status.COMPLAINED


def test_a_complaint_after_an_unsubscribe_is_what_the_suppression_remembers() -> None:
    contact = ContactFactory(email="ada@example.com")
    organization = contact.organization
    unsubscribe(contact)
    complain(contact)

    contact.delete()
    recreated = services.contact_create(organization=organization, email="ada@example.com")

    assert Suppression.objects.get(organization=organization).reason == Suppression.Reason.COMPLAINED
    assert recreated.status == Contact.Status.COMPLAINED


@pytest.mark.parametrize("later", [unsubscribe, bounce], ids=["unsubscribe", "bounce"])
def test_an_unsubscribe_or_bounce_does_not_overwrite_an_earlier_complaint(later) -> None:
    contact = ContactFactory()
    complain(contact)

    later(contact)

    contact.refresh_from_db()
    assert contact.status == Contact.Status.COMPLAINED
    assert Suppression.objects.get(organization=contact.organization).reason == Suppression.Reason.COMPLAINED


def test_a_bounce_after_an_unsubscribe_keeps_the_unsubscribe() -> None:
    contact = ContactFactory()
    unsubscribe(contact)

    assert bounce(contact) is False

    contact.refresh_from_db()
    assert contact.status == Contact.Status.UNSUBSCRIBED


def test_a_stopped_contact_cannot_be_enrolled_again() -> None:
    contact = ContactFactory()
    sequence = sequence_with_a_step(contact.organization)
    unsubscribe(contact)

    report = sequence_services.enrollments_create(sequence=sequence, contacts=[contact])

    assert report.enrolled_count == 0
    assert not Enrollment.objects.filter(contact=contact).exists()
