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
    ("api:contact-collection", "GET"): READ,
    ("api:contact-collection", "POST"): WRITE,
    ("api:contact-lookup", "GET"): READ,
    ("api:contact-bulk", "POST"): WRITE,
    ("api:contact-item", "GET"): READ,
    ("api:contact-item", "PUT"): WRITE,
    ("api:contact-item", "PATCH"): WRITE,
    ("api:contact-item", "DELETE"): WRITE,
    ("api:contact-tags", "POST"): WRITE,
    ("api:contact-tags", "DELETE"): WRITE,
    ("api:contact-lists", "POST"): WRITE,
    ("api:contact-lists", "DELETE"): WRITE,
    ("api:contact-messages", "GET"): READ,
    ("api:contact-events", "GET"): READ,
    ("api:contact-gdpr-export", "GET"): READ,
    ("api:contact-erase", "POST"): WRITE,
    ("api:contact-unsubscribe", "POST"): WRITE,
    ("api:contact-consent", "GET"): READ,
    ("api:subscribe-form-collection", "GET"): READ,
    ("api:subscribe-form-collection", "POST"): WRITE,
    ("api:subscribe-form-item", "GET"): READ,
    ("api:subscribe-form-item", "PUT"): WRITE,
    ("api:subscribe-form-item", "PATCH"): WRITE,
    ("api:subscribe-form-item", "DELETE"): WRITE,
    ("api:list-collection", "GET"): READ,
    ("api:list-collection", "POST"): WRITE,
    ("api:list-item", "GET"): READ,
    ("api:list-item", "PUT"): WRITE,
    ("api:list-item", "PATCH"): WRITE,
    ("api:list-item", "DELETE"): WRITE,
    ("api:list-contacts", "GET"): READ,
    ("api:event-collection", "GET"): READ,
    ("api:event-collection", "POST"): WRITE,
    ("api:contact-export", "GET"): READ,
    ("api:import-collection", "GET"): READ,
    ("api:import-collection", "POST"): WRITE,
    ("api:import-item", "GET"): READ,
    ("api:import-rejection-collection", "GET"): READ,
    ("api:sequence-collection", "GET"): READ,
    ("api:sequence-collection", "POST"): WRITE,
    ("api:sequence-item", "GET"): READ,
    ("api:sequence-item", "PUT"): WRITE,
    ("api:sequence-item", "PATCH"): WRITE,
    ("api:sequence-item", "DELETE"): WRITE,
    ("api:sequence-activate", "POST"): WRITE,
    ("api:sequence-pause", "POST"): WRITE,
    ("api:sequence-archive", "POST"): WRITE,
    ("api:sequence-subscribers", "GET"): READ,
    ("api:sequence-subscribers", "POST"): WRITE,
    ("api:sequence-analytics", "GET"): READ,
    ("api:customer-cohorts", "GET"): READ,
    ("api:experiment-item", "GET"): READ,
    ("api:experiment-item", "PUT"): WRITE,
    ("api:experiment-item", "DELETE"): WRITE,
    ("api:experiment-results", "GET"): READ,
    ("api:experiment-sample-size", "GET"): READ,
    ("api:customer-rfm", "GET"): READ,
    ("api:customer-lifetime-value", "GET"): READ,
    ("api:customer-attribution", "GET"): READ,
    ("api:template-collection", "GET"): READ,
    ("api:template-collection", "POST"): WRITE,
    ("api:template-item", "GET"): READ,
    ("api:template-item", "PUT"): WRITE,
    ("api:template-item", "PATCH"): WRITE,
    ("api:template-item", "DELETE"): WRITE,
    ("api:template-preview", "POST"): READ,
    ("api:template-test-send", "POST"): WRITE,
    ("api:api-key-collection", "GET"): MANAGE,
    ("api:api-key-collection", "POST"): MANAGE,
    ("api:api-key-item", "GET"): MANAGE,
    ("api:api-key-item", "DELETE"): MANAGE,
    ("api:api-key-revoke", "POST"): MANAGE,
    ("api:member-collection", "GET"): MANAGE,
    ("api:member-collection", "POST"): MANAGE,
    ("api:member-item", "GET"): MANAGE,
    ("api:member-item", "PATCH"): MANAGE,
    ("api:member-item", "DELETE"): MANAGE,
    ("api:organization", "GET"): READ,
    ("api:organization", "PATCH"): MANAGE,
    ("api:organization", "DELETE"): OWN,
    ("api:delivery-route-collection", "GET"): READ,
    ("api:delivery-route-collection", "POST"): MANAGE,
    ("api:delivery-route-item", "GET"): READ,
    ("api:delivery-route-item", "PUT"): MANAGE,
    ("api:delivery-route-item", "PATCH"): MANAGE,
    ("api:delivery-route-item", "DELETE"): MANAGE,
    ("api:delivery-route-reset", "POST"): MANAGE,
    ("api:sending-domain-collection", "GET"): READ,
    ("api:sending-domain-collection", "POST"): MANAGE,
    ("api:sending-domain-item", "GET"): READ,
    ("api:sending-domain-item", "DELETE"): MANAGE,
    ("api:sending-domain-verify", "POST"): MANAGE,
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
