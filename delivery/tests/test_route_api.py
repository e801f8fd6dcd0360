"""Delivery routes over the API: admins create, change, reset and delete them; everyone in the
organization reads them with their secrets masked; the state the send path writes is read-only;
a url that is not a route is a field error."""

from __future__ import annotations

import pytest
from django.utils import timezone

from api.tests.clients import role_client
from delivery import routing
from delivery.models import DeliveryRoute
from delivery.tests.factories import DeliveryRouteFactory
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

ROUTES = "/api/v1/delivery-routes/"


def test_a_route_is_created_with_its_secrets_kept_and_never_shown() -> None:
    organization = OrganizationFactory()
    client = role_client(organization, Membership.Role.ADMIN)

    created = client.post(
        ROUTES,
        {"name": "relay", "url": "smtp://mailer:s3cret@relay.example.com:587?security=starttls", "per_second": 20},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["url"] == "smtp://mailer:********@relay.example.com:587?security=starttls"
    assert (body["kind"], body["per_second"], body["circuit"], body["rate_factor"]) == ("smtp", 20, "closed", 1.0)
    route = DeliveryRoute.objects.get(pk=body["id"])
    assert route.url == "smtp://mailer:s3cret@relay.example.com:587?security=starttls"
    assert route.organization == organization
    assert "s3cret" not in client.get(ROUTES).content.decode()
    assert "s3cret" not in client.get(f"{ROUTES}{route.pk}/").content.decode()


@pytest.mark.parametrize(
    ("url", "kind", "shown"),
    [
        ("postmark://server-token-123@", "anymail", "postmark://********@"),
        ("mailjet://public:private@", "anymail", "mailjet://********:********@"),
        (
            "mailgun://key-abc@?sender_domain=mg.example.com",
            "anymail",
            "mailgun://********@?sender_domain=mg.example.com",
        ),
        ("amazon-ses://?access_key_id=AKIA1&secret_access_key=xyz&region_name=eu-west-1", "anymail", None),
        ("capture://", "capture", "capture://"),
    ],
)
def test_provider_routes_hide_their_keys(url: str, kind: str, shown: str | None) -> None:
    client = role_client(OrganizationFactory(), Membership.Role.ADMIN)

    created = client.post(ROUTES, {"name": "provider", "url": url}, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["kind"] == kind
    if shown is not None:
        assert created.json()["url"] == shown
    for secret in ("server-token-123", "private", "public", "key-abc", "AKIA1", "xyz"):
        assert secret not in created.json()["url"]


@pytest.mark.parametrize(
    "url",
    ["ftp://files.example.com", "smtp://", "smtp://relay.example.com:99999", "console://", "smtp://[broken", "x"],
)
def test_a_url_that_is_not_a_route_is_a_field_error(url: str) -> None:
    client = role_client(OrganizationFactory(), Membership.Role.ADMIN)

    response = client.post(ROUTES, {"name": "bad", "url": url}, format="json")

    assert response.status_code == 400, response.content
    assert [error["field"] for error in response.json()["errors"]] == ["url"]
    assert not DeliveryRoute.objects.exists()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mailgun://k@?sender_domain=x.example&api_url=http://10.0.0.5:8080/", "api_url cannot be set on a route"),
        ("postmark://?message_stream=outbound", "carries its own credentials"),
    ],
)
def test_a_provider_option_a_route_may_not_set_is_a_field_error(url: str, words: str) -> None:
    client = role_client(OrganizationFactory(), Membership.Role.ADMIN)

    response = client.post(ROUTES, {"name": "provider", "url": url}, format="json")

    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["field"] == "url" and words in error["message"]
    assert not DeliveryRoute.objects.exists()


def test_an_smtp_host_that_is_not_public_is_a_field_error(settings) -> None:
    settings.ROUTE_ALLOW_PRIVATE_HOSTS = False
    client = role_client(OrganizationFactory(), Membership.Role.ADMIN)

    response = client.post(ROUTES, {"name": "scan", "url": "smtp://10.0.0.5:6379"}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["message"] == "10.0.0.5 resolves to 10.0.0.5, which is not a public address"


def test_sending_back_the_masked_url_keeps_the_secret_and_state_fields_are_read_only() -> None:
    organization = OrganizationFactory()
    route = DeliveryRouteFactory(organization=organization, url="smtp://mailer:s3cret@relay.example.com:2525")
    client = role_client(organization, Membership.Role.OWNER)
    shown = client.get(f"{ROUTES}{route.pk}/").json()

    replaced = client.put(
        f"{ROUTES}{route.pk}/", {**shown, "priority": 7, "circuit": "open", "rate_factor": 0.1}, format="json"
    )

    assert replaced.status_code == 200, replaced.content
    route.refresh_from_db()
    assert route.url == "smtp://mailer:s3cret@relay.example.com:2525"
    assert (route.priority, route.circuit, route.rate_factor) == (7, DeliveryRoute.Circuit.CLOSED, 1.0)
    patched = client.patch(f"{ROUTES}{route.pk}/", {"url": "smtp://other.example.com"}, format="json")
    assert patched.json()["url"] == "smtp://other.example.com"


def test_a_schedule_without_a_start_starts_the_warm_up_now() -> None:
    client = role_client(OrganizationFactory(), Membership.Role.ADMIN)
    before = timezone.now()

    created = client.post(ROUTES, {"name": "new ip", "url": "capture://", "warmup_schedule": [50, 100]}, format="json")

    route = DeliveryRoute.objects.get(pk=created.json()["id"])
    assert route.warmup_schedule == [50, 100] and route.warmup_started_at >= before


def test_reset_closes_the_circuit_and_restores_the_full_rate() -> None:
    organization = OrganizationFactory()
    route = DeliveryRouteFactory(organization=organization)
    for _ in range(5):
        routing.route_failed(route=route, error="421 4.7.0 rate limited", throttled=True, now=timezone.now())
    assert DeliveryRoute.objects.get(pk=route.pk).circuit == DeliveryRoute.Circuit.OPEN

    response = role_client(organization, Membership.Role.ADMIN).post(f"{ROUTES}{route.pk}/reset/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["circuit"], body["failures_in_a_row"], body["probe_at"], body["throttled_until"]) == (
        "closed",
        0,
        None,
        None,
    )
    assert body["rate_factor"] == 1.0 and "rate limited" in body["last_error"]


def test_marketers_read_routes_and_only_admins_change_them() -> None:
    organization = OrganizationFactory()
    route = DeliveryRouteFactory(organization=organization, name="relay")
    marketer = role_client(organization, Membership.Role.MARKETER)

    assert [item["name"] for item in marketer.get(ROUTES).json()["results"]] == ["relay"]
    assert marketer.post(ROUTES, {"name": "mine", "url": "capture://"}, format="json").status_code == 403
    assert marketer.post(f"{ROUTES}{route.pk}/reset/").status_code == 403
    assert marketer.delete(f"{ROUTES}{route.pk}/").status_code == 403
    assert DeliveryRoute.objects.filter(pk=route.pk).exists()


def test_a_name_taken_in_the_organization_is_a_field_error() -> None:
    organization = OrganizationFactory()
    DeliveryRouteFactory(organization=organization, name="relay")
    other = DeliveryRouteFactory(organization=organization, name="backup")
    DeliveryRouteFactory(name="elsewhere")
    client = role_client(organization, Membership.Role.ADMIN)

    for response in (
        client.post(ROUTES, {"name": "relay", "url": "capture://"}, format="json"),
        client.patch(f"{ROUTES}{other.pk}/", {"name": "relay"}, format="json"),
    ):
        assert response.status_code == 400
        assert [error["field"] for error in response.json()["errors"]] == ["name"]
    assert client.post(ROUTES, {"name": "elsewhere", "url": "capture://"}, format="json").status_code == 201
