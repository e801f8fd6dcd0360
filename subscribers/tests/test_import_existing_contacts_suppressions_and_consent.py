"""What an import does to contacts that already exist (skip leaves them be, update fills in the
file's non-empty cells, merges properties and adds lists and tags), to suppressed addresses
(imported unmailable, as contact_create would) and to consent."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile

from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment
from sequences.services import enrollment_create
from subscribers import importing
from subscribers.models import Contact, ContactImport, Suppression, Tag
from subscribers.services import suppression_add
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory, sequence_with_a_step

pytestmark = pytest.mark.django_db

CSV = b"email,first_name,last_name,plan,tags\nada@example.com,Ada,,gold,vip\nnew@example.com,New,Person,,\n"
MAPPING = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "plan": "properties.plan",
    "tags": "tags",
}


def run(organization: Organization, capture: Any, **options: Any) -> ContactImport:
    with capture(execute=True):
        contact_import = importing.contact_import_create(
            organization=organization, upload=ContentFile(CSV, name="crm.csv"), mapping=MAPPING, **options
        )
    contact_import.refresh_from_db()
    assert contact_import.status == ContactImport.Status.COMPLETED, contact_import.error
    return contact_import


@pytest.fixture
def ada() -> Contact:
    contact = ContactFactory(
        email="ada@example.com",
        first_name="Augusta",
        last_name="Lovelace",
        properties={"plan": "free", "city": "Paris"},
    )
    contact.lists.add(ContactListFactory(organization=contact.organization, name="Old"))
    return contact


def test_skip_leaves_an_existing_contact_as_it_is(ada: Contact, django_capture_on_commit_callbacks):
    newsletter = ContactListFactory(organization=ada.organization, name="Newsletter")

    contact_import = run(ada.organization, django_capture_on_commit_callbacks, list_id=newsletter.pk)

    ada.refresh_from_db()
    assert (contact_import.created_count, contact_import.updated_count, contact_import.skipped_count) == (1, 0, 1)
    assert (ada.first_name, ada.last_name, ada.properties) == ("Augusta", "Lovelace", {"plan": "free", "city": "Paris"})
    assert list(ada.lists.values_list("name", flat=True)) == ["Old"]
    assert not ada.tags.exists()
    assert list(newsletter.contacts.values_list("email", flat=True)) == ["new@example.com"]


def test_update_fills_in_non_empty_cells_merges_properties_and_adds_lists_and_tags(
    ada: Contact, django_capture_on_commit_callbacks
):
    newsletter = ContactListFactory(organization=ada.organization, name="Newsletter")

    contact_import = run(ada.organization, django_capture_on_commit_callbacks, list_id=newsletter.pk, existing="update")

    ada.refresh_from_db()
    assert (contact_import.created_count, contact_import.updated_count, contact_import.skipped_count) == (1, 1, 0)
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert ada.properties == {"plan": "gold", "city": "Paris"}
    assert sorted(ada.lists.values_list("name", flat=True)) == ["Newsletter", "Old"]
    assert list(ada.tags.values_list("name", flat=True)) == ["vip"]
    assert ada.consent_source == "test"

    again = run(ada.organization, django_capture_on_commit_callbacks, list_id=newsletter.pk, existing="update")

    assert (again.created_count, again.updated_count) == (0, 2)
    assert Contact.objects.for_org(ada.organization).count() == 2
    assert Tag.objects.for_org(ada.organization).count() == 1


def test_an_update_that_meets_a_sequence_goal_exits_the_sequence(ada: Contact, django_capture_on_commit_callbacks):
    vip = TagFactory(organization=ada.organization, name="vip")
    sequence = sequence_with_a_step(ada.organization, goal={"type": "has_tag", "tag": vip.pk})
    enrollment = enrollment_create(sequence=sequence, contact=ada)

    run(ada.organization, django_capture_on_commit_callbacks, existing="update")

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.GOAL_REACHED)


def test_a_suppressed_address_is_imported_unmailable(django_capture_on_commit_callbacks):
    organization = OrganizationFactory()
    suppression_add(organization=organization, email="NEW@example.com", reason=Suppression.Reason.BOUNCED)

    run(organization, django_capture_on_commit_callbacks)

    suppressed = Contact.objects.get(organization=organization, email="new@example.com")
    mailable = Contact.objects.get(organization=organization, email="ada@example.com")
    assert (suppressed.status, mailable.status) == (Contact.Status.BOUNCED, Contact.Status.ACTIVE)
    assert suppressed.status_changed_at is not None and mailable.status_changed_at is None


def test_new_contacts_record_where_they_consented(django_capture_on_commit_callbacks):
    organization = OrganizationFactory()
    run(organization, django_capture_on_commit_callbacks, consent_source="  webinar sign-up sheet ")
    other = OrganizationFactory()
    run(other, django_capture_on_commit_callbacks)

    assert set(Contact.objects.for_org(organization).values_list("consent_source", flat=True)) == {
        "webinar sign-up sheet"
    }
    assert set(Contact.objects.for_org(other).values_list("consent_source", flat=True)) == {"import:crm.csv"}
    assert not Contact.objects.filter(consented_at__isnull=True).exists()
