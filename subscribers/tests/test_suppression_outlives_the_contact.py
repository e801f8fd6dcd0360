"""A suppression keeps only the hash of an address and outlives the contact: a person who asked
not to be mailed stays unmailable when deleted and created again, under any spelling."""

from __future__ import annotations

import pytest

from organizations.tests.factories import OrganizationFactory
from subscribers import services
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression

pytestmark = pytest.mark.django_db


def recreate_after_delete(contact: Contact, spelling: str) -> Contact:
    organization = contact.organization
    Contact.objects.filter(pk=contact.pk).delete()
    return services.contact_create(organization=organization, email=spelling, consent_source="import")


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (lambda c: services.contact_unsubscribe(contact=c, source="link"), Contact.Status.UNSUBSCRIBED),
        (lambda c: services.contact_mark_bounced(contact=c, detail="550"), Contact.Status.BOUNCED),
        (lambda c: services.contact_mark_complained(contact=c, detail="fbl"), Contact.Status.COMPLAINED),
    ],
    ids=["unsubscribed", "bounced", "complained"],
)
def test_a_deleted_and_recreated_contact_takes_its_status_from_the_suppression(stop, expected: str) -> None:
    contact = services.contact_create(organization=OrganizationFactory(), email="ada@example.com")
    stop(contact)

    recreated = recreate_after_delete(contact, "  ADA@example.COM ")

    assert recreated.pk != contact.pk
    recreated.refresh_from_db()
    assert (recreated.status, recreated.is_mailable) == (expected, False)
    assert recreated.status_changed_at is not None


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (Suppression.Reason.MANUAL, Contact.Status.UNSUBSCRIBED),
        (Suppression.Reason.ERASED, Contact.Status.UNSUBSCRIBED),
        (Suppression.Reason.BOUNCED, Contact.Status.BOUNCED),
    ],
)
def test_an_address_suppressed_before_it_was_ever_a_contact_is_created_unmailable(reason: str, expected: str) -> None:
    organization = OrganizationFactory()
    services.suppression_add(organization=organization, email="Ada@Example.com", reason=reason)

    contact = services.contact_create(organization=organization, email="ada@example.com")

    assert contact.status == expected


def test_the_suppression_keeps_only_the_hash_of_the_address() -> None:
    organization = OrganizationFactory()
    contact = services.contact_create(organization=organization, email="ada@example.com", first_name="Ada")
    services.contact_unsubscribe(contact=contact, source="link")

    contact.delete()

    suppression = Suppression.objects.get(organization=organization)
    assert suppression.email_hash == email_hash("ada@example.com")
    stored = " ".join(str(value) for value in Suppression.objects.filter(pk=suppression.pk).values().get().values())
    assert "example" not in stored.lower()  # neither the address nor its domain is kept
    assert "example" not in str(suppression)


def test_a_suppression_in_one_organization_does_not_affect_another() -> None:
    first, second = OrganizationFactory(), OrganizationFactory()
    services.suppression_add(organization=first, email="ada@example.com", reason=Suppression.Reason.MANUAL)

    contact = services.contact_create(organization=second, email="ada@example.com")

    assert contact.status == Contact.Status.ACTIVE


def test_adding_a_suppression_twice_keeps_one_row_and_the_first_reason() -> None:
    organization = OrganizationFactory()

    first = services.suppression_add(organization=organization, email="ada@example.com", reason="manual")
    second = services.suppression_add(organization=organization.pk, email=" ADA@example.com", reason="bounced")

    assert first.pk == second.pk
    assert list(Suppression.objects.values_list("reason", flat=True)) == ["manual"]
