"""Acceptance: a 100,000-row CSV with 1% malformed rows (invalid addresses, bytes that are not
UTF-8, ragged rows, duplicates within the file, unknown time zones, names too long) imports
every valid row once and reports each bad row by line and reason; the same file again adds
nothing (no contact, no consent record)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from django.core.files.base import ContentFile

from organizations.tests.factories import OrganizationFactory
from subscribers import importing
from subscribers.models import ConsentRecord, Contact, ContactImport, ImportRejection, Tag
from subscribers.tests.csvdata import MAPPING, contacts_csv
from subscribers.tests.factories import ContactListFactory

pytestmark = pytest.mark.django_db

ROWS = 100_000


def imported(organization: Any) -> dict[str, dict[str, Any]]:
    tags: dict[int, set[str]] = defaultdict(set)
    through = Contact.tags.through.objects.filter(contact__organization=organization)
    for contact_id, name in through.values_list("contact_id", "tag__name"):
        tags[contact_id].add(name)
    return {
        email: {
            "first_name": first_name,
            "last_name": last_name,
            "timezone": zone,
            "tags": tags[contact_id],
            "properties": properties,
        }
        for contact_id, email, first_name, last_name, zone, properties in Contact.objects.for_org(
            organization
        ).values_list("id", "email", "first_name", "last_name", "timezone", "properties")
    }


def run_import(organization: Any, data: bytes, list_id: int, capture: Any) -> ContactImport:
    with capture(execute=True):
        contact_import = importing.contact_import_create(
            organization=organization,
            upload=ContentFile(data, name="people.csv"),
            mapping=MAPPING,
            list_id=list_id,
        )
    contact_import.refresh_from_db()
    return contact_import


def test_every_valid_row_is_imported_once_and_every_bad_row_is_reported_by_line_and_reason(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    contact_list = ContactListFactory(organization=organization)
    data, expected = contacts_csv(ROWS)
    assert len(expected.rejections) == ROWS // 100

    first = run_import(organization, data, contact_list.pk, django_capture_on_commit_callbacks)

    assert first.status == ContactImport.Status.COMPLETED, first.error
    assert imported(organization) == expected.contacts
    rejections = dict(ImportRejection.objects.filter(contact_import=first).values_list("line", "reason"))
    assert rejections == expected.rejections
    assert (first.rows_processed, first.created_count, first.skipped_count, first.rejected_count) == (
        ROWS,
        len(expected.contacts),
        0,
        len(expected.rejections),
    )
    assert contact_list.contacts.count() == len(expected.contacts)
    assert first.byte_offset == first.file_size == len(data)
    statuses = set(Contact.objects.for_org(organization).values_list("status", "consent_source"))
    assert statuses == {(Contact.Status.ACTIVE, "import:people.csv")}
    assert ConsentRecord.objects.for_org(organization).count() == len(expected.contacts)

    again = run_import(organization, data, contact_list.pk, django_capture_on_commit_callbacks)

    assert again.status == ContactImport.Status.COMPLETED, again.error
    assert (again.created_count, again.skipped_count, again.rejected_count) == (
        0,
        len(expected.contacts),
        len(expected.rejections),
    )
    assert imported(organization) == expected.contacts
    assert contact_list.contacts.count() == len(expected.contacts)
    assert Tag.objects.for_org(organization).count() == 3
    assert ConsentRecord.objects.for_org(organization).count() == len(expected.contacts)
    assert dict(ImportRejection.objects.filter(contact_import=again).values_list("line", "reason")) == rejections
