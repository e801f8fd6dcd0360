"""GDPR over the API: the export holds everything stored about one person; erasure deletes it
all, keeping only the hash of the address as a suppression, so the address is never mailed
again, even when an integration creates the contact anew."""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.utils import timezone

from api.models import IdempotencyRecord
from api.tests.clients import key_client, role_client
from deliverability import reports
from deliverability.models import BounceReport
from delivery.models import Event, Message
from delivery.tests.factories import DeliveryRouteFactory, EventFactory, MessageFactory, enrollment_for
from organizations.models import Membership
from sequences.models import Enrollment
from sequences.tests.factories import SequenceFactory, StepFactory
from subscribers import services
from subscribers.addresses import email_hash
from subscribers.models import Contact, ContactEvent, ContactImport, ImportRejection, Suppression
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory

pytestmark = pytest.mark.django_db

EMAIL = "ada@lovelace.example"


def person_with_everything() -> Contact:
    contact = ContactFactory(
        email=EMAIL,
        first_name="Ada",
        last_name="Lovelace",
        properties={"plan": "pro"},
        consent_source="signup form",
        consent_ip="203.0.113.9",
        consented_at=timezone.now(),
    )
    organization = contact.organization
    contact.lists.add(ContactListFactory(organization=organization, name="Newsletter"))
    contact.tags.add(TagFactory(organization=organization, name="vip"))
    sequence = SequenceFactory(organization=organization, name="Onboarding")
    enrollment = enrollment_for(sequence, contact)
    message = MessageFactory(
        enrollment=enrollment, step=StepFactory(sequence=sequence), subject="Welcome Ada", recipient=EMAIL
    )
    EventFactory(message=message, type=Event.Type.CLICK, url="https://example.com/one", ip="198.51.100.7")
    ContactEvent.objects.create(
        organization=organization,
        contact=contact,
        name="purchased",
        properties={"sku": "A-1"},
        occurred_at=timezone.now(),
    )
    return contact


def test_the_export_holds_details_consent_lists_tags_enrollments_messages_and_events() -> None:
    contact = person_with_everything()

    response = key_client(contact.organization).get(f"/api/v1/contacts/{contact.pk}/export/")

    assert response.status_code == 200
    export = response.json()
    person = export["contact"]
    assert (person["email"], person["first_name"], person["last_name"], person["properties"]) == (
        EMAIL,
        "Ada",
        "Lovelace",
        {"plan": "pro"},
    )
    assert (person["consent_source"], person["consent_ip"]) == ("signup form", "203.0.113.9")
    assert person["consented_at"] is not None
    assert [entry["name"] for entry in person["lists"]] == ["Newsletter"]
    assert [entry["name"] for entry in person["tags"]] == ["vip"]
    assert [(row["sequence_name"], row["status"]) for row in export["enrollments"]] == [("Onboarding", "active")]
    assert [(row["subject"], row["recipient"]) for row in export["messages"]] == [("Welcome Ada", EMAIL)]
    assert [(row["type"], row["url"], row["ip"]) for row in export["delivery_events"]] == [
        ("click", "https://example.com/one", "198.51.100.7")
    ]
    assert [(row["name"], row["properties"]) for row in export["custom_events"]] == [("purchased", {"sku": "A-1"})]
    assert export["suppression"] is None


def test_a_viewer_may_export_but_not_erase() -> None:
    contact = person_with_everything()
    viewer = role_client(contact.organization, Membership.Role.VIEWER)

    assert viewer.get(f"/api/v1/contacts/{contact.pk}/export/").status_code == 200
    assert viewer.post(f"/api/v1/contacts/{contact.pk}/erase/").status_code == 403
    assert Contact.objects.filter(pk=contact.pk).exists()


def rows_mentioning(organization_id: int, *needles: str) -> list[str]:
    """Every row of every model of the organization whose stored values mention a needle."""
    found = []
    for model in apps.get_models():
        if not any(field.name == "organization" for field in model._meta.fields):
            continue
        for row in model.objects.filter(organization_id=organization_id).values():
            text = json.dumps(row, default=str).lower()
            if any(needle.lower() in text for needle in needles):
                found.append(f"{model._meta.label}: {text[:200]}")
    return found


def test_erasure_leaves_nothing_of_the_person_but_the_hashed_suppression() -> None:
    contact = person_with_everything()
    organization = contact.organization
    services.contact_mark_bounced(contact=contact, detail=f"550 5.1.1 <{EMAIL}> unknown user")
    contact_import = ContactImport.objects.create(organization=organization, token="t1", file="imports/x.csv")
    ImportRejection.objects.create(
        organization=organization,
        contact_import=contact_import,
        line=3,
        reason="duplicate of line 2",
        raw=f"{EMAIL},Ada",
    )
    client = key_client(organization)
    # Another person created with an idempotency key and erased: the stored answer goes too.
    created = client.post(
        "/api/v1/contacts/", {"email": "bob@lovelace.example"}, format="json", HTTP_IDEMPOTENCY_KEY="bob"
    )
    client.post(f"/api/v1/contacts/{created.json()['id']}/erase/")
    IdempotencyRecord.objects.create(
        organization=organization,
        caller="key:1",
        key="k",
        method="POST",
        path="/api/v1/contacts/",
        fingerprint="0" * 64,
        status_code=201,
        response_body={"id": contact.pk, "email": EMAIL},
    )

    response = client.post(f"/api/v1/contacts/{contact.pk}/erase/")

    assert response.status_code == 200, response.content
    receipt = response.json()
    assert receipt["email_hash"] == email_hash(EMAIL)
    assert receipt["deleted"]["contact"] == 1 and receipt["deleted"]["message"] == 1
    assert receipt["deleted"]["contactevent"] == 1 and receipt["deleted"]["event"] == 1
    assert rows_mentioning(organization.pk, EMAIL, "lovelace", "Welcome Ada", "203.0.113.9", "198.51.100.7") == []
    assert not Contact.objects.filter(pk=contact.pk).exists()
    for model in (Enrollment, Message, Event, ContactEvent):
        assert not model.objects.filter(organization=organization).exists()
    suppressions = Suppression.objects.filter(organization=organization, email_hash=email_hash(EMAIL))
    # The hard bounce before the erasure stays the reason: the address must still never be mailed.
    assert list(suppressions.values_list("reason", "detail")) == [(Suppression.Reason.BOUNCED, "")]
    assert ImportRejection.objects.get().reason == "duplicate of line 2"
    assert client.get(f"/api/v1/contacts/{contact.pk}/export/").status_code == 404


def test_an_erased_address_created_again_is_never_mailed() -> None:
    contact = person_with_everything()
    client = key_client(contact.organization)
    client.post(f"/api/v1/contacts/{contact.pk}/erase/")

    recreated = client.post("/api/v1/contacts/", {"email": "ADA@Lovelace.example"}, format="json")
    upserted = client.post("/api/v1/contacts/bulk/", {"contacts": [{"email": "ada@lovelace.example"}]}, format="json")

    assert recreated.status_code == 201
    assert recreated.json()["status"] == "unsubscribed"
    assert upserted.json()["results"][0]["status"] == "unsubscribed"
    assert Contact.objects.get(organization=contact.organization).is_mailable is False


def test_another_organization_cannot_erase_or_export_a_contact() -> None:
    contact = person_with_everything()
    outsider = key_client(ContactFactory().organization)

    assert outsider.post(f"/api/v1/contacts/{contact.pk}/erase/").status_code == 404
    assert outsider.get(f"/api/v1/contacts/{contact.pk}/export/").status_code == 404
    assert Contact.objects.filter(pk=contact.pk).exists()
    assert not Suppression.objects.exists()


def test_erasure_blanks_the_address_in_delivery_reports_and_route_errors_but_keeps_their_counts() -> None:
    contact = person_with_everything()
    organization = contact.organization
    message = Message.objects.get(contact=contact)
    refusal = f"550 5.1.1 <{EMAIL}>: Recipient address rejected: User unknown"
    reports.smtp_refusal_apply(message=message, response=refusal)
    DeliveryRouteFactory(organization=organization, last_error=refusal)
    unrelated = DeliveryRouteFactory(organization=organization, last_error="421 4.7.0 try again later")
    [report] = BounceReport.objects.filter(organization=organization)
    assert EMAIL in report.diagnostic

    services.contact_erase(contact=Contact.objects.get(pk=contact.pk))

    assert rows_mentioning(organization.pk, EMAIL) == []
    report.refresh_from_db()
    assert (report.contact_id, report.diagnostic) == (None, "")
    assert (report.recipient_hash, report.classification) == (email_hash(EMAIL), BounceReport.Classification.HARD)
    unrelated.refresh_from_db()
    assert unrelated.last_error == "421 4.7.0 try again later"
