"""Tenancy, route by route: a caller of organization Bravo reaches nothing of organization Alpha.

The routes come from the URL configuration. Every route must have an entry in ROUTES, which
says how Alpha's ids can be smuggled into a request body or query of that route; a new route
without an entry fails `test_every_api_route_has_an_entry`. For each operation:
- with Alpha's ids in the path, Bravo's owner (JWT) and Bravo's write key get 404;
- with Bravo's own ids in the path but Alpha's ids in the body or query, they get 404 too;
- lists answer Bravo's rows only;
and in every case Alpha's data is left exactly as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from api.tests.api_world import ApiWorld, build_api_world
from api.tests.clients import key_client, user_client
from api.tests.routes import Operation, api_operations
from organizations.models import ApiKey, Organization

Ids = dict[str, int]


@dataclass(frozen=True)
class Walk:
    # method -> request body made with the OTHER organization's ids (sent on the caller's own path)
    body: dict[str, Callable[[Ids], dict[str, Any]]] = field(default_factory=dict)
    # method -> query parameters made with the other organization's ids
    query: dict[str, Callable[[Ids], dict[str, Any]]] = field(default_factory=dict)
    multipart: bool = False


def _csv_upload(ids: Ids) -> dict[str, Any]:
    return {"file": SimpleUploadedFile("c.csv", b"email\nnew@bravo.example\n"), "list_id": ids["list_id"]}


ROUTES: dict[str, Walk] = {
    "api:tag-collection": Walk(),
    "api:tag-item": Walk(),
    "api:contact-collection": Walk(
        body={
            "POST": lambda ids: {"email": "new@bravo.example", "list_ids": [ids["list_id"]], "tag_ids": [ids["tag_id"]]}
        },
        query={"GET": lambda ids: {"list_id": ids["list_id"]}},
    ),
    "api:contact-lookup": Walk(),
    "api:contact-bulk": Walk(
        body={
            "POST": lambda ids: {
                "contacts": [{"email": "new@bravo.example"}],
                "list_ids": [ids["list_id"]],
                "tag_ids": [ids["tag_id"]],
            }
        }
    ),
    "api:contact-item": Walk(),
    "api:contact-tags": Walk(
        body={"POST": lambda ids: {"tag_ids": [ids["tag_id"]]}},
        query={"DELETE": lambda ids: {"tag_ids": ids["tag_id"]}},
    ),
    "api:contact-lists": Walk(
        body={"POST": lambda ids: {"list_ids": [ids["list_id"]]}},
        query={"DELETE": lambda ids: {"list_ids": ids["list_id"]}},
    ),
    "api:contact-messages": Walk(),
    "api:contact-events": Walk(),
    "api:contact-gdpr-export": Walk(),
    "api:contact-erase": Walk(),
    "api:contact-unsubscribe": Walk(),
    "api:contact-consent": Walk(),
    "api:subscribe-form-collection": Walk(
        body={"POST": lambda ids: {"name": "Bravo form", "consent_wording": "Yes", "list_id": ids["list_id"]}}
    ),
    "api:subscribe-form-item": Walk(
        body={
            "PUT": lambda ids: {"name": "Bravo form", "consent_wording": "Yes", "list_id": ids["list_id"]},
            "PATCH": lambda ids: {"list_id": ids["list_id"]},
        }
    ),
    "api:list-collection": Walk(),
    "api:list-item": Walk(),
    "api:list-contacts": Walk(),
    "api:event-collection": Walk(
        body={"POST": lambda ids: {"contact_id": ids["contact_id"], "name": "bravo-event"}},
        query={"GET": lambda ids: {"contact_id": ids["contact_id"]}},
    ),
    "api:contact-export": Walk(query={"GET": lambda ids: {"list_id": ids["list_id"]}}),
    "api:import-collection": Walk(body={"POST": _csv_upload}, multipart=True),
    "api:import-item": Walk(),
    "api:import-rejection-collection": Walk(),
    "api:sequence-collection": Walk(
        body={
            "POST": lambda ids: {
                "name": "new sequence",
                "from_email": "news@bravo.example",
                "steps": [{"kind": "email", "template_id": ids["template_id"]}],
            }
        }
    ),
    "api:sequence-item": Walk(
        body={
            "PUT": lambda ids: {
                "name": "renamed",
                "from_email": "news@bravo.example",
                "steps": [{"kind": "email", "template_id": ids["template_id"]}],
            }
        }
    ),
    "api:sequence-activate": Walk(),
    "api:sequence-pause": Walk(),
    "api:sequence-archive": Walk(),
    "api:sequence-subscribers": Walk(body={"POST": lambda ids: {"contact_ids": [ids["contact_id"]]}}),
    "api:sequence-analytics": Walk(),
    "api:customer-cohorts": Walk(query={"GET": lambda ids: {"basis": "enrollment", "sequence_id": ids["sequence_id"]}}),
    "api:customer-rfm": Walk(),
    "api:experiment-item": Walk(
        body={
            "PUT": lambda ids: {
                "sample_size_per_variant": 100,
                "variants": [{"name": "A"}, {"name": "B", "template_id": ids["template_id"]}],
            }
        }
    ),
    "api:experiment-results": Walk(),
    "api:experiment-sample-size": Walk(),
    "api:customer-lifetime-value": Walk(),
    "api:customer-attribution": Walk(query={"GET": lambda ids: {"sequence_id": ids["sequence_id"]}}),
    "api:template-collection": Walk(),
    "api:template-item": Walk(),
    "api:template-preview": Walk(body={"POST": lambda ids: {"contact_id": ids["contact_id"]}}),
    "api:template-test-send": Walk(
        body={"POST": lambda ids: {"to": "tester@bravo.example", "contact_id": ids["contact_id"]}}
    ),
    # Keys and members belong to the organization of the caller; no other organization's ids
    # can be named in their bodies (members are added by username or email).
    "api:api-key-collection": Walk(),
    "api:api-key-item": Walk(),
    "api:api-key-revoke": Walk(),
    "api:member-collection": Walk(),
    "api:member-item": Walk(),
    "api:organization": Walk(),
    "api:delivery-route-collection": Walk(),
    "api:delivery-route-item": Walk(),
    "api:delivery-route-reset": Walk(),
    "api:sending-domain-collection": Walk(),
    "api:sending-domain-item": Walk(),
    "api:sending-domain-verify": Walk(),
}

OPERATIONS = api_operations()


def _ids(operation: Operation) -> str:
    return operation.label


@pytest.fixture
def alpha(db: None) -> ApiWorld:
    return build_api_world("alpha")


@pytest.fixture
def bravo(db: None) -> ApiWorld:
    return build_api_world("bravo")


def organization_fingerprint(organization: Organization) -> str:
    """A digest of every row of the organization (and of its contacts' lists and tags)."""
    digest = hashlib.sha256()
    for model in sorted(apps.get_models(), key=lambda model: model._meta.label):
        if not any(field.name == "organization" for field in model._meta.fields):
            continue
        # When a key was last used is a hint that every authenticated call may move.
        rows = model.objects.filter(organization=organization).order_by("pk").values()
        rows = [{name: value for name, value in row.items() if name != "last_used_at"} for row in rows]
        digest.update(f"{model._meta.label}:{list(rows)!r}".encode())
    contacts = apps.get_model("subscribers", "Contact").objects.filter(organization=organization)
    for contact in contacts.order_by("pk").prefetch_related("lists", "tags"):
        digest.update(
            f"{contact.pk}:{sorted(item.pk for item in contact.lists.all())}:{sorted(item.pk for item in contact.tags.all())}".encode()
        )
    digest.update(repr(Organization.objects.filter(pk=organization.pk).values().first()).encode())
    return digest.hexdigest()


def _path(operation: Operation, ids: Ids) -> str:
    return reverse(operation.name, kwargs={name: ids[name] for name in operation.parameters})


def _send(client: APIClient, operation: Operation, path: str, body: dict | None, query: dict | None) -> Any:
    if query:
        path = f"{path}?" + "&".join(f"{key}={value}" for key, value in query.items())
    send = getattr(client, operation.method.lower())
    if operation.method == "GET":
        return send(path)
    walk = ROUTES.get(operation.name, Walk())
    return send(path, body or {}, format="multipart" if walk.multipart else "json")


def _text(response: Any) -> str:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body.decode().lower()


def _expected(who: str, operation: Operation) -> int:
    # Keys never manage keys, members, the organization, its sending domains or delivery routes:
    # refused before any lookup.
    manages = operation.name.startswith(("api:api-key", "api:member", "api:organization")) or (
        operation.name.startswith(("api:sending-domain", "api:delivery-route")) and operation.method != "GET"
    )
    return (
        403
        if who == "write key" and manages and (operation.name, operation.method) != ("api:organization", "GET")
        else 404
    )


def _bravo_clients(bravo: ApiWorld) -> list[tuple[str, APIClient]]:
    return [
        ("owner", user_client(bravo.owner, bravo.organization)),
        ("write key", key_client(bravo.organization, ApiKey.Scope.WRITE)),
    ]


def test_every_api_route_has_an_entry() -> None:
    names = {operation.name for operation in OPERATIONS}
    assert not [name for name in names if name.startswith("<unnamed")], "name every API route"
    assert sorted(names - set(ROUTES)) == [], "add these routes to ROUTES in this file"
    assert sorted(set(ROUTES) - names) == [], "these ROUTES entries name no route any more"


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op.parameters], ids=_ids)
def test_the_other_organizations_ids_in_the_path_answer_404(operation: Operation, alpha: ApiWorld, bravo: ApiWorld):
    before = organization_fingerprint(alpha.organization)
    walk = ROUTES.get(operation.name, Walk())
    for who, client in _bravo_clients(bravo):
        body = walk.body[operation.method](bravo.ids) if operation.method in walk.body else None
        query = walk.query[operation.method](bravo.ids) if operation.method in walk.query else None
        response = _send(client, operation, _path(operation, alpha.ids), body, query)
        assert response.status_code == _expected(who, operation), f"{who}: {operation.label}: {response.status_code}"
        assert "alpha" not in _text(response)
    assert organization_fingerprint(alpha.organization) == before


BODY_OPERATIONS = [
    op
    for op in OPERATIONS
    if op.method in ROUTES.get(op.name, Walk()).body or op.method in ROUTES.get(op.name, Walk()).query
]


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=_ids)
def test_the_other_organizations_ids_in_a_body_or_query_answer_404(
    operation: Operation, alpha: ApiWorld, bravo: ApiWorld
):
    before = organization_fingerprint(alpha.organization)
    walk = ROUTES[operation.name]
    for who, client in _bravo_clients(bravo):
        body = walk.body[operation.method](alpha.ids) if operation.method in walk.body else None
        query = walk.query[operation.method](alpha.ids) if operation.method in walk.query else None
        response = _send(client, operation, _path(operation, bravo.ids), body, query)
        assert response.status_code == _expected(who, operation), f"{who}: {operation.label}: {response.status_code}"
        assert "alpha" not in _text(response)
    assert organization_fingerprint(alpha.organization) == before


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op.method == "GET"], ids=_ids)
def test_reads_show_nothing_of_the_other_organization(operation: Operation, alpha: ApiWorld, bravo: ApiWorld):
    for who, client in _bravo_clients(bravo):
        query = {"email": alpha.emails[0]} if operation.name == "api:contact-lookup" else None
        if operation.name == "api:experiment-sample-size":
            query = {"baseline_rate": 0.05, "minimum_detectable_effect": 0.01}
        response = _send(client, operation, _path(operation, bravo.ids), None, query)
        # Lifetime value answers 422 when an organization has too few repeat customers to fit.
        allowed = (200, 403, 404, 422) if operation.name == "api:customer-lifetime-value" else (200, 403, 404)
        assert response.status_code in allowed, f"{who}: {operation.label} answered {response.status_code}"
        assert "alpha" not in _text(response), f"{who}: {operation.label} shows alpha's data"
