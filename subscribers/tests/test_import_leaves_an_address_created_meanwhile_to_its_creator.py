"""A chunk's contacts are inserted without ON CONFLICT while no address of the file has turned out
to exist; an address another transaction creates meanwhile (a form, the API, a second import)
makes that insert fail on the unique address. The chunk is then written again conceding it: the
import completes, the other writer's contact stands, and everything else is imported once."""

from __future__ import annotations

import threading

import psycopg2
import pytest
from django.core.files.base import ContentFile
from django.db import connection

from conftest import requires_postgres, wait_until
from organizations.tests.factories import OrganizationFactory
from subscribers import importing
from subscribers.models import ConsentRecord, Contact, ContactImport
from subscribers.tests.factories import ContactListFactory

CSV = b"email,first_name,tags\nada@example.com,Ada,vip\nbob@example.com,Bob,vip\ncarol@example.com,Carol,\n"


def open_other_connection() -> psycopg2.extensions.connection:
    db = connection.settings_dict
    return psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"] or "127.0.0.1", port=db["PORT"]
    )


def waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_an_address_created_while_the_chunk_inserts_is_left_to_its_creator_and_the_rest_imported():
    organization = OrganizationFactory()
    contact_list = ContactListFactory(organization=organization)
    contact_import = importing.contact_import_create(
        organization=organization,
        upload=ContentFile(CSV, name="people.csv"),
        list_id=contact_list.pk,
        run_in_background=False,
    )
    other = open_other_connection()
    try:
        with other.cursor() as cursor:  # psycopg2 opens a transaction: not committed yet
            cursor.execute(
                "INSERT INTO subscribers_contact (organization_id, email, first_name, last_name, properties, "
                "timezone, status, consent_source, created_at, updated_at) "
                "VALUES (%s, 'bob@example.com', 'Robert', '', '{}', '', 'active', 'form', now(), now())",
                [organization.pk],
            )

        def work() -> None:
            try:
                importing.contact_import_process(import_id=contact_import.pk)
            finally:
                connection.close()

        worker = threading.Thread(target=work)
        worker.start()
        # The import's insert of bob waits for the other transaction, which then commits.
        wait_until(waiting_for_a_lock, timeout=30, what="the import's insert to wait for the other writer")
        other.commit()
        worker.join(timeout=60)
    finally:
        other.close()

    contact_import.refresh_from_db()
    assert contact_import.status == ContactImport.Status.COMPLETED, contact_import.error
    assert (contact_import.created_count, contact_import.skipped_count) == (2, 1)
    contacts = Contact.objects.for_org(organization)
    assert sorted(contacts.values_list("email", "first_name")) == [
        ("ada@example.com", "Ada"),
        ("bob@example.com", "Robert"),
        ("carol@example.com", "Carol"),
    ]
    assert sorted(contact_list.contacts.values_list("email", flat=True)) == ["ada@example.com", "carol@example.com"]
    assert list(contacts.filter(tags__name="vip").values_list("email", flat=True)) == ["ada@example.com"]
    assert sorted(ConsentRecord.objects.for_org(organization).values_list("contact__email", flat=True)) == [
        "ada@example.com",
        "carol@example.com",
    ]
