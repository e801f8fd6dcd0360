"""Acceptance: a staff member of Alpha sees none of Bravo's rows in any admin list, whatever the
model, filter or search; superusers see both organizations."""

from __future__ import annotations

import pytest
from django.test import Client

from organizations.admin import OrganizationListFilter
from organizations.models import Membership, Organization
from organizations.tests.factories import UserFactory, member
from organizations.tests.tenant_world import (
    Tenant,
    admin_url,
    organization_of,
    organization_scoped_admins,
    search_term_for,
)
from subscribers.models import Contact

SCOPED = organization_scoped_admins()
SCOPED_IDS = [model._meta.label for model, _ in SCOPED]
# Every scoped list has the organization filter, except the list of organizations itself.
FILTERED = [(model, model_admin) for model, model_admin in SCOPED if model is not Organization]
FILTERED_IDS = [model._meta.label for model, _ in FILTERED]


def organization_filter(response) -> object | None:
    for spec in response.context["cl"].filter_specs:
        if isinstance(spec, OrganizationListFilter):
            return spec
    return None


@pytest.mark.parametrize(("model", "model_admin"), SCOPED, ids=SCOPED_IDS)
def test_a_changelist_lists_every_row_of_the_own_organization_and_none_of_another(
    client: Client, alpha: Tenant, bravo: Tenant, model, model_admin
) -> None:
    client.force_login(alpha.owner)

    response = client.get(admin_url(model, "changelist"))

    assert response.status_code == 200
    listed = list(response.context["cl"].result_list)
    assert {organization_of(row) for row in listed} == {alpha.organization.pk}
    assert alpha.row(model).pk in {row.pk for row in listed}
    assert "bravo" not in response.content.decode().lower()


@pytest.mark.parametrize(("model", "model_admin"), FILTERED, ids=FILTERED_IDS)
def test_the_organization_filter_offers_only_the_own_organization(
    client: Client, alpha: Tenant, bravo: Tenant, model, model_admin
) -> None:
    client.force_login(alpha.owner)

    response = client.get(admin_url(model, "changelist"))

    spec = organization_filter(response)
    assert spec is not None, f"{model_admin} has no organization filter"
    assert spec.lookup_choices == [(alpha.organization.pk, alpha.organization.name)]


@pytest.mark.parametrize(("model", "model_admin"), FILTERED, ids=FILTERED_IDS)
def test_filtering_by_another_organization_lists_nothing(
    client: Client, alpha: Tenant, bravo: Tenant, model, model_admin
) -> None:
    client.force_login(alpha.owner)

    response = client.get(admin_url(model, "changelist"), {"organization": bravo.organization.pk})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    assert "bravo" not in response.content.decode().lower()


@pytest.mark.parametrize(("model", "model_admin"), SCOPED, ids=SCOPED_IDS)
def test_search_finds_the_own_organizations_rows_but_never_another_organizations(
    client: Client, alpha: Tenant, bravo: Tenant, model, model_admin
) -> None:
    assert model_admin.search_fields, f"{model_admin} offers no search"
    superuser = UserFactory(is_superuser=True)
    client.force_login(superuser)
    found_by_superuser = client.get(admin_url(model, "changelist"), {"q": search_term_for(bravo, model)})
    assert bravo.row(model).pk in {row.pk for row in found_by_superuser.context["cl"].result_list}

    client.force_login(alpha.owner)
    own = client.get(admin_url(model, "changelist"), {"q": search_term_for(alpha, model)})
    other = client.get(admin_url(model, "changelist"), {"q": search_term_for(bravo, model)})

    assert alpha.row(model).pk in {row.pk for row in own.context["cl"].result_list}
    assert list(other.context["cl"].result_list) == []


@pytest.mark.parametrize(("model", "model_admin"), SCOPED, ids=SCOPED_IDS)
def test_a_superuser_lists_the_rows_of_every_organization(
    client: Client, alpha: Tenant, bravo: Tenant, model, model_admin
) -> None:
    client.force_login(UserFactory(is_superuser=True))

    response = client.get(admin_url(model, "changelist"))

    listed = {row.pk for row in response.context["cl"].result_list}
    assert {alpha.row(model).pk, bravo.row(model).pk} <= listed
    spec = organization_filter(response)
    if spec is not None:
        assert {alpha.organization.pk, bravo.organization.pk} <= {pk for pk, _ in spec.lookup_choices}


def test_the_raw_id_lookup_popup_for_an_enrollments_contact_lists_only_own_contacts(
    client: Client, alpha: Tenant, bravo: Tenant
) -> None:
    client.force_login(member(alpha.organization, Membership.Role.MARKETER))

    response = client.get(admin_url(Contact, "changelist"), {"_to_field": "id", "_popup": "1"})

    assert response.status_code == 200
    assert [row.pk for row in response.context["cl"].result_list] == [alpha.row(Contact).pk]
    assert "bravo" not in response.content.decode().lower()


def test_a_staff_member_of_two_organizations_lists_both(client: Client, alpha: Tenant, bravo: Tenant) -> None:
    both = member(alpha.organization, Membership.Role.VIEWER)
    Membership.objects.create(user=both, organization=bravo.organization, role=Membership.Role.VIEWER)
    client.force_login(both)

    response = client.get(admin_url(Contact, "changelist"))

    assert {row.pk for row in response.context["cl"].result_list} == {
        alpha.row(Contact).pk,
        bravo.row(Contact).pk,
    }


def test_staff_without_any_membership_reach_no_organization_data(client: Client, alpha: Tenant) -> None:
    loner = UserFactory()
    client.force_login(loner)

    index = client.get("/admin/")
    changelist = client.get(admin_url(Contact, "changelist"))

    assert index.status_code == 200
    assert index.context["app_list"] == []
    assert changelist.status_code == 403
