"""Imports belong to one organization: another's import, its rejections and its lists are 404s,
also when the list's id comes in the upload's form."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from api.tests.clients import key_client
from organizations.tests.factories import OrganizationFactory
from subscribers import importing
from subscribers.models import ContactImport
from subscribers.tests.factories import ContactListFactory

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"
CSV = b"email\nann@example.com\n"


def test_another_organizations_import_and_its_rejections_are_not_found():
    theirs = importing.contact_import_create(
        organization=OrganizationFactory(), upload=SimpleUploadedFile("a.csv", CSV), run_in_background=False
    )
    client = key_client(OrganizationFactory())

    assert client.get(f"{IMPORTS}{theirs.pk}/").status_code == 404
    assert client.get(f"{IMPORTS}{theirs.pk}/rejections/").status_code == 404
    assert client.get(IMPORTS).json()["results"] == []


def test_an_upload_into_another_organizations_list_is_not_found_and_creates_nothing():
    their_list = ContactListFactory(organization=OrganizationFactory())
    client = key_client(OrganizationFactory())

    response = client.post(
        IMPORTS, {"file": SimpleUploadedFile("a.csv", CSV), "list_id": their_list.pk}, format="multipart"
    )

    assert response.status_code == 404
    assert "list_id" in response.json()["detail"]
    assert not ContactImport.objects.exists()
