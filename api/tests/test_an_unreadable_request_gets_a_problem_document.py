"""A body Django itself refuses to read (too many fields, too large) is answered, on the API,
with a problem document like every other error; elsewhere with the usual error page."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

TOO_MANY_FIELDS = "&".join(f"field{number}=1" for number in range(50))


def test_an_api_request_with_too_many_fields_gets_a_problem_document(settings) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    client = key_client(OrganizationFactory(), scope="write")

    response = client.generic(
        "POST", "/api/v1/tags/", TOO_MANY_FIELDS, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:emailseq:problem:bad_request" and problem["status"] == 400
    assert problem["instance"] == "/api/v1/tags/"


def test_a_page_request_with_too_many_fields_gets_the_usual_error_page(client, settings) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10

    response = client.generic(
        "POST", "/admin/login/", TOO_MANY_FIELDS, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
