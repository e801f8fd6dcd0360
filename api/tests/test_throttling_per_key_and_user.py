"""Throttling: each API key and each user has a budget of its own; over it, 429 with Retry-After
and a problem body, while other keys and users go on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from api.tests.clients import key_client, role_client
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

TAGS = "/api/v1/tags/"


@pytest.fixture(autouse=True)
def small_budgets(settings) -> Iterator[None]:
    rates = {"api_key": "3/minute", "user": "2/minute", "anonymous": "4/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    cache.clear()
    yield
    cache.clear()


def answers(client: APIClient, count: int) -> list[int]:
    return [client.get(TAGS).status_code for _ in range(count)]


def assert_throttled(client: APIClient) -> None:
    response = client.get(TAGS)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/problem+json"
    assert 1 <= int(response["Retry-After"]) <= 60
    body = response.json()
    assert body["status"] == 429 and body["type"] == "urn:emailseq:problem:throttled"
    assert 1 <= body["retry_after"] <= 60


def test_a_key_over_its_budget_gets_429_while_another_key_goes_on():
    organization = OrganizationFactory()
    busy, other = key_client(organization), key_client(organization)

    assert answers(busy, 3) == [200, 200, 200]
    assert_throttled(busy)
    assert answers(other, 3) == [200, 200, 200]


def test_a_user_over_their_budget_gets_429_while_another_user_and_the_keys_go_on():
    organization = OrganizationFactory()
    busy, other = role_client(organization, Membership.Role.VIEWER), role_client(organization, Membership.Role.VIEWER)
    api_key = key_client(organization)

    assert answers(busy, 2) == [200, 200]
    assert_throttled(busy)
    assert answers(other, 2) == [200, 200]
    assert answers(api_key, 3) == [200, 200, 200]


def test_the_budget_follows_the_key_not_the_address_it_calls_from():
    organization = OrganizationFactory()
    client = key_client(organization)

    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        assert client.get(TAGS, REMOTE_ADDR=address).status_code == 200
    assert client.get(TAGS, REMOTE_ADDR="198.51.100.4").status_code == 429


def test_anonymous_callers_of_the_token_endpoint_are_throttled_by_address():
    client = APIClient()

    def guess(number: int, **extra: str) -> int:
        credentials = {"username": f"guess{number}", "password": "wrong"}
        return client.post("/api/v1/auth/token/", credentials, format="json", **extra).status_code

    assert [guess(number) for number in range(4)] == [401] * 4
    assert guess(4) == 429
    assert guess(5, REMOTE_ADDR="198.51.100.9") == 401
