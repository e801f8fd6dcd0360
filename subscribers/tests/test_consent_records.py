"""Every change of consent leaves a consent record: subscribe (one contact, or many through the
bulk upsert), unsubscribe, bounce and complaint (suppress), suppressions added and lifted,
resubscribe, and erase, which keeps the record without personal data."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory

from organizations.tests.factories import OrganizationFactory, UserFactory
from subscribers import services
from subscribers.addresses import email_hash
from subscribers.models import ConsentRecord, Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def actions(**filters: object) -> list[str]:
    return list(ConsentRecord.objects.filter(**filters).order_by("id").values_list("action", flat=True))


def test_creating_a_contact_records_the_consent_given():
    organization = OrganizationFactory()

    contact = services.contact_create(
        organization=organization,
        email="Ann@Example.com",
        consent_source="checkout page",
        consent_ip="203.0.113.1",
        consent_wording="Send me offers",
    )

    record = ConsentRecord.objects.get()
    assert (record.contact, record.action, record.source) == (contact, "subscribe", "checkout page")
    assert (record.ip, record.wording, record.email_hash) == (
        "203.0.113.1",
        "Send me offers",
        email_hash("ann@example.com"),
    )
    assert record.detail == {"status": "active"}


def test_unsubscribe_bounce_and_complaint_are_recorded_once_each():
    contact = ContactFactory()

    services.contact_unsubscribe(contact=contact, source="unsubscribe page", ip="192.0.2.4", user_agent="Mail/1")
    services.contact_unsubscribe(contact=contact, source="unsubscribe page")  # changes nothing
    services.contact_mark_bounced(contact=contact, detail="550 5.1.1 unknown")  # an unsubscribed stays so
    services.contact_mark_complained(contact=contact, detail="abuse report")  # a complaint outranks

    records = list(ConsentRecord.objects.filter(contact=contact).order_by("id"))
    assert [record.action for record in records] == ["unsubscribe", "suppress"]
    assert (records[0].ip, records[0].user_agent) == ("192.0.2.4", "Mail/1")
    assert records[1].source == "complaint" and records[1].detail["reason"] == "complained"


def test_a_pending_contact_that_unsubscribes_is_unsubscribed():
    contact = ContactFactory(status=Contact.Status.PENDING)

    services.contact_unsubscribe(contact=contact, source="preference page")

    assert Contact.objects.get(pk=contact.pk).status == Contact.Status.UNSUBSCRIBED
    assert actions(contact=contact) == ["unsubscribe"]


def test_suppressions_added_and_lifted_are_recorded_by_address():
    organization = OrganizationFactory()
    staff = UserFactory()

    suppression = services.suppression_add(
        organization=organization, email="nobody@example.com", reason="manual", source="admin", actor=staff
    )
    services.suppression_add(organization=organization, email="nobody@example.com", reason="manual")
    services.suppression_lift(suppression=suppression, actor=staff)

    records = list(ConsentRecord.objects.order_by("id"))
    assert [record.action for record in records] == ["suppress", "lift"]
    assert all(record.email_hash == email_hash("nobody@example.com") for record in records)
    assert all(record.actor == staff and record.contact is None for record in records)


def test_resubscribing_records_the_fresh_consent_and_the_lifted_suppression():
    contact = ContactFactory()
    services.contact_unsubscribe(contact=contact, source="link")

    services.contact_resubscribe(contact=contact, source="phone call", consent_ip="198.51.100.2")

    record = ConsentRecord.objects.filter(contact=contact).latest("id")
    assert (record.action, record.source, record.ip) == ("resubscribe", "phone call", "198.51.100.2")
    assert record.detail == {"previous_status": "unsubscribed", "suppression_lifted": "unsubscribed"}


def test_the_bulk_upsert_records_consent_for_each_contact_it_creates():
    organization = OrganizationFactory()
    services.suppression_add(organization=organization, email="erased@example.com", reason="erased")
    rows = [services.BulkRow(index=n, email=f"person{n}@example.com") for n in range(3)]
    rows.append(services.BulkRow(index=3, email="erased@example.com"))

    services.contacts_bulk_upsert(organization=organization, rows=rows, consent_source="crm sync")
    services.contacts_bulk_upsert(organization=organization, rows=rows[:1], consent_source="crm sync")

    records = ConsentRecord.objects.filter(action="subscribe")
    assert records.count() == 4
    assert {record.contact.email for record in records} == {row.email for row in rows}
    assert {record.source for record in records} == {"crm sync"}
    assert records.get(contact__email="erased@example.com").detail == {"status": "unsubscribed"}


def test_erasing_keeps_an_erase_record_and_strips_personal_data_from_the_history():
    contact = ContactFactory(email="gone@example.com")
    services.contact_unsubscribe(contact=contact, source="api", detail="asked by gone@example.com", ip="192.0.2.9")

    services.contact_erase(contact=contact, source="api (key ab12)")

    records = list(ConsentRecord.objects.filter(email_hash=email_hash("gone@example.com")).order_by("id"))
    assert [record.action for record in records] == ["unsubscribe", "erase"]
    for record in records:
        assert record.contact is None and record.ip is None and record.user_agent == ""
        assert "gone@example.com" not in repr(record.detail) + record.source + record.wording
    assert records[1].source == "api (key ab12)"


def test_consent_records_are_read_only_in_the_admin():
    admin = site._registry[ConsentRecord]
    request = RequestFactory().get("/")
    request.user = UserFactory(is_superuser=True)
    record = services.consent_record(
        organization=OrganizationFactory(), address_hash="0" * 64, action="suppress", source="test"
    )

    assert not admin.has_add_permission(request)
    assert not admin.has_change_permission(request, record)
    assert not admin.has_delete_permission(request, record)
    assert admin.has_view_permission(request, record)
    assert Suppression.objects.count() == 0
