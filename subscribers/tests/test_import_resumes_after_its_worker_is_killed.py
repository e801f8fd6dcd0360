"""Acceptance: a worker killed (SIGKILL) in the middle of an import, after at least one chunk
was committed, is replaced by one that resumes from the checkpoint; the end result is the same
as an uninterrupted run of the same file: the same contacts, list memberships, tags, consent
records, rejected rows and counts, nothing twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from conftest import REPO, process_env, wait_until
from organizations.tests.factories import OrganizationFactory
from subscribers import importing, tasks
from subscribers.models import ConsentRecord, Contact, ContactImport, ImportRejection
from subscribers.tests.csvdata import MAPPING, contacts_csv
from subscribers.tests.factories import ContactListFactory

ROWS = 20_000
CHILD_CHUNK_ROWS = 200
CHILD_LEASE_SECONDS = 10


def outcome(contact_import: ContactImport) -> dict[str, Any]:
    """Everything an import leaves behind, without ids and timestamps."""
    contacts = Contact.objects.for_org(contact_import.organization_id)
    return {
        "contacts": sorted(
            contacts.values_list("email", "first_name", "last_name", "timezone", "status", "consent_source")
        ),
        "properties": dict(contacts.values_list("email", "properties")),
        "listed": sorted(contact_import.contact_list.contacts.values_list("email", flat=True)),
        "tags": sorted(
            Contact.tags.through.objects.filter(contact__in=contacts).values_list("contact__email", "tag__name")
        ),
        "consent": sorted(
            ConsentRecord.objects.for_org(contact_import.organization_id).values_list(
                "contact__email", "email_hash", "action", "source", "detail__status"
            )
        ),
        "rejections": sorted(
            ImportRejection.objects.filter(contact_import=contact_import).values_list("line", "reason", "raw")
        ),
        "counts": (
            contact_import.status,
            contact_import.rows_processed,
            contact_import.created_count,
            contact_import.updated_count,
            contact_import.skipped_count,
            contact_import.rejected_count,
            contact_import.byte_offset,
        ),
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_import_whose_worker_is_killed_resumes_and_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    data, expected = contacts_csv(ROWS)
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    killed_org, reference_org = OrganizationFactory(), OrganizationFactory()
    killed_list = ContactListFactory(organization=killed_org, name="Imported")
    reference_list = ContactListFactory(organization=reference_org, name="Imported")
    env = process_env(tmp_path, redis=False) | {
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "IMPORT_CHUNK_ROWS": str(CHILD_CHUNK_ROWS),
        "IMPORT_LEASE_SECONDS": str(CHILD_LEASE_SECONDS),
    }
    worker = subprocess.Popen(  # fmt: skip
        [
            sys.executable,
            "manage.py",
            "import_contacts",
            path,
            "--org",
            killed_org.slug,
            "--list",
            str(killed_list.pk),
            "--mapping",
            json.dumps(MAPPING),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    imports = ContactImport.objects.filter(organization=killed_org)
    try:
        wait_until(lambda: imports.filter(line_number__gt=1).exists(), timeout=120, what="a first checkpoint")
    finally:
        worker.send_signal(signal.SIGKILL)
        output = worker.communicate(timeout=30)[0].decode()
    killed = imports.get()
    assert killed.status == ContactImport.Status.RUNNING, output
    assert 0 < killed.byte_offset < killed.file_size, "killed after its first chunk and before its last"
    assert 0 < Contact.objects.for_org(killed_org).count() < len(expected.contacts)

    # Nothing picks the import up while the dead worker's lease lasts; afterwards the periodic
    # imports_resume does (Celery runs it in this process), with chunks of another size.
    assert killed.lease_expires_at > timezone.now()
    assert tasks.imports_resume() == 0
    wait_until(
        lambda: imports.get().lease_expires_at <= timezone.now(),
        timeout=CHILD_LEASE_SECONDS + 5,
        what="the lease to run out",
    )
    assert tasks.imports_resume() == 1
    resumed = imports.get()

    reference = importing.contact_import_create(
        organization=reference_org,
        upload=ContentFile(data, name="people.csv"),
        mapping=MAPPING,
        list_id=reference_list.pk,
    )
    reference.refresh_from_db()
    assert reference.status == resumed.status == ContactImport.Status.COMPLETED, (reference.error, resumed.error)
    assert outcome(resumed) == outcome(reference)
    assert {email for email, *_ in outcome(resumed)["contacts"]} == set(expected.contacts)
    assert {line for line, *_ in outcome(resumed)["rejections"]} == set(expected.rejections)
