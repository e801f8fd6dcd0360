"""An accepted upload answers 201 at once with the queued import; the import then reports its
status, how much of the file is done and its counts, and lists every rejected row, page by page."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from api.tests.clients import key_client
from organizations.tests.factories import OrganizationFactory
from subscribers import importing
from subscribers.models import ContactImport
from subscribers.tests.csvdata import MAPPING, contacts_csv
from subscribers.tests.factories import ContactListFactory

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"


def upload(content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("people.csv", content, content_type="text/csv")


def test_an_upload_is_queued_then_reports_its_counts_and_rejected_rows(django_capture_on_commit_callbacks):
    organization = OrganizationFactory()
    contact_list = ContactListFactory(organization=organization)
    client = key_client(organization)
    data, expected = contacts_csv(500)
    form = {"file": upload(data), "mapping": json.dumps(MAPPING), "list_id": contact_list.pk, "existing": "update"}

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(IMPORTS, form, format="multipart")

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["filename"], body["file_size"], body["percentage"]) == (
        "queued",
        "people.csv",
        len(data),
        0.0,
    )
    assert (body["mapping"], body["list_id"], body["existing"]) == (MAPPING, contact_list.pk, "update")

    done = client.get(f"{IMPORTS}{body['id']}/").json()
    assert done["status"] == "completed" and done["error"] == ""
    assert (done["percentage"], done["bytes_processed"], done["rows_processed"]) == (100.0, len(data), 500)
    assert (done["created"], done["updated"], done["skipped"], done["rejected"]) == (495, 0, 0, 5)
    assert done["started_at"] and done["finished_at"]
    assert [item["id"] for item in client.get(IMPORTS).json()["results"]] == [body["id"]]

    first_page = client.get(f"{IMPORTS}{body['id']}/rejections/", {"page_size": 3}).json()
    second_page = client.get(first_page["next"]).json()
    rejected = first_page["results"] + second_page["results"]
    assert {item["line"]: item["reason"] for item in rejected} == expected.rejections
    assert [item["line"] for item in rejected] == sorted(expected.rejections)
    assert second_page["next"] is None
    not_utf8 = next(item for item in rejected if "UTF-8" in item["reason"])
    assert not_utf8["raw"].startswith("person") and "Ren\ufffd,Example" in not_utf8["raw"]


def test_an_import_in_progress_reports_how_much_of_the_file_is_done(settings):
    settings.IMPORT_CHUNK_ROWS = 100
    organization = OrganizationFactory()
    data, _ = contacts_csv(300, bad_every=0)
    contact_import = importing.contact_import_create(
        organization=organization,
        upload=SimpleUploadedFile("people.csv", data),
        mapping=MAPPING,
        run_in_background=False,
    )

    outcome = importing.contact_import_process(import_id=contact_import.pk, time_budget=0)

    assert outcome is importing.Outcome.PAUSED
    progress = key_client(organization).get(f"{IMPORTS}{contact_import.pk}/").json()
    assert progress["status"] == "running"
    assert progress["rows_processed"] == progress["created"]
    assert 0 < progress["rows_processed"] < 300
    assert 0 < progress["percentage"] < 100
    assert progress["bytes_processed"] < len(data)
    assert progress["finished_at"] is None


def test_a_retried_upload_with_the_same_idempotency_key_creates_one_import():
    organization = OrganizationFactory()
    client = key_client(organization)
    data, _ = contacts_csv(10)

    first = client.post(IMPORTS, {"file": upload(data)}, format="multipart", HTTP_IDEMPOTENCY_KEY="upload-1")
    again = client.post(IMPORTS, {"file": upload(data)}, format="multipart", HTTP_IDEMPOTENCY_KEY="upload-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert ContactImport.objects.filter(organization=organization).count() == 1
