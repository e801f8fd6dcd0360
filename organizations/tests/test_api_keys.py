"""API keys over the API: listed without their secret, made with the secret shown once, revoked
so that they stop working at once."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api.models import IdempotencyRecord
from api.tests.clients import role_client, user_client
from organizations.models import ApiKey, Membership
from organizations.services import api_key_create
from organizations.tests.factories import OrganizationFactory, member

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/api-keys/"
TAGS = "/api/v1/tags/"


def key_holder(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def test_a_new_key_is_answered_once_with_its_secret_and_then_works():
    organization = OrganizationFactory()
    admin = member(organization, Membership.Role.ADMIN)

    response = user_client(admin, organization).post(KEYS, {"name": "CRM sync", "scope": "write"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "CRM sync" and body["scope"] == "write" and body["is_active"] is True
    assert body["created_by"] == admin.username
    assert body["key"].startswith(f"esk_{body['prefix']}_")
    assert key_holder(body["key"]).post(TAGS, {"name": "from-the-new-key"}, format="json").status_code == 201
    listed = user_client(admin, organization).get(f"{KEYS}{body['id']}/").json()
    assert "key" not in listed and "key_hash" not in listed
    assert listed["last_used_at"] is not None


def test_the_list_shows_every_key_of_the_organization_and_never_a_secret_or_hash():
    organization, other = OrganizationFactory(), OrganizationFactory()
    api_key, raw = api_key_create(organization=organization, name="reporting", scope=ApiKey.Scope.READ)
    api_key_create(organization=other, name="someone else's", scope=ApiKey.Scope.READ)

    response = role_client(organization, Membership.Role.OWNER).get(KEYS)

    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["reporting"]
    row = response.json()["results"][0]
    assert set(row) == {
        "id", "name", "prefix", "scope", "is_active", "created_at", "created_by", "last_used_at", "revoked_at",
    }  # fmt: skip
    assert raw not in response.content.decode() and api_key.key_hash not in response.content.decode()


def test_a_retried_create_makes_one_key_and_never_stores_or_repeats_the_secret():
    organization = OrganizationFactory()
    client = role_client(organization, Membership.Role.ADMIN)
    data = {"name": "retried", "scope": "read"}

    first = client.post(KEYS, data, format="json", HTTP_IDEMPOTENCY_KEY="make-key-1")
    again = client.post(KEYS, data, format="json", HTTP_IDEMPOTENCY_KEY="make-key-1")

    assert first.status_code == again.status_code == 201
    assert first.json()["key"] and again.json()["key"] is None
    assert again.json()["id"] == first.json()["id"]
    assert ApiKey.objects.filter(organization=organization).count() == 1
    stored = IdempotencyRecord.objects.get(key="make-key-1")
    assert first.json()["key"] not in str(stored.response_body)


@pytest.mark.parametrize("how", ["delete", "revoke"])
def test_a_revoked_key_stops_working_at_once(how: str):
    organization = OrganizationFactory()
    api_key, raw = api_key_create(organization=organization, name="leaked", scope=ApiKey.Scope.READ)
    holder = key_holder(raw)
    assert holder.get(TAGS).status_code == 200
    admin = role_client(organization, Membership.Role.ADMIN)

    if how == "delete":
        assert admin.delete(f"{KEYS}{api_key.pk}/").status_code == 204
    else:
        response = admin.post(f"{KEYS}{api_key.pk}/revoke/")
        assert response.status_code == 200
        assert response.json()["is_active"] is False and response.json()["revoked_at"] is not None

    assert holder.get(TAGS).status_code == 401
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_revoking_twice_keeps_the_first_revocation_time():
    organization = OrganizationFactory()
    api_key, _ = api_key_create(organization=organization, name="old", scope=ApiKey.Scope.READ)
    admin = role_client(organization, Membership.Role.ADMIN)

    first = admin.post(f"{KEYS}{api_key.pk}/revoke/").json()["revoked_at"]
    again = admin.post(f"{KEYS}{api_key.pk}/revoke/").json()["revoked_at"]

    assert first == again


def test_keys_of_another_organization_are_not_found():
    organization, other = OrganizationFactory(), OrganizationFactory()
    theirs, raw = api_key_create(organization=other, name="theirs", scope=ApiKey.Scope.WRITE)
    admin = role_client(organization, Membership.Role.OWNER)

    assert admin.get(f"{KEYS}{theirs.pk}/").status_code == 404
    assert admin.delete(f"{KEYS}{theirs.pk}/").status_code == 404
    assert admin.post(f"{KEYS}{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert key_holder(raw).get(TAGS).status_code == 200


@pytest.mark.parametrize(
    "data, field",
    [
        ({"scope": "read"}, "name"),
        ({"name": "   ", "scope": "read"}, "name"),
        ({"name": "x" * 201, "scope": "read"}, "name"),
        ({"name": "nul\x00", "scope": "read"}, "name"),
        ({"name": "k"}, "scope"),
        ({"name": "k", "scope": "admin"}, "scope"),
        ({"name": ["k"], "scope": "read"}, "name"),
    ],
)
def test_bad_input_is_a_field_error_and_makes_no_key(data: dict, field: str):
    organization = OrganizationFactory()

    response = role_client(organization, Membership.Role.ADMIN).post(KEYS, data, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert not ApiKey.objects.exists()
