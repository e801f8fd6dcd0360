"""Lists over the API: created, renamed, described, deleted (their contacts stay), names unique
within an organization, and the contacts of a list; viewers only read."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client, role_client
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact, ContactList
from subscribers.tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

LISTS = "/api/v1/lists/"


def test_a_list_is_created_read_changed_and_deleted_without_its_contacts() -> None:
    organization = OrganizationFactory()
    client = key_client(organization)

    created = client.post(LISTS, {"name": " Newsletter ", "description": "Monthly"}, format="json")
    assert created.status_code == 201, created.content
    list_id = created.json()["id"]
    assert (created.json()["name"], created.json()["contact_count"]) == ("Newsletter", 0)
    ContactFactory(organization=organization).lists.add(list_id)

    assert client.get(f"{LISTS}{list_id}/").json()["contact_count"] == 1
    patched = client.patch(f"{LISTS}{list_id}/", {"description": "Weekly"}, format="json")
    assert (patched.json()["name"], patched.json()["description"]) == ("Newsletter", "Weekly")
    replaced = client.put(f"{LISTS}{list_id}/", {"name": "News"}, format="json")
    assert (replaced.json()["name"], replaced.json()["description"]) == ("News", "")
    assert client.delete(f"{LISTS}{list_id}/").status_code == 204
    assert not ContactList.objects.exists()
    assert Contact.objects.count() == 1


def test_a_name_taken_in_the_organization_is_a_field_error() -> None:
    organization = OrganizationFactory()
    ContactListFactory(organization=organization, name="Newsletter")
    other = ContactListFactory(organization=organization, name="Offers")
    ContactListFactory(name="Elsewhere")
    client = key_client(organization)

    for response in (
        client.post(LISTS, {"name": "Newsletter "}, format="json"),
        client.patch(f"{LISTS}{other.pk}/", {"name": "Newsletter"}, format="json"),
    ):
        assert response.status_code == 400
        assert [error["field"] for error in response.json()["errors"]] == ["name"]
    assert client.post(LISTS, {"name": "Elsewhere"}, format="json").status_code == 201


def test_lists_are_ordered_and_show_only_the_organizations_own() -> None:
    organization = OrganizationFactory()
    for name in ("b", "c", "a"):
        ContactListFactory(organization=organization, name=name)
    ContactListFactory(name="foreign")
    client = key_client(organization)

    response = client.get(LISTS, {"ordering": "-name"})

    assert [row["name"] for row in response.json()["results"]] == ["c", "b", "a"]


def test_the_contacts_of_a_list_are_listed_and_filtered_by_status() -> None:
    organization = OrganizationFactory()
    newsletter = ContactListFactory(organization=organization)
    ada = ContactFactory(organization=organization, email="ada@example.com")
    gone = ContactFactory(organization=organization, email="gone@example.com", status=Contact.Status.BOUNCED)
    ContactFactory(organization=organization, email="elsewhere@example.com")
    newsletter.contacts.add(ada, gone)
    client = key_client(organization)
    path = f"{LISTS}{newsletter.pk}/contacts/"

    assert [row["email"] for row in client.get(path, {"ordering": "email"}).json()["results"]] == [
        "ada@example.com",
        "gone@example.com",
    ]
    assert [row["email"] for row in client.get(path, {"status": "active"}).json()["results"]] == ["ada@example.com"]


def test_another_organizations_list_is_not_found() -> None:
    foreign = ContactListFactory(name="Theirs")
    client = key_client(OrganizationFactory())

    for response in (
        client.get(f"{LISTS}{foreign.pk}/"),
        client.get(f"{LISTS}{foreign.pk}/contacts/"),
        client.put(f"{LISTS}{foreign.pk}/", {"name": "Mine"}, format="json"),
        client.delete(f"{LISTS}{foreign.pk}/"),
    ):
        assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.name == "Theirs"


def test_a_viewer_reads_lists_but_cannot_write_them() -> None:
    contact_list = ContactListFactory(name="Newsletter")
    viewer = role_client(contact_list.organization, Membership.Role.VIEWER)

    assert viewer.get(LISTS).status_code == 200
    assert viewer.post(LISTS, {"name": "New"}, format="json").status_code == 403
    assert viewer.patch(f"{LISTS}{contact_list.pk}/", {"name": "Renamed"}, format="json").status_code == 403
    assert viewer.delete(f"{LISTS}{contact_list.pk}/").status_code == 403
    assert list(ContactList.objects.values_list("name", flat=True)) == ["Newsletter"]
