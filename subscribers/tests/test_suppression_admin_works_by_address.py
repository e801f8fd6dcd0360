"""Staff work with suppressions by address although only its hash is stored: search by the
address finds the row, adding one suppresses the address (and unmails a contact who has it),
deleting one lifts it."""

from __future__ import annotations

import pytest
from django.test import Client

from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory, member
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers import services
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory, sequence_with_a_step

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/subscribers/suppression/"


@pytest.fixture
def organization():
    return OrganizationFactory()


@pytest.fixture
def staff(client: Client, organization):
    person = member(organization, Membership.Role.MARKETER, username="sam")
    client.force_login(person)
    return person


def found(client: Client, term: str) -> list[int]:
    response = client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    return [row.pk for row in response.context["cl"].result_list]


@pytest.mark.parametrize("term", ["ada@example.com", "  ADA@Example.com "])
def test_search_by_any_spelling_of_the_address_finds_the_hashed_row(
    client: Client, staff, organization, term: str
) -> None:
    wanted = services.suppression_add(organization=organization, email="ada@example.com", reason="manual")
    services.suppression_add(organization=organization, email="bob@example.com", reason="manual")

    assert found(client, term) == [wanted.pk]


def test_search_by_address_does_not_find_another_organizations_row(client: Client, staff, organization) -> None:
    services.suppression_add(organization=OrganizationFactory(), email="ada@example.com", reason="manual")

    assert found(client, "ada@example.com") == []


def test_search_by_a_malformed_address_finds_nothing_and_a_hash_prefix_finds_the_row(
    client: Client, staff, organization
) -> None:
    wanted = services.suppression_add(organization=organization, email="ada@example.com", reason="manual")

    assert found(client, "ada@@example") == []
    assert found(client, email_hash("ada@example.com")[:16]) == [wanted.pk]


def test_adding_a_suppression_stores_only_the_hash_and_unmails_the_contact_who_has_the_address(
    client: Client, staff, organization
) -> None:
    contact = ContactFactory(organization=organization, email="ada@example.com")
    enrollment = sequence_services.enrollment_create(sequence=sequence_with_a_step(organization), contact=contact)

    response = client.post(
        f"{CHANGELIST}add/",
        {"organization": organization.pk, "email": " Ada@Example.com", "reason": "manual", "detail": "asked by phone"},
    )

    assert response.status_code == 302
    suppression = Suppression.objects.get()
    assert (suppression.email_hash, suppression.reason) == (email_hash("ada@example.com"), "manual")
    assert suppression.detail == "asked by phone"
    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.status == Contact.Status.UNSUBSCRIBED
    assert enrollment.status == Enrollment.Status.EXITED


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("manual", Contact.Status.UNSUBSCRIBED),
        ("bounced", Contact.Status.BOUNCED),
        ("complained", Contact.Status.COMPLAINED),
    ],
)
def test_a_contact_suppressed_in_the_admin_gets_the_status_a_recreated_contact_would_get(
    client: Client, staff, organization, reason: str, status: str
) -> None:
    contact = ContactFactory(organization=organization, email="ada@example.com")

    client.post(f"{CHANGELIST}add/", {"organization": organization.pk, "email": "ada@example.com", "reason": reason})
    contact.refresh_from_db()
    Contact.objects.filter(pk=contact.pk).delete()
    recreated = services.contact_create(organization=organization, email="ada@example.com")

    assert recreated.status == status
    assert contact.status == status


def test_deleting_a_suppression_in_the_admin_lifts_it(client: Client, staff, organization) -> None:
    suppression = services.suppression_add(organization=organization, email="ada@example.com", reason="manual")

    response = client.post(f"{CHANGELIST}{suppression.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Suppression.objects.exists()
    assert services.contact_create(organization=organization, email="ada@example.com").is_mailable


def test_a_suppressions_address_and_reason_cannot_be_edited_afterwards(client: Client, staff, organization) -> None:
    suppression = services.suppression_add(organization=organization, email="ada@example.com", reason="manual")

    client.post(
        f"{CHANGELIST}{suppression.pk}/change/",
        {"organization": organization.pk, "reason": "bounced", "email_hash": "0" * 64, "detail": "updated note"},
    )

    suppression.refresh_from_db()
    assert (suppression.email_hash, suppression.reason) == (email_hash("ada@example.com"), "manual")
    assert suppression.detail == "updated note"
