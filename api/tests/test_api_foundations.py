"""The machinery every endpoint shares: credentials, organization scope, problems, idempotency."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from api.models import IdempotencyRecord
from api.tests.clients import key_client, role_client, user_client
from organizations.models import ApiKey, Membership
from organizations.services import api_key_create, api_key_revoke
from organizations.tests.factories import OrganizationFactory, member
from subscribers.models import Tag
from subscribers.tests.factories import TagFactory

pytestmark = pytest.mark.django_db

TAGS = "/api/v1/tags/"


def test_a_request_without_credentials_gets_a_401_problem():
    response = APIClient().get(TAGS)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 401 and body["type"].startswith("urn:emailseq:problem:")


def test_an_api_key_acts_in_its_own_organization():
    alpha, bravo = OrganizationFactory(), OrganizationFactory()
    TagFactory(organization=alpha, name="alpha-tag")
    TagFactory(organization=bravo, name="bravo-tag")
    names = [tag["name"] for tag in key_client(alpha).get(TAGS).json()["results"]]
    assert names == ["alpha-tag"]


def test_a_revoked_or_unknown_key_is_refused():
    organization = OrganizationFactory()
    api_key, raw = api_key_create(organization=organization, name="k", scope=ApiKey.Scope.READ)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get(TAGS).status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    api_key_revoke(api_key=api_key)
    assert client.get(TAGS).status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw[:-2]}xx")
    assert client.get(TAGS).status_code == 401


def test_the_key_secret_is_stored_only_as_a_hash():
    api_key, raw = api_key_create(organization=OrganizationFactory(), name="k", scope=ApiKey.Scope.READ)
    assert raw.startswith(f"esk_{api_key.prefix}_")
    assert raw not in api_key.key_hash and len(api_key.key_hash) == 64


def test_a_read_key_cannot_write():
    organization = OrganizationFactory()
    response = key_client(organization, ApiKey.Scope.READ).post(TAGS, {"name": "vip"}, format="json")
    assert response.status_code == 403
    assert not Tag.objects.exists()


def test_a_user_in_several_organizations_names_one():
    alpha, bravo = OrganizationFactory(slug="alpha"), OrganizationFactory(slug="bravo")
    user = member(alpha, Membership.Role.VIEWER)
    Membership.objects.create(user=user, organization=bravo, role=Membership.Role.VIEWER)
    TagFactory(organization=bravo, name="bravo-tag")
    response = user_client(user).get(TAGS)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "X-Organization"
    assert [t["name"] for t in user_client(user, bravo).get(TAGS).json()["results"]] == ["bravo-tag"]


def test_a_user_cannot_name_an_organization_they_do_not_belong_to():
    alpha, bravo = OrganizationFactory(), OrganizationFactory()
    user = member(alpha, Membership.Role.OWNER)
    assert user_client(user, bravo).get(TAGS).status_code == 404


def test_validation_errors_name_each_field():
    response = key_client(OrganizationFactory()).post(TAGS, {"name": ""}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:emailseq:problem:validation"
    assert [error["field"] for error in body["errors"]] == ["name"]


def test_a_taken_name_is_a_field_error_and_changes_nothing():
    organization = OrganizationFactory()
    TagFactory(organization=organization, name="vip")
    response = key_client(organization).post(TAGS, {"name": "vip"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "name"
    assert Tag.objects.filter(organization=organization).count() == 1


def test_an_unknown_api_route_is_a_404_problem():
    response = key_client(OrganizationFactory()).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_a_retried_create_with_the_same_idempotency_key_creates_once():
    organization = OrganizationFactory()
    client = key_client(organization)
    first = client.post(TAGS, {"name": "vip"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = client.post(TAGS, {"name": "vip"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Tag.objects.filter(organization=organization).count() == 1


def test_an_idempotency_key_reused_for_another_request_is_refused():
    client = key_client(OrganizationFactory())
    client.post(TAGS, {"name": "vip"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-2")
    response = client.post(TAGS, {"name": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-2")
    assert response.status_code == 422
    assert not Tag.objects.filter(name="other").exists()


def test_a_failed_create_stores_no_idempotency_record_so_it_can_be_retried():
    organization = OrganizationFactory()
    client = key_client(organization)
    assert client.post(TAGS, {"name": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 400
    assert not IdempotencyRecord.objects.exists()
    assert client.post(TAGS, {"name": "ok"}, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201


def test_idempotency_keys_are_private_to_their_caller():
    organization = OrganizationFactory()
    one, two = key_client(organization), key_client(organization)
    assert one.post(TAGS, {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="same").status_code == 201
    assert two.post(TAGS, {"name": "b"}, format="json", HTTP_IDEMPOTENCY_KEY="same").status_code == 201
    assert Tag.objects.filter(organization=organization).count() == 2


def test_roles_below_marketer_cannot_write():
    organization = OrganizationFactory()
    assert role_client(organization, Membership.Role.VIEWER).post(TAGS, {"name": "x"}, format="json").status_code == 403
    assert (
        role_client(organization, Membership.Role.MARKETER).post(TAGS, {"name": "x"}, format="json").status_code == 201
    )


def test_a_user_signs_in_for_a_jwt_pair_and_refreshes_it():
    organization = OrganizationFactory()
    member(organization, Membership.Role.VIEWER, username="vera")
    anonymous = APIClient()
    pair = anonymous.post("/api/v1/auth/token/", {"username": "vera", "password": "password"}, format="json")
    assert pair.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.json()['access']}")
    assert client.get(TAGS).status_code == 200
    refreshed = anonymous.post("/api/v1/auth/token/refresh/", {"refresh": pair.json()["refresh"]}, format="json")
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_a_wrong_password_gets_a_401_problem():
    organization = OrganizationFactory()
    member(organization, Membership.Role.VIEWER, username="vera")
    response = APIClient().post("/api/v1/auth/token/", {"username": "vera", "password": "nope"}, format="json")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_a_forged_bearer_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
    assert client.get(TAGS).status_code == 401


def test_the_browser_session_works_and_its_writes_need_the_csrf_token():
    organization = OrganizationFactory()
    user = member(organization, Membership.Role.MARKETER)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(TAGS).status_code == 200
    refused = client.post(TAGS, {"name": "vip"}, format="json")
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/problem+json"
    assert not Tag.objects.exists()
    token = "a" * 32  # a browser's CSRF cookie, echoed in the header as the app's pages do
    client.cookies["csrftoken"] = token
    assert client.post(TAGS, {"name": "vip"}, format="json", HTTP_X_CSRFTOKEN=token).status_code == 201


def test_old_idempotency_records_expire(settings):
    import datetime as dt

    from django.utils import timezone

    from api.idempotency import idempotency_records_expire

    client = key_client(OrganizationFactory())
    client.post(TAGS, {"name": "vip"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    later = timezone.now() + dt.timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS, minutes=1)
    assert idempotency_records_expire(now=later) == 1
    assert not IdempotencyRecord.objects.exists()


def test_the_schema_and_the_interactive_docs_are_served_without_outside_assets():
    schema = APIClient().get("/api/schema/?format=json")
    assert schema.status_code == 200
    assert "/api/v1/tags/" in schema.json()["paths"]
    docs = APIClient().get("/api/docs/")
    assert docs.status_code == 200
    assert "cdn." not in docs.content.decode()


def test_an_answer_echoing_nul_or_lone_surrogates_is_still_kept_for_replay():
    client = key_client(OrganizationFactory())
    # Escaped on the wire, as a JSON client sends them.
    rows = json.dumps({"contacts": [{"email": "bad\u0000one"}, {"email": "\ud800x"}, {"email": "good@example.com"}]})
    first = client.post("/api/v1/contacts/bulk/", rows, content_type="application/json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert first.status_code in (200, 201)
    assert [row["result"] for row in first.json()["results"]] == ["rejected", "rejected", "created"]
    again = client.post("/api/v1/contacts/bulk/", rows, content_type="application/json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert again["Idempotent-Replayed"] == "true"
    assert [row["result"] for row in again.json()["results"]] == ["rejected", "rejected", "created"]
