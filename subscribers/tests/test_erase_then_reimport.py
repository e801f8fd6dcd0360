"""Erase, then the same address again: through the CSV import, the bulk upsert and the subscribe
form it comes back unmailable, and an erase consent record without personal data says why."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from conftest import SmtpServer
from delivery.models import Message
from delivery.tests.factories import email_sequence
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences.services import enrollments_create
from subscribers import importing, links, services
from subscribers.addresses import email_hash
from subscribers.models import ConsentRecord, Contact, ContactImport, Suppression
from subscribers.tests.factories import ContactFactory, SubscribeFormFactory

pytestmark = pytest.mark.django_db

ADDRESS = "erased.person@example.com"


@pytest.fixture
def organization() -> Organization:
    cache.clear()
    organization = OrganizationFactory()
    contact = ContactFactory(organization=organization, email=ADDRESS, first_name="Erin")
    services.contact_unsubscribe(contact=contact, source="api", ip="192.0.2.33", user_agent="Browser/9")
    services.contact_resubscribe(contact=contact, source="api", consent_ip="192.0.2.34")
    services.contact_erase(contact=contact, source="api (key erase)")
    assert not Contact.objects.filter(email=ADDRESS).exists()
    return organization


def import_csv(organization: Organization, capture: Any) -> None:
    with capture(execute=True):
        contact_import = importing.contact_import_create(
            organization=organization,
            upload=ContentFile(f"email,first_name\n{ADDRESS.upper()},Erin\n".encode(), name="crm.csv"),
            mapping={"email": "email", "first_name": "first_name"},
            existing=ContactImport.Existing.UPDATE,
        )
    contact_import.refresh_from_db()
    assert contact_import.status == ContactImport.Status.COMPLETED, contact_import.error


def assert_stays_suppressed(organization: Organization, smtp_route: SmtpServer, capture: Any) -> None:
    contact = Contact.objects.get(organization=organization, email=ADDRESS)
    assert contact.status != Contact.Status.ACTIVE
    assert Suppression.objects.get(organization=organization, email_hash=email_hash(ADDRESS)).reason == "erased"
    sequence = email_sequence(organization)
    assert enrollments_create(sequence=sequence, contacts=[contact]).enrolled_count == 0
    with capture(execute=True):
        engine.tick()
    assert not Message.objects.filter(contact=contact).exists()
    assert all(ADDRESS not in mail.recipients for mail in smtp_route.received if "confirm" not in mail.text())


def assert_erase_record_without_personal_data(organization: Organization) -> None:
    erase = ConsentRecord.objects.get(organization=organization, action=ConsentRecord.Action.ERASE)
    assert erase.email_hash == email_hash(ADDRESS)
    assert erase.contact is None and erase.ip is None and erase.user_agent == ""
    for record in ConsentRecord.objects.filter(organization=organization, occurred_at__lte=erase.occurred_at):
        stored = f"{record.source} {record.wording} {record.detail} {record.ip} {record.user_agent}"
        assert ADDRESS not in stored.lower() and "erin" not in stored.lower()
        assert record.ip is None and record.user_agent == ""


def test_reimported_through_the_csv_import_the_address_stays_suppressed(
    organization: Organization, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    import_csv(organization, django_capture_on_commit_callbacks)

    assert_stays_suppressed(organization, smtp_route, django_capture_on_commit_callbacks)
    assert_erase_record_without_personal_data(organization)
    assert smtp_route.received == []


def test_reimported_through_the_bulk_upsert_the_address_stays_suppressed(
    organization: Organization, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    [result] = services.contacts_bulk_upsert(
        organization=organization, rows=[services.BulkRow(index=0, email=ADDRESS, fields={"first_name": "Erin"})]
    )

    assert result.result == "created" and result.status == Contact.Status.UNSUBSCRIBED
    assert_stays_suppressed(organization, smtp_route, django_capture_on_commit_callbacks)
    assert_erase_record_without_personal_data(organization)
    assert smtp_route.received == []


def test_signed_up_again_through_a_form_the_address_stays_suppressed_until_confirmed(
    organization: Organization, smtp_route: SmtpServer, django_capture_on_commit_callbacks, client: Client
):
    form = SubscribeFormFactory(organization=organization)

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(reverse("subscribers:subscribe", args=[form.token]), {"email": ADDRESS})

    assert answer.status_code == 200
    assert_stays_suppressed(organization, smtp_route, django_capture_on_commit_callbacks)
    assert_erase_record_without_personal_data(organization)
    # Only the confirmation the person asked for: proof that the address is theirs before
    # anything else is sent to it.
    [confirmation] = smtp_route.wait_for(1, timeout=10)
    assert "confirm" in confirmation.parsed()["Subject"].lower()


def _suppress(contact: Contact, reason: str) -> None:
    detail = f"550 5.1.1 <{contact.email}> unknown"
    if reason == Suppression.Reason.BOUNCED:
        services.contact_mark_bounced(contact=contact, detail=detail)
    elif reason == Suppression.Reason.COMPLAINED:
        services.contact_mark_complained(contact=contact, detail=detail)
    else:
        services.suppression_add(organization=contact.organization, email=contact.email, reason=reason, detail=detail)


@pytest.mark.parametrize(
    "reason", [Suppression.Reason.BOUNCED, Suppression.Reason.COMPLAINED, Suppression.Reason.MANUAL]
)
def test_an_erased_address_that_bounced_complained_or_was_suppressed_by_staff_stays_blocked(
    reason: str, smtp_route: SmtpServer, django_capture_on_commit_callbacks, client: Client
):
    cache.clear()
    organization = OrganizationFactory(double_opt_in=True)
    contact = ContactFactory(organization=organization, email=ADDRESS)
    _suppress(contact, reason)

    services.contact_erase(contact=contact)

    suppression = Suppression.objects.get(organization=organization, email_hash=email_hash(ADDRESS))
    assert (suppression.reason, suppression.detail) == (reason, "")
    form = SubscribeFormFactory(organization=organization)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("subscribers:subscribe", args=[form.token]), {"email": ADDRESS})
    sign_up = ConsentRecord.objects.filter(organization=organization, action=ConsentRecord.Action.SUBSCRIBE).latest(
        "id"
    )
    confirmed = client.post(reverse("subscribers:confirm", args=[links.confirmation_token(sign_up.pk)]))
    assert smtp_route.received == []
    assert confirmed.status_code == 409
    assert Suppression.objects.get(organization=organization, email_hash=email_hash(ADDRESS)).reason == reason
    services.contact_erase(contact=Contact.objects.get(organization=organization, email=ADDRESS))
    [result] = services.contacts_bulk_upsert(
        organization=organization, rows=[services.BulkRow(index=0, email=ADDRESS, fields={})]
    )
    assert result.status == Suppression.CONTACT_STATUS_BY_REASON[reason]
