"""Staff add a sending domain in the admin by its name alone (the keys are made for them), see
the records to publish and the last check, never a private key, and can check DNS now."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from deliverability.models import SendingDomain
from deliverability.tests.factories import SendingDomainFactory
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory, member

pytestmark = pytest.mark.django_db


def test_adding_a_domain_makes_its_keys(client: Client) -> None:
    organization = OrganizationFactory()
    client.force_login(member(organization, Membership.Role.ADMIN))

    response = client.post(
        reverse("admin:deliverability_sendingdomain_add"), {"organization": organization.pk, "domain": "Shop.Example"}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    sending_domain = SendingDomain.objects.get(organization=organization)
    assert sending_domain.domain == "shop.example"
    assert "BEGIN RSA PRIVATE KEY" in sending_domain.dkim_private_key_rsa
    assert sending_domain.dkim_public_key_ed25519


def test_an_invalid_or_taken_domain_is_refused_on_the_form(client: Client) -> None:
    organization = OrganizationFactory()
    SendingDomainFactory(organization=organization, domain="shop.example")
    client.force_login(member(organization, Membership.Role.ADMIN))
    add = reverse("admin:deliverability_sendingdomain_add")

    taken = client.post(add, {"organization": organization.pk, "domain": "SHOP.example."})
    invalid = client.post(add, {"organization": organization.pk, "domain": "not a domain"})

    assert "shop.example is already a sending domain" in taken.content.decode()
    assert "is not a valid domain name" in invalid.content.decode()
    assert SendingDomain.objects.filter(organization=organization).count() == 1


def test_the_change_page_shows_records_and_never_a_private_key(client: Client) -> None:
    sending_domain = SendingDomainFactory()
    client.force_login(member(sending_domain.organization, Membership.Role.VIEWER))

    page = client.get(reverse("admin:deliverability_sendingdomain_change", args=[sending_domain.pk]))

    text = page.content.decode()
    assert page.status_code == 200
    assert sending_domain.dkim_public_key_ed25519 in text
    assert "PRIVATE KEY" not in text
    assert sending_domain.dkim_private_key_ed25519 not in text
    assert "Not checked yet." in text


def test_check_dns_now_stores_the_findings(client: Client) -> None:
    sending_domain = SendingDomainFactory()
    client.force_login(member(sending_domain.organization, Membership.Role.ADMIN))

    response = client.post(
        reverse("admin:deliverability_sendingdomain_changelist"),
        {"action": "check_dns", "_selected_action": [sending_domain.pk], "index": "0"},
        follow=True,
    )

    sending_domain.refresh_from_db()
    assert sending_domain.last_checked_at is not None
    assert sending_domain.verified_at is None
    assert "Could not look up the SPF record" in response.content.decode()
