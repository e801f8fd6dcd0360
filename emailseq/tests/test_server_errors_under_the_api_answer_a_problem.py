"""A server error under /api/ answers a JSON problem (500), like every other API failure; a
server error elsewhere answers the usual error page."""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emailseq import urls as project_urls


class FailingApi(APIView):
    authentication_classes = ()
    permission_classes = ()

    def get(self, request: Request) -> Response:
        raise RuntimeError("something broke inside")


def failing_page(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("something broke inside")


# The project's URLs and handler500, plus two routes that fail.
urlpatterns = [
    path("api/v1/failing/", FailingApi.as_view()),
    path("failing/", failing_page),
    path("", include(project_urls)),
]
handler500 = project_urls.handler500


@pytest.fixture
def client(settings) -> Client:
    settings.ROOT_URLCONF = __name__
    return Client(raise_request_exception=False)


def test_a_server_error_under_the_api_answers_a_problem(client: Client) -> None:
    response = client.get("/api/v1/failing/")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 500 and body["type"] == "urn:emailseq:problem:server_error"
    assert body["instance"] == "/api/v1/failing/"
    assert "broke" not in response.content.decode()


def test_a_server_error_elsewhere_answers_the_usual_page(client: Client) -> None:
    response = client.get("/failing/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert "broke" not in response.content.decode()
