"""A contact's history over the API: its messages, and one timeline of its delivery events
(opens, clicks...) and custom events, newest first, paged with a cursor; and unsubscribing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from api.tests.clients import key_client
from delivery.models import Event
from delivery.tests.factories import EventFactory, MessageFactory, enrollment_for
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment
from sequences.tests.factories import SequenceFactory, StepFactory
from subscribers.models import Contact, ContactEvent, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)


def contact_with_history() -> tuple[Contact, list[tuple[str, str]]]:
    """A contact with two messages, three delivery events and three custom events, two of which
    share a moment with a delivery event. Returns the timeline expected, newest first."""
    contact = ContactFactory()
    sequence = SequenceFactory(organization=contact.organization)
    first, second = StepFactory(sequence=sequence), StepFactory(sequence=sequence)
    enrollment = enrollment_for(sequence, contact)
    messages = [MessageFactory(enrollment=enrollment, step=step, subject=step.name) for step in (first, second)]
    for minutes, kind in ((0, Event.Type.OPEN), (10, Event.Type.CLICK), (20, Event.Type.OPEN)):
        EventFactory(message=messages[0], type=kind, occurred_at=NOON + dt.timedelta(minutes=minutes))
    for minutes, name in ((10, "viewed_pricing"), (20, "started_trial"), (30, "purchased")):
        ContactEvent.objects.create(
            organization=contact.organization,
            contact=contact,
            name=name,
            occurred_at=NOON + dt.timedelta(minutes=minutes),
            properties={"minute": minutes},
        )
    expected = [
        ("custom", "purchased"),
        ("custom", "started_trial"),
        ("delivery", "open"),
        ("custom", "viewed_pricing"),
        ("delivery", "click"),
        ("delivery", "open"),
    ]
    return contact, expected


def test_the_messages_of_a_contact_are_listed() -> None:
    contact, _ = contact_with_history()
    ContactFactory(organization=contact.organization)

    response = key_client(contact.organization).get(f"/api/v1/contacts/{contact.pk}/messages/")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert len(rows) == 2
    assert {row["status"] for row in rows} == {"sent"}
    assert {row["enrollment_id"] for row in rows} == {Enrollment.objects.get(contact=contact).pk}


@pytest.mark.parametrize("page_size", [1, 2, 4, 50])
def test_the_timeline_merges_both_kinds_of_event_newest_first_on_every_page_size(page_size: int) -> None:
    contact, expected = contact_with_history()
    client = key_client(contact.organization)
    url = f"/api/v1/contacts/{contact.pk}/events/?page_size={page_size}"
    seen = []

    while url:
        page = client.get(url)
        assert page.status_code == 200, page.content
        assert len(page.json()["results"]) <= page_size
        seen += page.json()["results"]
        url = page.json()["next"]

    assert [(entry["source"], entry["name"]) for entry in seen] == expected
    assert seen[0]["properties"] == {"minute": 30} and seen[2]["message_id"] is not None


def test_a_cursor_that_the_timeline_did_not_give_is_refused() -> None:
    contact, _ = contact_with_history()
    client = key_client(contact.organization)

    for cursor in (
        "nonsense",
        "WzEsMiwzXQ",
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgMCwgMTAwMDAwMDAwMDAwMDAwMDAwMDAwXQ",
    ):
        response = client.get(f"/api/v1/contacts/{contact.pk}/events/", {"cursor": cursor})
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "cursor"


def test_another_organizations_contact_has_no_history_to_show() -> None:
    contact, _ = contact_with_history()
    client = key_client(OrganizationFactory())

    for part in ("messages", "events", "export"):
        assert client.get(f"/api/v1/contacts/{contact.pk}/{part}/").status_code == 404


def test_unsubscribing_over_the_api_stops_all_mail_and_suppresses_the_address() -> None:
    contact = ContactFactory()
    sequence = SequenceFactory(organization=contact.organization)
    StepFactory(sequence=sequence)
    enrollment = enrollment_for(sequence, contact)

    response = key_client(contact.organization).post(
        f"/api/v1/contacts/{contact.pk}/unsubscribe/", {"detail": "asked by phone"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["status"] == "unsubscribed"
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.UNSUBSCRIBED)
    suppression = Suppression.objects.get(organization=contact.organization)
    assert suppression.reason == Suppression.Reason.UNSUBSCRIBED
    assert "asked by phone" in suppression.detail and suppression.detail.startswith("api (key:")
    assert timezone.now() - Contact.objects.get(pk=contact.pk).status_changed_at < dt.timedelta(minutes=1)
