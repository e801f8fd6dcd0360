"""Resubscribing on fresh consent makes the contact mailable again and lifts the suppression of
its address, in its organization only; lifting a suppression by hand does the same for new
contacts."""

from __future__ import annotations

import pytest

from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers import services
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import sequence_with_a_step

pytestmark = pytest.mark.django_db


def test_resubscribing_makes_the_contact_mailable_and_records_the_new_consent() -> None:
    contact = services.contact_create(organization=OrganizationFactory(), email="ada@example.com")
    services.contact_unsubscribe(contact=contact, source="link")

    services.contact_resubscribe(contact=contact, source="preference centre", consent_ip="198.51.100.7")

    contact.refresh_from_db()
    assert (contact.status, contact.is_mailable) == (Contact.Status.ACTIVE, True)
    assert (contact.consent_source, contact.consent_ip) == ("preference centre", "198.51.100.7")
    assert contact.consented_at == contact.status_changed_at
    assert not Suppression.objects.filter(organization=contact.organization).exists()


def test_a_resubscribed_contact_can_be_enrolled_and_survives_deletion_and_recreation_mailable() -> None:
    organization = OrganizationFactory()
    contact = services.contact_create(organization=organization, email="ada@example.com")
    services.contact_mark_complained(contact=contact, detail="fbl")
    services.contact_resubscribe(contact=contact, source="double opt-in")

    enrollment = sequence_services.enrollment_create(sequence=sequence_with_a_step(organization), contact=contact)
    contact.delete()
    recreated = services.contact_create(organization=organization, email="ada@example.com")

    assert enrollment.status == Enrollment.Status.ACTIVE
    assert recreated.status == Contact.Status.ACTIVE


def test_resubscribing_lifts_only_the_own_organizations_suppression() -> None:
    first, second = OrganizationFactory(), OrganizationFactory()
    contact = services.contact_create(organization=first, email="ada@example.com")
    services.contact_unsubscribe(contact=contact, source="link")
    services.suppression_add(organization=second, email="ada@example.com", reason=Suppression.Reason.MANUAL)

    services.contact_resubscribe(contact=contact, source="form")

    assert list(Suppression.objects.values_list("organization", flat=True)) == [second.pk]


def test_lifting_a_suppression_lets_the_address_be_created_mailable() -> None:
    organization = OrganizationFactory()
    suppression = services.suppression_add(organization=organization, email="ada@example.com", reason="manual")

    services.suppression_lift(suppression=suppression)
    contact = services.contact_create(organization=organization, email="ada@example.com")

    assert contact.status == Contact.Status.ACTIVE
