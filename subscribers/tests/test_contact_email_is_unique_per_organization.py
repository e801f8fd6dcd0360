"""One contact per address per organization: by the service (whatever the spelling) and by the
database itself; the same address may be a contact of two organizations."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from organizations.tests.factories import OrganizationFactory
from subscribers import services
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_a_second_contact_with_another_spelling_of_the_same_address_is_refused() -> None:
    organization = OrganizationFactory()
    services.contact_create(organization=organization, email="ada@example.com")

    with pytest.raises(ValidationError) as refused:
        services.contact_create(organization=organization, email="  ADA@Example.COM ")

    assert "already exists" in " ".join(refused.value.messages)
    assert Contact.objects.for_org(organization).count() == 1


def test_the_database_refuses_a_duplicate_written_past_the_service() -> None:
    organization = OrganizationFactory()
    ContactFactory(organization=organization, email="ada@example.com")

    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(organization=organization, email="ada@example.com")


def test_changing_an_address_to_one_already_taken_is_refused() -> None:
    organization = OrganizationFactory()
    services.contact_create(organization=organization, email="ada@example.com")
    bob = services.contact_create(organization=organization, email="bob@example.com")

    with pytest.raises(ValidationError) as refused:
        services.contact_update(contact=bob, email="Ada@Example.com")

    assert "already exists" in " ".join(refused.value.messages)
    bob.refresh_from_db()
    assert bob.email == "bob@example.com"


def test_the_same_address_may_be_a_contact_of_two_organizations() -> None:
    first, second = OrganizationFactory(), OrganizationFactory()

    one = services.contact_create(organization=first, email="ada@example.com")
    other = services.contact_create(organization=second, email="Ada@Example.com")

    assert one.pk != other.pk
    assert Contact.objects.filter(email="ada@example.com").count() == 2
