"""The caller's organization over the API: read by anyone in it (with their role), changed by
admins, deleted with everything in it by an owner who repeats its slug."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from api.tests.clients import key_client, role_client, user_client
from delivery.models import Event, Message
from organizations.models import ApiKey, Membership, Organization
from organizations.tests.factories import OrganizationFactory, member
from organizations.tests.tenant_world import build_tenant
from sequences.models import Enrollment, Sequence
from subscribers.models import Contact, ContactImport

pytestmark = pytest.mark.django_db

ORGANIZATION = "/api/v1/organization/"


def test_a_member_reads_the_organization_and_their_role():
    organization = OrganizationFactory(name="Acme", slug="acme", timezone="Europe/Paris")

    body = role_client(organization, Membership.Role.VIEWER).get(ORGANIZATION).json()

    assert body["name"] == "Acme" and body["slug"] == "acme" and body["timezone"] == "Europe/Paris"
    assert body["postal_address"] == organization.postal_address and body["created_at"]
    assert body["role"] == "viewer" and body["api_key_scope"] is None


def test_a_key_reads_its_organization_and_its_scope():
    organization = OrganizationFactory(slug="acme")

    body = key_client(organization, ApiKey.Scope.READ).get(ORGANIZATION).json()

    assert body["slug"] == "acme" and body["role"] is None and body["api_key_scope"] == "read"


def test_an_admin_changes_name_address_time_zone_and_slug():
    organization = OrganizationFactory(slug="acme")
    client = role_client(organization, Membership.Role.ADMIN)
    changes = {
        "name": "Acme Ltd",
        "postal_address": "2 Main Street",
        "timezone": "America/New_York",
        "slug": "acme-ltd",
    }

    response = client.patch(ORGANIZATION, changes, format="json")

    assert response.status_code == 200
    assert {field: response.json()[field] for field in changes} == changes
    organization.refresh_from_db()
    assert (organization.name, organization.slug, organization.timezone) == ("Acme Ltd", "acme-ltd", "America/New_York")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"slug": "taken"}, "slug"),
        ({"slug": "not a slug"}, "slug"),
        ({"name": ""}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"postal_address": 7 * ["x"]}, "postal_address"),
    ],
)
def test_bad_changes_are_field_errors_and_change_nothing(changes: dict, field: str):
    OrganizationFactory(slug="taken")
    organization = OrganizationFactory(name="Acme", slug="acme")

    response = role_client(organization, Membership.Role.OWNER).patch(ORGANIZATION, changes, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]
    organization.refresh_from_db()
    assert (organization.name, organization.slug, organization.timezone) == ("Acme", "acme", "UTC")


def test_deleting_needs_the_slug_repeated():
    organization = OrganizationFactory(slug="acme")
    client = role_client(organization, Membership.Role.OWNER)

    assert client.delete(ORGANIZATION).status_code == 400
    response = client.delete(f"{ORGANIZATION}?confirm=acme-typo")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["confirm"]
    assert Organization.objects.filter(pk=organization.pk).exists()


def test_an_owner_deletes_the_organization_with_everything_in_it_and_nothing_else(settings, tmp_path: Path):
    settings.MEDIA_ROOT = tmp_path / "media"
    alpha, bravo = build_tenant("alpha"), build_tenant("bravo")
    upload = ContactImport.objects.get(organization=alpha.organization)
    upload.file.save("upload.csv", ContentFile(b"email\nalpha-person@alpha.example\n"))
    stored = upload.file.name
    assert default_storage.exists(stored)

    response = user_client(alpha.owner, alpha.organization).delete(f"{ORGANIZATION}?confirm={alpha.organization.slug}")

    assert response.status_code == 204
    assert not Organization.objects.filter(pk=alpha.organization.pk).exists()
    for model in (Contact, Sequence, Enrollment, Message, Event, ApiKey, ContactImport, Membership):
        assert not model.objects.filter(organization_id=alpha.organization.pk).exists(), model.__name__
        assert model.objects.filter(organization_id=bravo.organization.pk).exists(), model.__name__
    assert not default_storage.exists(stored)
    # People are not the organization's: they keep their accounts (and other memberships).
    assert get_user_model().objects.filter(pk=alpha.owner.pk).exists()


def test_the_former_members_of_a_deleted_organization_are_no_longer_let_in():
    organization = OrganizationFactory(slug="gone")
    owner = member(organization, Membership.Role.OWNER)
    client = user_client(owner, organization)

    assert client.delete(f"{ORGANIZATION}?confirm=gone").status_code == 204

    assert client.get(ORGANIZATION).status_code == 404
