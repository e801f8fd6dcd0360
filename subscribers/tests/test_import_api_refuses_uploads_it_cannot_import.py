"""An upload is checked before anything is stored: a file the import could not read, or a
mapping it could not follow, is a 400 naming the field and the problem, and creates nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from api.tests.clients import key_client
from organizations.tests.factories import OrganizationFactory
from subscribers.models import ContactImport

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"
GOOD = b"email,first_name,company\nann@example.com,Ann,Acme\n"


def upload(content: bytes, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"file": upload(b"name,phone\nAnn,123\n")}, "mapping", "Map a column to email"),
        (
            {"file": upload(GOOD), "mapping": json.dumps({"email": "email", "company": "firm"})},
            "mapping",
            "not a field",
        ),
        ({"file": upload(GOOD), "mapping": json.dumps({"mail": "email"})}, "mapping", "no column “mail”"),
        ({"file": upload(GOOD), "mapping": json.dumps({"email": "email", "first_name": "email"})}, "mapping", "both"),
        ({"file": upload(GOOD), "mapping": json.dumps({"email": 7})}, "mapping", "a string"),
        ({"file": upload(GOOD), "mapping": "{not json"}, "mapping", "JSON"),
        ({"file": upload(GOOD), "mapping": "[1, 2]"}, "mapping", "object"),
        ({"file": upload(GOOD), "mapping": json.dumps({"email\u0000": "email"})}, "mapping", "NUL"),
        ({"file": upload(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "people.png")}, "file", "not a CSV file"),
        ({"file": upload("émail,name\n".encode("latin-1"))}, "file", "not valid UTF-8"),
        ({"file": upload(b"")}, "file", "empty"),
        ({"file": upload(b'"email\nann@example.com\n')}, "file", "not valid CSV"),
        ({}, "file", "No file"),
        ({"file": upload(GOOD), "existing": "overwrite"}, "existing", "not a valid choice"),
        ({"file": upload(GOOD), "list_id": "99999999999999999999"}, "list_id", ""),
        ({"file": upload(GOOD), "consent_source": "x" * 201}, "consent_source", "200"),
    ],
)
def test_an_upload_the_import_cannot_take_is_a_400_naming_the_field(form: dict[str, Any], field: str, message: str):
    response = key_client(OrganizationFactory()).post(IMPORTS, form, format="multipart")

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert {error["field"] for error in errors} == {field}
    assert any(message in error["message"] for error in errors), errors
    assert not ContactImport.objects.exists()


def test_a_file_over_the_size_limit_is_refused(settings):
    settings.IMPORT_MAX_FILE_BYTES = 1024
    content = GOOD + b"bob@example.com,Bob,Acme\n" * 60

    response = key_client(OrganizationFactory()).post(IMPORTS, {"file": upload(content)}, format="multipart")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "file", "message": "The file is larger than the limit of 1 KB.", "code": "invalid"}
    ]
    assert not ContactImport.objects.exists()


def test_a_json_body_is_an_unsupported_media_type():
    response = key_client(OrganizationFactory()).post(IMPORTS, {"file": "x"}, format="json")
    assert response.status_code == 415
    assert not ContactImport.objects.exists()
