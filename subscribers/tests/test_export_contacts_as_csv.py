"""Contacts export as CSV: one row per contact with its lists, tags and a column per property
name; filtered by list, tag or status; every cell that a spreadsheet would run as a formula is
neutralised; another organization's list or tag is a 404."""

from __future__ import annotations

import csv
import io

import pytest
from rest_framework.test import APIClient

from api.tests.clients import key_client, role_client
from organizations.models import ApiKey, Membership
from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory

pytestmark = pytest.mark.django_db

EXPORT = "/api/v1/exports/contacts/"


def rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_has_a_row_per_contact_with_lists_tags_and_a_column_per_property():
    organization = OrganizationFactory(slug="acme")
    ada = ContactFactory(
        organization=organization, email="ada@example.com", first_name="Ada", properties={"plan": "gold"}
    )
    bob = ContactFactory(organization=organization, email="bob@example.com", properties={"city": "Oslo", "seats": 3})
    ada.lists.add(ContactListFactory(organization=organization, name="Newsletter"))
    ada.tags.add(TagFactory(organization=organization, name="vip"), TagFactory(organization=organization, name="beta"))
    ContactFactory(organization=OrganizationFactory(), properties={"secret": "x"})

    response = key_client(organization, ApiKey.Scope.READ).get(EXPORT)

    exported = rows(response)
    assert response["Content-Disposition"].startswith('attachment; filename="contacts-acme-')
    assert list(exported[0]) == [
        "email",
        "first_name",
        "last_name",
        "status",
        "timezone",
        "created_at",
        "lists",
        "tags",
        "properties.city",
        "properties.plan",
        "properties.seats",
    ]
    assert [row["email"] for row in exported] == ["ada@example.com", "bob@example.com"]
    assert (exported[0]["lists"], exported[0]["tags"], exported[0]["properties.plan"]) == (
        "Newsletter",
        "beta, vip",
        "gold",
    )
    assert (exported[1]["properties.city"], exported[1]["properties.seats"], exported[1]["properties.plan"]) == (
        "Oslo",
        "3",
        "",
    )
    assert exported[0]["created_at"] == ada.created_at.isoformat() and exported[1]["status"] == bob.status


def test_cells_that_a_spreadsheet_would_run_are_neutralised():
    organization = OrganizationFactory()
    contact = ContactFactory(
        organization=organization,
        first_name='=HYPERLINK("http://evil.example")',
        last_name="+1 555",
        properties={"balance": "-5", "handle": "@ada", "tabbed": "\tx", "returned": "\rx", "plain": "a=b"},
    )
    contact.tags.add(TagFactory(organization=organization, name="=cmd|' /C calc'!A0"))

    [row] = rows(role_client(organization, Membership.Role.VIEWER).get(EXPORT))

    assert row["first_name"] == '\'=HYPERLINK("http://evil.example")'
    assert row["last_name"] == "'+1 555"
    assert row["tags"] == "'=cmd|' /C calc'!A0"
    assert (row["properties.balance"], row["properties.handle"]) == ("'-5", "'@ada")
    assert (row["properties.tabbed"], row["properties.returned"]) == ("'\tx", "'\rx")
    assert row["properties.plain"] == "a=b"


def test_the_export_takes_one_list_one_tag_or_one_status():
    organization = OrganizationFactory()
    newsletter = ContactListFactory(organization=organization)
    vip = TagFactory(organization=organization)
    listed, tagged, gone = (ContactFactory(organization=organization) for _ in range(3))
    listed.lists.add(newsletter)
    tagged.tags.add(vip)
    Contact.objects.filter(pk=gone.pk).update(status=Contact.Status.UNSUBSCRIBED)
    client = key_client(organization)

    def emails(**query: object) -> list[str]:
        return [row["email"] for row in rows(client.get(EXPORT, query))]

    assert emails(list_id=newsletter.pk) == [listed.email]
    assert emails(tag_id=vip.pk) == [tagged.email]
    assert emails(status="unsubscribed") == [gone.email]
    assert sorted(emails(status="active")) == sorted([listed.email, tagged.email])
    assert emails(list_id=newsletter.pk, tag_id=vip.pk) == []


def test_another_organizations_list_or_tag_is_not_found():
    theirs = OrganizationFactory()
    client = key_client(OrganizationFactory())

    for query in (
        {"list_id": ContactListFactory(organization=theirs).pk},
        {"tag_id": TagFactory(organization=theirs).pk},
    ):
        response = client.get(EXPORT, query, HTTP_ACCEPT="text/csv")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
        assert next(iter(query)) in response.json()["detail"]


def test_bad_filters_are_a_400_and_an_anonymous_caller_a_401():
    client = key_client(OrganizationFactory())
    assert client.get(EXPORT, {"status": "asleep"}).status_code == 400
    assert client.get(EXPORT, {"list_id": "1e99"}).status_code == 400
    assert client.get(EXPORT, {"tag_id": str(2**64)}).status_code == 400
    assert APIClient().get(EXPORT).status_code == 401
