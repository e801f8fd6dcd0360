"""Who may do what to the organization itself: every caller against every operation on keys,
members and the organization. Viewers and keys read the organization; admins also manage keys,
members and settings; only owners delete it. Keys never manage keys or members."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.response import Response
from rest_framework.test import APIClient

from api.tests.clients import key_client, role_client
from organizations.models import ApiKey, Membership, Organization
from organizations.services import api_key_create
from organizations.tests.factories import OrganizationFactory, UserFactory, member

pytestmark = pytest.mark.django_db

Role = Membership.Role
CALLERS = ("viewer", "marketer", "admin", "owner", "read key", "write key")
MANAGERS = {"admin", "owner"}
EVERYONE = set(CALLERS)


@dataclass
class World:
    organization: Organization
    api_key: ApiKey
    membership: Membership


def caller(organization: Organization, name: str) -> APIClient:
    if name.endswith(" key"):
        return key_client(organization, name.removesuffix(" key"))
    return role_client(organization, name)


Operation = Callable[[APIClient, World], Response]

# name: (request, answer when allowed, callers allowed)
OPERATIONS: dict[str, tuple[Operation, int, set[str]]] = {
    "api_keys_list": (lambda c, w: c.get("/api/v1/api-keys/"), 200, MANAGERS),
    "api_keys_create": (
        lambda c, w: c.post("/api/v1/api-keys/", {"name": "new", "scope": "read"}, format="json"),
        201,
        MANAGERS,
    ),
    "api_keys_retrieve": (lambda c, w: c.get(f"/api/v1/api-keys/{w.api_key.pk}/"), 200, MANAGERS),
    "api_keys_destroy": (lambda c, w: c.delete(f"/api/v1/api-keys/{w.api_key.pk}/"), 204, MANAGERS),
    "api_keys_revoke": (lambda c, w: c.post(f"/api/v1/api-keys/{w.api_key.pk}/revoke/"), 200, MANAGERS),
    "members_list": (lambda c, w: c.get("/api/v1/members/"), 200, MANAGERS),
    "members_create": (
        lambda c, w: c.post("/api/v1/members/", {"user": "candidate", "role": "viewer"}, format="json"),
        201,
        MANAGERS,
    ),
    "members_retrieve": (lambda c, w: c.get(f"/api/v1/members/{w.membership.pk}/"), 200, MANAGERS),
    "members_partial_update": (
        lambda c, w: c.patch(f"/api/v1/members/{w.membership.pk}/", {"role": "viewer"}, format="json"),
        200,
        MANAGERS,
    ),
    "members_destroy": (lambda c, w: c.delete(f"/api/v1/members/{w.membership.pk}/"), 204, MANAGERS),
    "organization_retrieve": (lambda c, w: c.get("/api/v1/organization/"), 200, EVERYONE),
    "organization_partial_update": (
        lambda c, w: c.patch("/api/v1/organization/", {"name": "Renamed"}, format="json"),
        200,
        MANAGERS,
    ),
    "organization_destroy": (
        lambda c, w: c.delete(f"/api/v1/organization/?confirm={w.organization.slug}"),
        204,
        {"owner"},
    ),
}


@pytest.mark.parametrize("caller_name", CALLERS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_caller_gets_exactly_the_allowed_answer(operation: str, caller_name: str):
    organization = OrganizationFactory()
    member(organization, Role.OWNER)
    world = World(
        organization=organization,
        api_key=api_key_create(organization=organization, name="spare", scope=ApiKey.Scope.READ)[0],
        membership=Membership.objects.get(user=member(organization, Role.MARKETER)),
    )
    UserFactory(username="candidate")
    send, allowed_answer, allowed = OPERATIONS[operation]

    response = send(caller(organization, caller_name), world)

    expected = allowed_answer if caller_name in allowed else 403
    assert response.status_code == expected, response.content
    if expected == 403:
        assert response["Content-Type"] == "application/problem+json"
        world.api_key.refresh_from_db()
        world.membership.refresh_from_db()
        assert world.api_key.revoked_at is None and world.membership.role == Role.MARKETER
        assert Organization.objects.filter(pk=organization.pk, name=organization.name).exists()


def test_every_operation_on_keys_members_and_the_organization_is_in_the_matrix():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    prefixes = ("/api/v1/api-keys/", "/api/v1/members/", "/api/v1/organization/")
    operation_ids = {
        operation["operationId"]
        for path, operations in schema["paths"].items()
        if path.startswith(prefixes)
        for operation in operations.values()
    }

    assert operation_ids == set(OPERATIONS)
