"""The database decides who works on an import: a worker claims it with a lease; a duplicate
dispatch, or a second worker while the lease lasts, does nothing; imports_resume dispatches only
imports that nobody holds; a task that runs out of time hands the rest to a fresh task at the
checkpoint of its last chunk, however many parsed blocks that chunk was made of."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from organizations.tests.factories import OrganizationFactory
from subscribers import importing, tasks
from subscribers.models import Contact, ContactImport
from subscribers.tests.csvdata import MAPPING, contacts_csv

pytestmark = pytest.mark.django_db


def queued_import(rows: int = 40) -> ContactImport:
    data, _ = contacts_csv(rows, bad_every=0)
    return importing.contact_import_create(
        organization=OrganizationFactory(),
        upload=ContentFile(data, name="people.csv"),
        mapping=MAPPING,
        run_in_background=False,
    )


def test_a_second_dispatch_of_an_import_does_nothing():
    contact_import = queued_import()

    first = importing.contact_import_process(import_id=contact_import.pk)
    second = importing.contact_import_process(import_id=contact_import.pk)

    contact_import.refresh_from_db()
    assert (first, second) == (importing.Outcome.FINISHED, importing.Outcome.NOT_CLAIMED)
    assert (contact_import.status, contact_import.created_count, contact_import.rows_processed) == ("completed", 40, 40)
    assert Contact.objects.for_org(contact_import.organization_id).count() == 40


def test_an_import_whose_worker_holds_the_lease_is_left_alone_until_the_lease_runs_out():
    contact_import = queued_import()
    # What a live worker's claim looks like.
    ContactImport.objects.filter(pk=contact_import.pk).update(
        status=ContactImport.Status.RUNNING, lease_expires_at=timezone.now() + dt.timedelta(minutes=5)
    )

    assert importing.contact_import_process(import_id=contact_import.pk) is importing.Outcome.NOT_CLAIMED
    assert tasks.imports_resume() == 0
    assert not Contact.objects.for_org(contact_import.organization_id).exists()

    ContactImport.objects.filter(pk=contact_import.pk).update(lease_expires_at=timezone.now())
    assert tasks.imports_resume() == 1

    contact_import.refresh_from_db()
    assert (contact_import.status, contact_import.created_count, contact_import.lease_expires_at) == (
        ContactImport.Status.COMPLETED,
        40,
        None,
    )


def test_a_queued_import_whose_dispatch_was_lost_is_dispatched_again():
    contact_import = queued_import()
    assert tasks.imports_resume() == 0  # its dispatch may still be on its way

    ContactImport.objects.filter(pk=contact_import.pk).update(lease_expires_at=timezone.now())

    assert tasks.imports_resume() == 1
    assert ContactImport.objects.get(pk=contact_import.pk).status == ContactImport.Status.COMPLETED


def test_a_task_out_of_time_hands_the_rest_to_a_fresh_task(settings, monkeypatch):
    settings.IMPORT_CHUNK_ROWS = 50
    monkeypatch.setattr(tasks, "IMPORT_TASK_BUDGET_SECONDS", 0)
    contact_import = queued_import(rows=300)

    tasks.import_run.delay(contact_import.pk)

    contact_import.refresh_from_db()
    assert (contact_import.status, contact_import.created_count, contact_import.rows_processed) == (
        "completed",
        300,
        300,
    )


def test_an_import_whose_file_is_gone_fails_with_a_message_a_person_can_act_on():
    contact_import = queued_import()
    contact_import.file.delete(save=False)

    assert importing.contact_import_process(import_id=contact_import.pk) is importing.Outcome.FINISHED

    contact_import.refresh_from_db()
    assert contact_import.status == ContactImport.Status.FAILED
    assert contact_import.error == "The uploaded file is no longer available: upload it again."
    assert contact_import.finished_at is not None and contact_import.lease_expires_at is None


def test_a_chunk_of_several_parsed_blocks_is_written_and_checkpointed_as_one(settings, monkeypatch):
    settings.IMPORT_CHUNK_ROWS = 20
    monkeypatch.setattr(importing, "PARSE_BLOCK_LINES", 7)
    contact_import = queued_import(rows=50)  # the row on lines 11-12 has a line break in a quoted name

    outcomes = [importing.contact_import_process(import_id=contact_import.pk, time_budget=0)]
    contact_import.refresh_from_db()
    first_checkpoint = (contact_import.line_number, contact_import.rows_processed, contact_import.created_count)
    while outcomes[-1] is importing.Outcome.PAUSED:
        outcomes.append(importing.contact_import_process(import_id=contact_import.pk, time_budget=0))

    # Three blocks of 7 lines make the first chunk: lines 2 to 22, 20 rows. Three chunks in all
    # (51 lines); the task that writes the last one is out of time too.
    assert first_checkpoint == (23, 20, 20)
    contact_import.refresh_from_db()
    assert outcomes == [importing.Outcome.PAUSED] * 3 + [importing.Outcome.FINISHED]
    assert (contact_import.status, contact_import.created_count, contact_import.byte_offset) == (
        ContactImport.Status.COMPLETED,
        50,
        contact_import.file_size,
    )
    assert Contact.objects.for_org(contact_import.organization_id).count() == 50
