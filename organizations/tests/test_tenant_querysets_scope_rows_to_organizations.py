"""TenantQuerySet.for_org and for_user: the one way tenant rows are read on someone's behalf."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from organizations.models import Membership
from organizations.tenancy import organization_ids_for_user
from organizations.tests.factories import OrganizationFactory, UserFactory, member
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> dict[str, object]:
    alpha, bravo, charlie = OrganizationFactory(), OrganizationFactory(), OrganizationFactory()
    return {
        "alpha": alpha,
        "bravo": bravo,
        "charlie": charlie,
        "alpha_contacts": {ContactFactory(organization=alpha).pk for _ in range(2)},
        "bravo_contacts": {ContactFactory(organization=bravo).pk},
        "charlie_contacts": {ContactFactory(organization=charlie).pk},
    }


def pks(queryset) -> set[int]:
    return set(queryset.values_list("pk", flat=True))


def test_for_org_takes_an_organization_or_its_id_and_returns_only_its_rows(world: dict) -> None:
    assert pks(Contact.objects.for_org(world["alpha"])) == world["alpha_contacts"]
    assert pks(Contact.objects.for_org(world["bravo"].pk)) == world["bravo_contacts"]


def test_for_user_returns_the_rows_of_every_organization_the_user_belongs_to(world: dict) -> None:
    owner = member(world["alpha"], Membership.Role.OWNER)
    Membership.objects.create(user=owner, organization=world["bravo"], role=Membership.Role.VIEWER)

    assert pks(Contact.objects.for_user(owner)) == world["alpha_contacts"] | world["bravo_contacts"]
    assert set(organization_ids_for_user(owner)) == {world["alpha"].pk, world["bravo"].pk}


def test_for_user_with_roles_keeps_only_organizations_where_the_user_has_one_of_them(world: dict) -> None:
    person = member(world["alpha"], Membership.Role.MARKETER)
    Membership.objects.create(user=person, organization=world["bravo"], role=Membership.Role.VIEWER)

    editable = Contact.objects.for_user(person, roles=Membership.EDITING_ROLES)

    assert pks(editable) == world["alpha_contacts"]
    assert pks(Contact.objects.for_user(person, roles=Membership.MANAGING_ROLES)) == set()


def test_a_user_without_membership_sees_nothing(world: dict) -> None:
    assert pks(Contact.objects.for_user(UserFactory())) == set()


def test_a_superuser_sees_every_organizations_rows(world: dict) -> None:
    everything = world["alpha_contacts"] | world["bravo_contacts"] | world["charlie_contacts"]

    assert pks(Contact.objects.for_user(UserFactory(is_superuser=True))) == everything


@pytest.mark.parametrize("is_superuser", [False, True])
def test_an_inactive_user_sees_nothing_even_as_superuser(world: dict, is_superuser: bool) -> None:
    person = member(world["alpha"], Membership.Role.OWNER, is_superuser=is_superuser, is_active=False)

    assert pks(Contact.objects.for_user(person)) == set()
    assert organization_ids_for_user(person) == []


def test_an_anonymous_visitor_sees_nothing(world: dict) -> None:
    assert pks(Contact.objects.for_user(AnonymousUser())) == set()
    assert organization_ids_for_user(AnonymousUser()) == []


def test_for_user_narrows_an_already_filtered_queryset(world: dict) -> None:
    person = member(world["alpha"])
    chosen = next(iter(world["alpha_contacts"]))

    assert pks(Contact.objects.filter(pk__in=[chosen, *world["bravo_contacts"]]).for_user(person)) == {chosen}
