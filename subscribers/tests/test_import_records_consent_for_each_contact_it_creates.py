"""An import is a subscribe for every contact it creates: one consent record each, naming the
source (the import's consent source, or the file), the address's hash, the person who uploaded
the file and the import; contacts that already existed get none, and importing again adds none."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile

from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory, UserFactory
from subscribers import importing
from subscribers.addresses import email_hash
from subscribers.models import ConsentRecord, Contact, ContactImport, Suppression
from subscribers.services import suppression_add
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

CSV = b"email,first_name\n  Ada@Example.COM ,Ada\nbob@example.com,Bob\ncarol@example.com,Carol\n"


def run(organization: Organization, capture: Any, **options: Any) -> ContactImport:
    with capture(execute=True):
        contact_import = importing.contact_import_create(
            organization=organization, upload=ContentFile(CSV, name="crm.csv"), **options
        )
    contact_import.refresh_from_db()
    assert contact_import.status == ContactImport.Status.COMPLETED, contact_import.error
    return contact_import


def records(organization: Organization) -> list[tuple[Any, ...]]:
    return sorted(
        ConsentRecord.objects.for_org(organization).values_list(
            "contact__email", "email_hash", "action", "source", "actor_id", "ip", "detail"
        )
    )


@pytest.mark.parametrize("existing", [ContactImport.Existing.SKIP, ContactImport.Existing.UPDATE])
def test_each_contact_created_gets_one_subscribe_record_and_existing_ones_none(
    existing: str, django_capture_on_commit_callbacks
):
    organization = OrganizationFactory()
    uploader = UserFactory()
    ContactFactory(organization=organization, email="bob@example.com")

    contact_import = run(
        organization,
        django_capture_on_commit_callbacks,
        existing=existing,
        consent_source="trade fair 2026",
        created_by=uploader,
    )

    detail = {"import_id": contact_import.pk, "status": "active"}
    assert records(organization) == [
        ("ada@example.com", email_hash("ada@example.com"), "subscribe", "trade fair 2026", uploader.pk, None, detail),
        (
            "carol@example.com",
            email_hash("carol@example.com"),
            "subscribe",
            "trade fair 2026",
            uploader.pk,
            None,
            detail,
        ),
    ]
    ada = Contact.objects.get(organization=organization, email="ada@example.com")
    assert ada.consent_records.get().occurred_at == ada.consented_at

    run(organization, django_capture_on_commit_callbacks, existing=existing)

    assert len(records(organization)) == 2


def test_the_record_names_the_file_when_no_source_is_given_and_the_status_a_suppression_gave(
    django_capture_on_commit_callbacks,
):
    organization = OrganizationFactory()
    suppression_add(organization=organization, email="carol@example.com", reason=Suppression.Reason.COMPLAINED)
    other = OrganizationFactory()

    contact_import = run(organization, django_capture_on_commit_callbacks)
    run(other, django_capture_on_commit_callbacks)

    imported = ConsentRecord.objects.for_org(organization).filter(source="import:crm.csv")
    assert sorted(imported.values_list("contact__email", "detail__status")) == [
        ("ada@example.com", "active"),
        ("bob@example.com", "active"),
        ("carol@example.com", "complained"),
    ]
    assert set(imported.values_list("actor_id", "detail__import_id")) == {(None, contact_import.pk)}
    assert ConsentRecord.objects.for_org(other).filter(source="import:crm.csv").count() == 3
