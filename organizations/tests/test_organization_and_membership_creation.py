"""organization_create and membership_create: validated, with the creator as owner."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from organizations.models import Membership, Organization
from organizations.services import membership_create, organization_create
from organizations.tests.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_creating_an_organization_derives_the_slug_and_makes_the_creator_its_owner() -> None:
    founder = UserFactory()

    organization = organization_create(name="Café Olé Ltd", owner=founder, timezone="Europe/Paris")

    assert organization.slug == "cafe-ole-ltd"
    assert organization.timezone == "Europe/Paris"
    assert list(Membership.objects.filter(organization=organization).values_list("user", "role")) == [
        (founder.pk, Membership.Role.OWNER)
    ]


def test_an_unknown_time_zone_is_refused_and_nothing_is_created() -> None:
    with pytest.raises(ValidationError) as refused:
        organization_create(name="Nowhere", timezone="Mars/Olympus_Mons", owner=UserFactory())

    assert "timezone" in refused.value.message_dict
    assert not Organization.objects.filter(name="Nowhere").exists()
    assert not Membership.objects.exists()


def test_a_taken_slug_is_refused() -> None:
    OrganizationFactory(slug="acme")

    with pytest.raises(ValidationError) as refused:
        organization_create(name="Acme")

    assert "slug" in refused.value.message_dict


def test_a_person_belongs_to_an_organization_once() -> None:
    organization, person = OrganizationFactory(), UserFactory()
    membership_create(organization=organization, user=person, role=Membership.Role.VIEWER)

    with pytest.raises(ValidationError):
        membership_create(organization=organization, user=person, role=Membership.Role.OWNER)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(organization=organization, user=person, role=Membership.Role.OWNER)


def test_an_unknown_role_is_refused_by_the_service_and_by_the_database() -> None:
    organization, person = OrganizationFactory(), UserFactory()

    with pytest.raises(ValidationError):
        membership_create(organization=organization, user=person, role="emperor")
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(organization=organization, user=person, role="emperor")
