"""Bulk upsert over the API: up to 10,000 contacts a call, one result per row in input order
(created, updated, unchanged or rejected with its errors), repeats of an address within a call
reported, suppressed addresses created unmailable, all in a handful of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from api.tests.clients import key_client, role_client
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers import services
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory, sequence_with_a_step

pytestmark = pytest.mark.django_db

BULK = "/api/v1/contacts/bulk/"
# Authentication, the call's lists and tags, the idempotency-free path: reads, inserts and
# updates by the thousand, memberships by the five thousand, the goal check. Not per row.
MAX_QUERIES = 40


def rows_of_every_kind() -> tuple[list[dict], dict[str, range]]:
    rows: list[dict] = []
    kinds = {
        "updated": range(0, 1000),
        "unchanged": range(1000, 2000),
        "created": range(2000, 9900),
        "invalid": range(9900, 9950),
        "duplicate": range(9950, 9980),
        "bad_timezone": range(9980, 9990),
        "suppressed": range(9990, 10000),
    }
    for index in range(10_000):
        if index in kinds["updated"]:
            rows.append({"email": f"e{index}@example.com", "first_name": "New", "properties": {"n": index}})
        elif index in kinds["unchanged"]:
            rows.append({"email": f" E{index}@EXAMPLE.com", "first_name": "Old"})
        elif index in kinds["created"]:
            rows.append({"email": f"n{index}@example.com", "first_name": f"N{index}", "timezone": "Europe/Paris"})
        elif index in kinds["invalid"]:
            rows.append({"email": f"bad {index}"})
        elif index in kinds["duplicate"]:
            rows.append({"email": f"N{index - 7000}@Example.com", "first_name": "Twin"})
        elif index in kinds["bad_timezone"]:
            rows.append({"email": f"tz{index}@example.com", "timezone": "Mars/Olympus"})
        else:
            rows.append({"email": f"s{index}@example.com"})
    return rows, kinds


def test_ten_thousand_rows_in_one_call_give_one_result_each_in_order_in_a_few_queries() -> None:
    organization = OrganizationFactory()
    Contact.objects.bulk_create(
        Contact(organization=organization, email=f"e{index}@example.com", first_name="Old") for index in range(2000)
    )
    for index in range(9990, 10_000):
        services.suppression_add(organization=organization, email=f"s{index}@example.com", reason="unsubscribed")
    newsletter = ContactListFactory(organization=organization)
    vip = TagFactory(organization=organization)
    rows, kinds = rows_of_every_kind()
    client = key_client(organization)

    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            BULK,
            {"contacts": rows, "list_ids": [newsletter.pk], "tag_ids": [vip.pk], "consent_source": "crm sync"},
            format="json",
        )

    assert response.status_code == 200, response.content[:500]
    assert len(queries) <= MAX_QUERIES, f"{len(queries)} queries"
    body = response.json()
    results = body["results"]
    assert [result["index"] for result in results] == list(range(10_000))
    assert (body["created"], body["updated"], body["unchanged"], body["rejected"]) == (7910, 1000, 1000, 90)

    expected = {"updated": "updated", "unchanged": "unchanged", "created": "created", "suppressed": "created"}
    for kind, indexes in kinds.items():
        for index in indexes:
            result = results[index]
            assert result["result"] == expected.get(kind, "rejected"), (index, result)
            if kind in expected:
                assert result["errors"] == [] and result["id"] is not None
            else:
                assert result["id"] is None and result["status"] is None
    assert results[0]["email"] == "e0@example.com" and results[1000]["email"] == "e1000@example.com"
    assert results[9900]["errors"][0]["field"] == "email"
    assert results[9950]["errors"] == [
        {"field": "email", "message": "The same address as the row at index 2950.", "code": "duplicate"}
    ]
    assert results[9980]["errors"][0]["field"] == "timezone"
    assert {results[index]["status"] for index in kinds["suppressed"]} == {"unsubscribed"}

    contacts = Contact.objects.for_org(organization)
    assert contacts.count() == 2000 + 7900 + 10
    updated = contacts.get(email="e7@example.com")
    assert (updated.first_name, updated.properties, updated.pk) == ("New", {"n": 7}, results[7]["id"])
    assert contacts.get(email="n2950@example.com").first_name == "N2950"
    created = contacts.get(email="n5000@example.com")
    assert (created.timezone, created.consent_source, created.status) == ("Europe/Paris", "crm sync", "active")
    assert created.consented_at is not None
    assert newsletter.contacts.count() == vip.contacts.count() == 9910
    assert contacts.filter(status=Contact.Status.UNSUBSCRIBED).count() == 10


def test_fields_left_out_keep_their_values_and_a_repeat_call_changes_nothing() -> None:
    contact = ContactFactory(first_name="Ada", last_name="Lovelace", properties={"plan": "free"}, timezone="UTC")
    client = key_client(contact.organization)
    rows = [{"email": contact.email.upper(), "last_name": "King", "properties": {"plan": "pro"}}]

    first = client.post(BULK, {"contacts": rows}, format="json").json()
    again = client.post(BULK, {"contacts": rows}, format="json").json()

    assert first["results"][0]["result"] == "updated"
    assert again["results"][0] == {
        "index": 0,
        "email": contact.email,
        "result": "unchanged",
        "id": contact.pk,
        "status": "active",
        "errors": [],
    }
    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.properties, contact.timezone) == (
        "Ada",
        "King",
        {"plan": "pro"},
        "UTC",
    )


def test_rows_that_are_not_contacts_are_rejected_one_by_one() -> None:
    client = key_client(OrganizationFactory())
    rows = [
        "ada@example.com",
        {"first_name": "No address"},
        {"email": "ok@example.com", "properties": "plan=pro"},
        {"email": "nul\x00@example.com"},
        {"email": "fine@example.com", "first_name": "F" * 151},
        {"email": "good@example.com"},
    ]

    body = client.post(BULK, {"contacts": rows}, format="json").json()

    assert [result["result"] for result in body["results"]] == ["rejected"] * 5 + ["created"]
    assert [result["errors"][0]["field"] for result in body["results"][:5]] == [
        "",
        "email",
        "properties",
        "email",
        "first_name",
    ]
    assert list(Contact.objects.values_list("email", flat=True)) == ["good@example.com"]


def test_a_call_beyond_the_limit_or_without_rows_is_refused_whole() -> None:
    client = key_client(OrganizationFactory())

    too_many = client.post(BULK, {"contacts": [{"email": f"p{n}@example.com"} for n in range(10_001)]}, format="json")
    empty = client.post(BULK, {"contacts": []}, format="json")

    assert (too_many.status_code, empty.status_code) == (400, 400)
    assert too_many.json()["errors"][0]["field"] == "contacts"
    assert not Contact.objects.exists()


def test_a_property_goal_met_by_a_bulk_update_ends_the_enrollment() -> None:
    contact = ContactFactory(properties={"plan": "free"})
    sequence = sequence_with_a_step(
        contact.organization, goal={"type": "property", "key": "plan", "operator": "equals", "value": "pro"}
    )
    enrollment = sequence_services.enrollment_create(sequence=sequence, contact=contact)

    key_client(contact.organization).post(
        BULK, {"contacts": [{"email": contact.email, "properties": {"plan": "pro"}}]}, format="json"
    )

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.GOAL_REACHED)


def test_another_organizations_list_or_tag_refuses_the_whole_call() -> None:
    organization = OrganizationFactory()
    client = key_client(organization)

    for body in ({"list_ids": [ContactListFactory().pk]}, {"tag_ids": [TagFactory().pk]}):
        response = client.post(BULK, {"contacts": [{"email": "ada@example.com"}], **body}, format="json")
        assert response.status_code == 404

    assert not Contact.objects.exists()


def test_a_retry_with_the_same_idempotency_key_replays_the_first_answer() -> None:
    client = key_client(OrganizationFactory())
    body = {"contacts": [{"email": "ada@example.com"}]}

    first = client.post(BULK, body, format="json", HTTP_IDEMPOTENCY_KEY="sync-1")
    again = client.post(BULK, body, format="json", HTTP_IDEMPOTENCY_KEY="sync-1")

    assert first.json() == again.json()
    assert again.json()["results"][0]["result"] == "created"


def test_a_suppressed_address_stays_unmailable_and_a_viewer_cannot_upsert() -> None:
    organization = OrganizationFactory()
    services.suppression_add(organization=organization, email="gone@example.com", reason=Suppression.Reason.COMPLAINED)

    viewer = role_client(organization, Membership.Role.VIEWER)
    refused = viewer.post(BULK, {"contacts": [{"email": "gone@example.com"}]}, format="json")
    done = key_client(organization).post(BULK, {"contacts": [{"email": "gone@example.com"}]}, format="json")

    assert refused.status_code == 403
    assert done.json()["results"][0]["status"] == "complained"
    assert Contact.objects.get().status == Contact.Status.COMPLAINED
