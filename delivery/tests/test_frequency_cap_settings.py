"""The sending policies (frequency caps, sunset) are settings of the organization: read by its
members over the API, changed by admins, validated (a cap is at least 1; the weekly cap is at
least the daily one; null is no limit), and shown to staff in the admin."""

from __future__ import annotations

import pytest
from django.test import Client

from api.tests.clients import role_client
from organizations.models import Membership, Organization
from organizations.tests.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db

ORGANIZATION = "/api/v1/organization/"
POLICIES = ("frequency_cap_daily", "frequency_cap_weekly", "sunset_days")


def policies_of(organization: Organization) -> tuple[int | None, ...]:
    organization.refresh_from_db()
    return tuple(getattr(organization, name) for name in POLICIES)


def test_members_read_the_sending_policies_with_no_limits_by_default() -> None:
    organization = OrganizationFactory()

    body = role_client(organization, Membership.Role.VIEWER).get(ORGANIZATION).json()

    assert {name: body[name] for name in POLICIES} == dict.fromkeys(POLICIES)


def test_an_admin_sets_the_caps_and_the_sunset_period_and_clears_them_with_null() -> None:
    organization = OrganizationFactory()
    client = role_client(organization, Membership.Role.ADMIN)
    policies = {"frequency_cap_daily": 2, "frequency_cap_weekly": 5, "sunset_days": 180}

    response = client.patch(ORGANIZATION, policies, format="json")

    assert response.status_code == 200
    assert {name: response.json()[name] for name in POLICIES} == policies
    assert policies_of(organization) == (2, 5, 180)

    response = client.patch(ORGANIZATION, {"frequency_cap_weekly": None, "sunset_days": None}, format="json")

    assert response.status_code == 200
    assert policies_of(organization) == (2, None, None)


def test_changing_one_policy_leaves_the_other_settings_alone() -> None:
    organization = OrganizationFactory(name="Acme", frequency_cap_daily=3, sunset_days=90)

    response = role_client(organization, Membership.Role.OWNER).patch(
        ORGANIZATION, {"frequency_cap_weekly": 10}, format="json"
    )

    assert response.status_code == 200
    assert policies_of(organization) == (3, 10, 90)
    assert organization.name == "Acme"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"frequency_cap_daily": 0}, "frequency_cap_daily"),
        ({"frequency_cap_weekly": -1}, "frequency_cap_weekly"),
        ({"sunset_days": 0}, "sunset_days"),
        ({"sunset_days": 40000}, "sunset_days"),
        ({"frequency_cap_daily": "two"}, "frequency_cap_daily"),
        ({"frequency_cap_daily": 3, "frequency_cap_weekly": 2}, "frequency_cap_weekly"),
        ({"frequency_cap_weekly": 1}, "frequency_cap_weekly"),  # below the stored daily cap of 2
        ({"frequency_cap_daily": 9, "name": "Renamed"}, "frequency_cap_weekly"),  # above the stored weekly cap
    ],
)
def test_bad_policies_are_field_errors_and_change_nothing(changes: dict, field: str) -> None:
    organization = OrganizationFactory(name="Acme", frequency_cap_daily=2, frequency_cap_weekly=5)

    response = role_client(organization, Membership.Role.ADMIN).patch(ORGANIZATION, changes, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert policies_of(organization) == (2, 5, None)
    assert organization.name == "Acme"


def test_a_marketer_cannot_change_the_policies() -> None:
    organization = OrganizationFactory()

    response = role_client(organization, Membership.Role.MARKETER).patch(
        ORGANIZATION, {"frequency_cap_daily": 1}, format="json"
    )

    assert response.status_code == 403
    assert policies_of(organization) == (None, None, None)


def test_staff_see_and_change_the_policies_in_the_admin_with_the_same_rule() -> None:
    organization = OrganizationFactory(frequency_cap_daily=2)
    client = Client()
    client.force_login(UserFactory(is_superuser=True))
    url = f"/admin/organizations/organization/{organization.pk}/change/"
    form = {
        "name": organization.name,
        "slug": organization.slug,
        "postal_address": organization.postal_address,
        "timezone": organization.timezone,
        "frequency_cap_daily": "2",
        "frequency_cap_weekly": "1",
        "sunset_days": "60",
        "soft_bounce_limit": "3",
        "soft_bounce_window_days": "14",
        "double_opt_in": "on",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }

    page = client.get(url).content.decode()
    assert all(f'name="{name}"' in page for name in POLICIES)

    refused = client.post(url, form)
    assert refused.status_code == 200 and "Must be at least the daily cap (2)." in refused.content.decode()
    assert policies_of(organization) == (2, None, None)

    accepted = client.post(url, {**form, "frequency_cap_weekly": "4"})
    assert accepted.status_code == 302
    assert policies_of(organization) == (2, 4, 60)
