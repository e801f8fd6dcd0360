"""Each role against each operation gets exactly the allowed answers.

REQUIRED is the specification: the least access each operation needs. Roles climb a ladder
(viewer < marketer < admin < owner); a read key acts as a viewer, a write key as a marketer, and
keys never manage keys, members or the organization. An allowed caller may still get 400 or 404
(the requests carry no body), but never 401 or 403; a refused caller gets 403 and changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from api.permissions import Access
from api.tests.api_world import ApiWorld, build_api_world
from api.tests.clients import key_client, user_client
from api.tests.routes import Operation, api_operations
from api.tests.test_tenancy_of_every_route import organization_fingerprint
from organizations.models import ApiKey
from organizations.tests.factories import member

READ, WRITE, MANAGE, OWN = Access.READ, Access.WRITE, Access.MANAGE, Access.OWN

REQUIRED: dict[tuple[str, str], Access] = {
    ("api:tag-collection", "GET"): READ,
    ("api:tag-collection", "POST"): WRITE,
    ("api:tag-item", "GET"): READ,
    ("api:tag-item", "PUT"): WRITE,
    ("api:tag-item", "DELETE"): WRITE,
}

CALLERS: dict[str, Access] = {
    "viewer": READ,
    "marketer": WRITE,
    "admin": MANAGE,
    "owner": OWN,
    "read key": READ,
    "write key": WRITE,
}

OPERATIONS = api_operations()


def _client(world: ApiWorld, caller: str) -> APIClient:
    if caller.endswith("key"):
        return key_client(world.organization, ApiKey.Scope.READ if caller == "read key" else ApiKey.Scope.WRITE)
    user = world.owner if caller == "owner" else member(world.organization, caller)
    return user_client(user, world.organization)


def _call(client: APIClient, operation: Operation, world: ApiWorld) -> Any:
    path = reverse(operation.name, kwargs={name: world.ids[name] for name in operation.parameters})
    send = getattr(client, operation.method.lower())
    return send(path) if operation.method == "GET" else send(path, {}, format="json")


def test_every_operation_has_a_required_role() -> None:
    operations = {(operation.name, operation.method) for operation in OPERATIONS}
    assert sorted(operations - set(REQUIRED)) == [], "add these operations to REQUIRED in this file"
    assert sorted(set(REQUIRED) - operations) == [], "these REQUIRED entries name no operation any more"


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_each_role_gets_exactly_the_allowed_answer(operation: Operation, caller: str, db: None) -> None:
    world = build_api_world("alpha")
    required = REQUIRED[(operation.name, operation.method)]
    allowed = CALLERS[caller] >= required and not (caller.endswith("key") and required > WRITE)
    client = _client(world, caller)
    before = organization_fingerprint(world.organization)

    response = _call(client, operation, world)

    if allowed:
        assert response.status_code not in (401, 403), f"{caller} was refused {operation.label}: {response.content!r}"
    else:
        assert response.status_code == 403, f"{caller} got {response.status_code} for {operation.label}"
        assert response["Content-Type"] == "application/problem+json"
        assert organization_fingerprint(world.organization) == before
