"""Custom events over the API: one event, or batches of up to 1,000, stored per contact. A
batch stores its valid events and reports the others by index; a single event is all or
nothing (400, or 404 for a contact the organization does not have)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.tests.clients import key_client, role_client
from organizations.models import ApiKey, Membership
from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.models import ContactEvent
from subscribers.tests.factories import ContactFactory, sequence_with_a_step

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events/"


def test_a_single_event_is_stored_by_address_with_its_time_and_properties() -> None:
    contact = ContactFactory(email="ada@example.com")

    response = key_client(contact.organization).post(
        EVENTS,
        {
            "email": " ADA@example.com",
            "name": "purchased",
            "properties": {"sku": "A-1", "amount": 42},
            "occurred_at": "2026-01-31T09:30:00+01:00",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json() == {"accepted": 1, "rejected": []}
    event = ContactEvent.objects.get()
    assert (event.contact, event.organization, event.name) == (contact, contact.organization, "purchased")
    assert event.properties == {"sku": "A-1", "amount": 42}
    assert event.occurred_at == dt.datetime(2026, 1, 31, 8, 30, tzinfo=dt.UTC)


def test_a_single_event_without_a_time_happened_now_and_may_name_its_contact_by_id() -> None:
    contact = ContactFactory()

    response = key_client(contact.organization).post(
        EVENTS, {"contact_id": contact.pk, "name": "logged_in"}, format="json"
    )

    assert response.status_code == 201
    assert timezone.now() - ContactEvent.objects.get().occurred_at < dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "email"),
        ({"email": "ada@example.com", "contact_id": 1, "name": "x"}, "email"),
        ({"email": "ada@example.com"}, "name"),
        ({"email": "ada@example.com", "name": " "}, "name"),
        ({"email": "ada@example.com", "name": "x" * 201}, "name"),
        ({"email": "ada@example.com", "name": "x", "properties": [1]}, "properties"),
        ({"email": "ada@example.com", "name": "x", "properties": {"k": "\x00"}}, "properties"),
        ({"email": "ada@example.com", "name": "x", "properties": {"k": 2**64}}, "properties"),
        ({"email": "ada@example.com", "name": "x", "occurred_at": "yesterday"}, "occurred_at"),
        ({"email": "ada@example.com", "name": "x", "occurred_at": "0001-01-01T00:00:00+01:00"}, "occurred_at"),
        ({"email": "ada@example.com", "name": "x", "occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
        ({"contact_id": 2**63, "name": "x"}, "contact_id"),
        ({"contact_id": "12", "name": "x"}, "contact_id"),
        ({"email": "not an address", "name": "x"}, "email"),
    ],
)
def test_a_single_bad_event_is_a_400_with_its_field(body: dict, field: str) -> None:
    client = key_client(ContactFactory(email="ada@example.com").organization)

    response = client.post(EVENTS, body, format="json")

    assert response.status_code == 400, response.content
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not ContactEvent.objects.exists()


def test_a_single_event_of_an_unknown_or_foreign_contact_is_a_404() -> None:
    foreign = ContactFactory(email="ada@example.com")
    client = key_client(OrganizationFactory())

    by_email = client.post(EVENTS, {"email": "ada@example.com", "name": "x"}, format="json")
    by_id = client.post(EVENTS, {"contact_id": foreign.pk, "name": "x"}, format="json")

    assert (by_email.status_code, by_id.status_code) == (404, 404)
    assert by_id.json()["detail"].startswith("contact_id:")
    assert not ContactEvent.objects.exists()


def test_a_batch_stores_the_valid_events_and_reports_each_rejected_one_by_index() -> None:
    organization = OrganizationFactory()
    ada = ContactFactory(organization=organization, email="ada@example.com")
    bob = ContactFactory(organization=organization, email="bob@example.com")
    foreign = ContactFactory(email="eve@example.com")
    events = [
        {"email": "ada@example.com", "name": "viewed"},
        {"email": "nobody@example.com", "name": "viewed"},
        {"contact_id": bob.pk, "name": "purchased", "properties": {"amount": 5}},
        {"contact_id": foreign.pk, "name": "viewed"},
        "not an event",
        {"email": "Bob@Example.com", "name": "viewed", "occurred_at": "2026-02-01T10:00:00"},
        {"email": "ada@example.com", "name": ""},
    ]

    response = key_client(organization).post(EVENTS, {"events": events}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 3
    assert [(item["index"], [(e["field"], e["code"]) for e in item["errors"]]) for item in body["rejected"]] == [
        (1, [("email", "not_found")]),
        (3, [("contact_id", "not_found")]),
        (4, [("", "invalid")]),
        (6, [("name", "invalid")]),
    ]
    stored = sorted(ContactEvent.objects.values_list("contact_id", "name"))
    assert stored == sorted([(ada.pk, "viewed"), (bob.pk, "purchased"), (bob.pk, "viewed")])
    assert ContactEvent.objects.get(contact=bob, name="viewed").occurred_at == dt.datetime(
        2026, 2, 1, 10, tzinfo=dt.UTC
    )


def test_a_batch_of_500_is_stored_in_a_few_queries_and_answers_201() -> None:
    organization = OrganizationFactory()
    contacts = ContactFactory.create_batch(50, organization=organization)
    events = [{"email": contacts[n % 50].email, "name": "page_viewed", "properties": {"n": n}} for n in range(500)]
    client = key_client(organization)

    with CaptureQueriesContext(connection) as queries:
        response = client.post(EVENTS, {"events": events}, format="json")

    assert response.status_code == 201
    assert response.json() == {"accepted": 500, "rejected": []}
    assert ContactEvent.objects.count() == 500
    # Authentication, one read of the addresses, the insert (in chunks on SQLite), one look
    # for sequences whose goal is such an event: nothing per event.
    assert len(queries) <= 12, [query["sql"][:80] for query in queries]


def test_a_batch_over_the_limit_or_empty_is_refused_whole() -> None:
    contact = ContactFactory()
    client = key_client(contact.organization)

    too_many = client.post(EVENTS, {"events": [{"contact_id": contact.pk, "name": "x"}] * 1001}, format="json")
    empty = client.post(EVENTS, {"events": []}, format="json")
    not_a_list = client.post(EVENTS, {"events": "x"}, format="json")
    not_an_object = client.post(EVENTS, [1, 2], format="json")

    assert [r.status_code for r in (too_many, empty, not_a_list, not_an_object)] == [400, 400, 400, 400]
    assert not ContactEvent.objects.exists()


def test_an_event_goal_takes_the_contact_out_of_the_sequence_when_the_event_arrives() -> None:
    organization = OrganizationFactory()
    buyer, browser, late = ContactFactory.create_batch(3, organization=organization)
    goal = sequence_with_a_step(organization, goal={"type": "event", "name": "purchased"})
    other = sequence_with_a_step(organization, goal={"type": "event", "name": "churned"})
    enrollments = {
        contact: sequence_services.enrollment_create(sequence=sequence, contact=contact)
        for contact, sequence in ((buyer, goal), (browser, goal), (late, goal))
    }
    untouched = sequence_services.enrollment_create(sequence=other, contact=buyer)
    before = (timezone.now() - dt.timedelta(days=2)).isoformat()

    key_client(organization).post(
        EVENTS,
        {
            "events": [
                {"contact_id": buyer.pk, "name": "purchased"},
                {"contact_id": browser.pk, "name": "viewed_pricing"},
                {"contact_id": late.pk, "name": "purchased", "occurred_at": before},
            ]
        },
        format="json",
    )

    statuses = {contact: Enrollment.objects.get(pk=e.pk).exit_reason for contact, e in enrollments.items()}
    assert statuses == {buyer: Enrollment.ExitReason.GOAL_REACHED, browser: "", late: ""}
    untouched.refresh_from_db()
    assert untouched.status == Enrollment.Status.ACTIVE


def test_events_are_listed_with_filters_and_only_the_organizations_own() -> None:
    organization = OrganizationFactory()
    ada, bob = ContactFactory.create_batch(2, organization=organization)
    now = timezone.now()
    for contact, name, days in ((ada, "viewed", 3), (ada, "purchased", 1), (bob, "viewed", 0)):
        ContactEvent.objects.create(
            organization=organization, contact=contact, name=name, occurred_at=now - dt.timedelta(days=days)
        )
    foreign = ContactFactory()
    ContactEvent.objects.create(organization=foreign.organization, contact=foreign, name="viewed", occurred_at=now)
    client = key_client(organization, ApiKey.Scope.READ)

    def listed(**query: object) -> list[tuple[int, str]]:
        response = client.get(EVENTS, query)
        assert response.status_code == 200, response.content
        return [(row["contact_id"], row["name"]) for row in response.json()["results"]]

    assert listed(ordering="occurred_at") == [(ada.pk, "viewed"), (ada.pk, "purchased"), (bob.pk, "viewed")]
    assert listed(name="viewed", ordering="-occurred_at") == [(bob.pk, "viewed"), (ada.pk, "viewed")]
    assert listed(contact_id=ada.pk, occurred_after=(now - dt.timedelta(days=2)).isoformat()) == [(ada.pk, "purchased")]
    assert client.get(EVENTS, {"contact_id": foreign.pk}).status_code == 404


def test_a_viewer_or_read_key_lists_events_but_cannot_report_them() -> None:
    contact = ContactFactory()
    body = {"contact_id": contact.pk, "name": "x"}

    for client in (role_client(contact.organization, Membership.Role.VIEWER), key_client(contact.organization, "read")):
        assert client.get(EVENTS).status_code == 200
        assert client.post(EVENTS, body, format="json").status_code == 403
    assert not ContactEvent.objects.exists()
