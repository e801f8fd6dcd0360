"""Subscribe forms and consent records over the API: a form's answer carries its hosted URL and
the HTML to embed; a contact's consent history includes what was recorded before an erasure;
the GDPR export includes it too."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.test import Client

from api.tests.clients import key_client
from organizations.models import ApiKey
from organizations.tests.factories import OrganizationFactory
from subscribers import services
from subscribers.models import SubscribeForm
from subscribers.tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

FORMS = "/api/v1/subscribe-forms/"


def test_a_form_is_created_and_its_hosted_page_and_snippet_work(client: Client) -> None:
    cache.clear()
    organization = OrganizationFactory()
    newsletter = ContactListFactory(organization=organization, name="Newsletter")
    api = key_client(organization)

    created = api.post(
        FORMS,
        {"name": "Footer form", "consent_wording": "Send me the newsletter.", "list_id": newsletter.pk},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["list_id"] == newsletter.pk and body["is_active"] is True
    assert body["hosted_url"].endswith(f"/subscribe/{body['token']}")
    assert f'action="{body["hosted_url"]}"' in body["embed_html"] and 'name="homepage"' in body["embed_html"]
    page = client.get(urlsplit(body["hosted_url"]).path)
    assert page.status_code == 200 and b"Send me the newsletter." in page.content


def test_a_form_is_changed_and_deleted_and_a_list_of_another_organization_is_not_found() -> None:
    organization = OrganizationFactory()
    api = key_client(organization)
    form_id = api.post(FORMS, {"name": "Form", "consent_wording": "Yes"}, format="json").json()["id"]
    elsewhere = ContactListFactory()

    patched = api.patch(
        f"{FORMS}{form_id}/", {"is_active": False, "redirect_url": "https://a.example/ok"}, format="json"
    )
    refused = api.patch(f"{FORMS}{form_id}/", {"list_id": elsewhere.pk}, format="json")
    duplicate = api.post(FORMS, {"name": "Form", "consent_wording": "Yes"}, format="json")

    assert patched.status_code == 200
    assert (patched.json()["is_active"], patched.json()["redirect_url"]) == (False, "https://a.example/ok")
    assert refused.status_code == 404
    assert duplicate.status_code == 400 and duplicate.json()["errors"][0]["field"] == "name"
    assert api.delete(f"{FORMS}{form_id}/").status_code == 204
    assert not SubscribeForm.objects.exists()


def test_a_read_key_reads_forms_but_cannot_create_them() -> None:
    organization = OrganizationFactory()
    reader = key_client(organization, ApiKey.Scope.READ)

    assert reader.get(FORMS).status_code == 200
    assert reader.post(FORMS, {"name": "Form", "consent_wording": "Yes"}, format="json").status_code == 403


def test_a_contacts_consent_history_is_listed_newest_first_and_exported() -> None:
    contact = ContactFactory(email="ann@example.com")
    services.contact_erase(contact=contact)
    again = services.contact_create(organization=contact.organization, email="ann@example.com", consent_source="api")
    services.contact_resubscribe(contact=again, source="phone call", consent_ip="192.0.2.1")
    api = key_client(contact.organization, ApiKey.Scope.READ)

    history = api.get(f"/api/v1/contacts/{again.pk}/consent/")
    export = api.get(f"/api/v1/contacts/{again.pk}/export/")

    assert history.status_code == 200
    assert [record["action"] for record in history.json()["results"]] == ["resubscribe", "subscribe", "erase"]
    assert history.json()["results"][0]["ip"] == "192.0.2.1"
    assert [record["action"] for record in export.json()["consent_records"]] == ["erase", "subscribe", "resubscribe"]


def test_another_organizations_contact_has_no_consent_history_here() -> None:
    contact = ContactFactory()

    answer = key_client(OrganizationFactory()).get(f"/api/v1/contacts/{contact.pk}/consent/")

    assert answer.status_code == 404
