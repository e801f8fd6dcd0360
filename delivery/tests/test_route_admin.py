"""Staff see each route's state in the admin and can reset its circuit; its url's secrets are
never shown, and saving the form with the masked url keeps them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from delivery import routing
from delivery.models import DeliveryRoute
from delivery.tests.factories import DeliveryRouteFactory
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory, member

pytestmark = pytest.mark.django_db

SECRET_URL = "smtp://mailer:s3cret@relay.example.com:2525"


def form_data(route: DeliveryRoute, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "organization": route.organization_id,
        "name": route.name,
        "url": routing.url_masked(route.url),
        "priority": route.priority,
        "is_active": "on",
        "warmup_schedule": "[]",
    }
    data.update(changes)
    return data


def test_the_change_page_shows_the_state_and_never_the_secret(client: Client) -> None:
    route = DeliveryRouteFactory(url=SECRET_URL, name="relay")
    routing.route_failed(route=route, error="421 4.3.2 closing", throttled=False, now=timezone.now())
    for role in (Membership.Role.ADMIN, Membership.Role.VIEWER):
        client.force_login(member(route.organization, role))

        page = client.get(reverse("admin:delivery_deliveryroute_change", args=[route.pk]))

        text = page.content.decode()
        assert page.status_code == 200
        assert "s3cret" not in text
        assert "421 4.3.2 closing" in text
        assert "relay.example.com" in text


def test_saving_with_the_masked_url_keeps_the_secret_and_a_bad_url_is_refused(client: Client) -> None:
    route = DeliveryRouteFactory(url=SECRET_URL, priority=1)
    client.force_login(member(route.organization, Membership.Role.ADMIN))
    change = reverse("admin:delivery_deliveryroute_change", args=[route.pk])

    saved = client.post(change, form_data(route, priority=4))
    refused = client.post(change, form_data(route, url="ftp://files.example.com"))

    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert "unsupported scheme" in refused.content.decode()
    route.refresh_from_db()
    assert (route.url, route.priority, route.kind) == (SECRET_URL, 4, "smtp")


def test_the_reset_action_closes_the_circuits_of_the_chosen_routes(client: Client) -> None:
    organization = OrganizationFactory()
    route = DeliveryRouteFactory(organization=organization)
    for _ in range(3):
        routing.route_failed(route=route, error="connection refused", throttled=True, now=timezone.now())
    client.force_login(member(organization, Membership.Role.ADMIN))

    response = client.post(
        reverse("admin:delivery_deliveryroute_changelist"),
        {"action": "reset_circuits", "_selected_action": [route.pk]},
    )

    assert response.status_code == 302
    route.refresh_from_db()
    assert (route.circuit, route.failures_in_a_row, route.rate_factor) == (DeliveryRoute.Circuit.CLOSED, 0, 1.0)
