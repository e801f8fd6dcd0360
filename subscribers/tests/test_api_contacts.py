"""Contacts over the API: create, read, change, delete, look up by address, list with filters
and orderings; always inside the caller's organization, writes only for marketers and up."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from api.tests.clients import key_client, role_client
from organizations.models import ApiKey, Membership
from organizations.tests.factories import OrganizationFactory
from subscribers import services
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory

pytestmark = pytest.mark.django_db

CONTACTS = "/api/v1/contacts/"


def item(contact: Contact) -> str:
    return f"{CONTACTS}{contact.pk}/"


def test_a_contact_is_created_with_lists_tags_by_id_and_name_and_consent() -> None:
    organization = OrganizationFactory()
    newsletter = ContactListFactory(organization=organization, name="Newsletter")
    vip = TagFactory(organization=organization, name="vip")

    response = key_client(organization).post(
        CONTACTS,
        {
            "email": "  Ada@Example.COM ",
            "first_name": " Ada ",
            "properties": {"plan": "pro", "seats": 3},
            "timezone": "Europe/Paris",
            "list_ids": [newsletter.pk],
            "tag_ids": [vip.pk],
            "tags": ["beta", "vip"],
            "consent_source": "signup form",
            "consent_ip": "203.0.113.9",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["email"], body["first_name"], body["status"]) == ("ada@example.com", "Ada", "active")
    assert body["properties"] == {"plan": "pro", "seats": 3}
    assert [entry["name"] for entry in body["lists"]] == ["Newsletter"]
    assert sorted(entry["name"] for entry in body["tags"]) == ["beta", "vip"]
    assert (body["consent_source"], body["consent_ip"]) == ("signup form", "203.0.113.9")
    assert body["consented_at"] is not None
    contact = Contact.objects.get(pk=body["id"])
    assert contact.organization == organization and contact.timezone == "Europe/Paris"


def test_a_suppressed_address_is_created_unmailable() -> None:
    organization = OrganizationFactory()
    services.suppression_add(organization=organization, email="gone@example.com", reason=Suppression.Reason.BOUNCED)

    response = key_client(organization).post(CONTACTS, {"email": "Gone@example.com"}, format="json")

    assert response.status_code == 201
    assert response.json()["status"] == "bounced"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": "ada@example.com", "timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "ada@example.com", "properties": ["a"]}, "properties"),
        ({"email": "ada@example.com", "properties": {"note": "nul\x00"}}, "properties"),
        ({"email": "ada@example.com", "first_name": "x" * 151}, "first_name"),
        ({"email": "ada@example.com", "list_ids": [2**63]}, "list_ids.0"),
        ({"first_name": "Ada"}, "email"),
    ],
)
def test_bad_details_are_refused_with_a_field_error_and_nothing_is_created(body: dict, field: str) -> None:
    organization = OrganizationFactory()

    response = key_client(organization).post(CONTACTS, body, format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not Contact.objects.exists()


def test_an_address_taken_is_a_field_error_on_create_and_on_change() -> None:
    organization = OrganizationFactory()
    ContactFactory(organization=organization, email="ada@example.com")
    bob = ContactFactory(organization=organization, email="bob@example.com")
    client = key_client(organization)

    created = client.post(CONTACTS, {"email": "ADA@example.com"}, format="json")
    changed = client.patch(item(bob), {"email": "Ada@Example.com"}, format="json")

    for response in (created, changed):
        assert response.status_code == 400
        assert [error["field"] for error in response.json()["errors"]] == ["email"]
    bob.refresh_from_db()
    assert bob.email == "bob@example.com"


def test_put_replaces_the_details_and_patch_changes_only_what_it_names() -> None:
    contact = ContactFactory(first_name="Ada", last_name="Lovelace", properties={"plan": "free"}, timezone="UTC")
    client = key_client(contact.organization)

    patched = client.patch(item(contact), {"properties": {"plan": "pro"}}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["first_name"], patched.json()["properties"]) == ("Ada", {"plan": "pro"})

    replaced = client.put(item(contact), {"email": contact.email, "first_name": "Augusta"}, format="json")
    assert replaced.status_code == 200
    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.properties, contact.timezone) == ("Augusta", "", {}, "")


def test_a_contact_is_read_and_deleted() -> None:
    contact = ContactFactory()
    client = key_client(contact.organization)

    assert client.get(item(contact)).json()["email"] == contact.email
    assert client.delete(item(contact)).status_code == 204
    assert client.get(item(contact)).status_code == 404
    assert not Contact.objects.exists()


def test_lookup_finds_a_contact_by_any_spelling_of_its_address() -> None:
    contact = ContactFactory(email="ada@example.com")
    client = key_client(contact.organization)

    found = client.get(f"{CONTACTS}lookup/", {"email": " ADA@Example.com "})
    missing = client.get(f"{CONTACTS}lookup/", {"email": "bob@example.com"})
    malformed = client.get(f"{CONTACTS}lookup/", {"email": "not an address"})

    assert (found.status_code, found.json()["id"]) == (200, contact.pk)
    assert missing.status_code == 404
    assert malformed.status_code == 400


def emails(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["email"] for row in response.json()["results"]]


def test_the_list_filters_by_status_list_tag_address_and_time() -> None:
    organization = OrganizationFactory()
    newsletter = ContactListFactory(organization=organization)
    vip = TagFactory(organization=organization)
    ada = ContactFactory(organization=organization, email="ada@example.com")
    bob = ContactFactory(organization=organization, email="bob@other.example")
    cyd = ContactFactory(organization=organization, email="cyd@example.com", status=Contact.Status.UNSUBSCRIBED)
    ada.lists.add(newsletter)
    bob.tags.add(vip)
    long_ago = timezone.now() - dt.timedelta(days=30)
    Contact.objects.filter(pk=cyd.pk).update(created_at=long_ago, updated_at=long_ago)
    client = key_client(organization, ApiKey.Scope.READ)
    week_ago = (timezone.now() - dt.timedelta(days=7)).isoformat()

    assert emails(client.get(CONTACTS, {"ordering": "email"})) == [
        "ada@example.com",
        "bob@other.example",
        "cyd@example.com",
    ]
    assert emails(client.get(CONTACTS, {"status": "unsubscribed"})) == ["cyd@example.com"]
    assert emails(client.get(CONTACTS, {"list_id": newsletter.pk})) == ["ada@example.com"]
    assert emails(client.get(CONTACTS, {"tag_id": vip.pk})) == ["bob@other.example"]
    assert emails(client.get(CONTACTS, {"email": "EXAMPLE.com", "ordering": "-email"})) == [
        "cyd@example.com",
        "ada@example.com",
    ]
    assert sorted(emails(client.get(CONTACTS, {"created_after": week_ago}))) == ["ada@example.com", "bob@other.example"]
    assert emails(client.get(CONTACTS, {"updated_after": week_ago, "ordering": "-updated_at", "tag_id": vip.pk})) == [
        "bob@other.example"
    ]
    assert client.get(CONTACTS, {"status": "gone"}).status_code == 400
    assert client.get(CONTACTS, {"ordering": "first_name"}).status_code == 400
    assert client.get(CONTACTS, {"created_after": "yesterday"}).status_code == 400


def test_the_list_pages_with_a_cursor() -> None:
    organization = OrganizationFactory()
    for number in range(5):
        ContactFactory(organization=organization, email=f"p{number}@example.com")
    client = key_client(organization)

    first = client.get(CONTACTS, {"ordering": "email", "page_size": 2}).json()
    second = client.get(first["next"]).json()

    assert [row["email"] for row in first["results"] + second["results"]] == [f"p{n}@example.com" for n in range(4)]


def test_another_organizations_contact_list_or_tag_is_not_found() -> None:
    organization, other = OrganizationFactory(), OrganizationFactory()
    foreign = ContactFactory(organization=other)
    foreign_list, foreign_tag = ContactListFactory(organization=other), TagFactory(organization=other)
    client = key_client(organization)

    assert client.get(item(foreign)).status_code == 404
    assert client.patch(item(foreign), {"first_name": "Mine"}, format="json").status_code == 404
    assert client.delete(item(foreign)).status_code == 404
    assert client.get(f"{CONTACTS}lookup/", {"email": foreign.email}).status_code == 404
    assert client.get(CONTACTS, {"list_id": foreign_list.pk}).status_code == 404
    assert client.get(CONTACTS, {"tag_id": foreign_tag.pk}).status_code == 404
    for body in ({"list_ids": [foreign_list.pk]}, {"tag_ids": [foreign_tag.pk]}):
        response = client.post(CONTACTS, {"email": "new@example.com", **body}, format="json")
        assert response.status_code == 404
        assert list(body)[0] in response.json()["detail"]
    assert not Contact.objects.for_org(organization).exists()
    foreign.refresh_from_db()
    assert foreign.first_name != "Mine"
    assert client.get(CONTACTS).json()["results"] == []


def test_a_viewer_reads_contacts_but_cannot_write_them() -> None:
    contact = ContactFactory(first_name="Ada")
    viewer = role_client(contact.organization, Membership.Role.VIEWER)

    assert viewer.get(item(contact)).status_code == 200
    assert viewer.get(CONTACTS).status_code == 200
    assert viewer.post(CONTACTS, {"email": "new@example.com"}, format="json").status_code == 403
    assert viewer.patch(item(contact), {"first_name": "Changed"}, format="json").status_code == 403
    assert viewer.delete(item(contact)).status_code == 403
    contact.refresh_from_db()
    assert contact.first_name == "Ada"
    assert Contact.objects.count() == 1


def test_creating_with_an_idempotency_key_twice_creates_once() -> None:
    client = key_client(OrganizationFactory())
    headers = {"HTTP_IDEMPOTENCY_KEY": "contact-1"}

    first = client.post(CONTACTS, {"email": "ada@example.com"}, format="json", **headers)
    again = client.post(CONTACTS, {"email": "ada@example.com"}, format="json", **headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Contact.objects.count() == 1
