"""Viewers and read keys follow imports; marketers, admins, owners and write keys upload."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from api.tests.clients import key_client, role_client
from organizations.models import ApiKey, Membership
from organizations.tests.factories import OrganizationFactory
from subscribers import importing
from subscribers.models import ContactImport

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"
CSV = b"email\nann@example.com\n"


def upload() -> dict[str, SimpleUploadedFile]:
    return {"file": SimpleUploadedFile("people.csv", CSV)}


@pytest.mark.parametrize("caller", ["viewer", "read key"])
def test_a_viewer_or_read_key_cannot_upload_but_reads_imports(caller: str):
    organization = OrganizationFactory()
    existing = importing.contact_import_create(
        organization=organization, upload=SimpleUploadedFile("a.csv", CSV), run_in_background=False
    )
    if caller == "viewer":
        client = role_client(organization, Membership.Role.VIEWER)
    else:
        client = key_client(organization, ApiKey.Scope.READ)

    assert client.post(IMPORTS, upload(), format="multipart").status_code == 403
    assert ContactImport.objects.count() == 1
    assert client.get(IMPORTS).status_code == 200
    assert client.get(f"{IMPORTS}{existing.pk}/").status_code == 200
    assert client.get(f"{IMPORTS}{existing.pk}/rejections/").status_code == 200


@pytest.mark.parametrize("role", [Membership.Role.MARKETER, Membership.Role.ADMIN, Membership.Role.OWNER])
def test_marketers_and_above_upload(role: str):
    organization = OrganizationFactory()
    response = role_client(organization, role).post(IMPORTS, upload(), format="multipart")
    assert response.status_code == 201
    assert ContactImport.objects.get().created_by is not None
