"""django-axes on the JWT endpoint and the admin login: after AXES_FAILURE_LIMIT failures for one
username from one address even the right password is refused (the API answers a 429 problem,
not HTML), and a forged X-Forwarded-For does not make a new address."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from organizations.tests.factories import OrganizationFactory, member

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
ADMIN_LOGIN = "/admin/login/"
LIMIT = 3


@pytest.fixture(autouse=True)
def failure_limit(settings) -> Iterator[None]:
    settings.AXES_FAILURE_LIMIT = LIMIT
    cache.clear()  # the anonymous throttle's counts
    yield
    cache.clear()


@pytest.fixture
def user():
    return member(OrganizationFactory(), username="alice")


@pytest.fixture
def behind_proxy(settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def token_attempt(password: str, **headers: str) -> object:
    return APIClient().post(TOKEN, {"username": "alice", "password": password}, format="json", **headers)


def admin_attempt(password: str, **headers: str) -> object:
    return Client().post(ADMIN_LOGIN, {"username": "alice", "password": password}, **headers)


def test_the_token_endpoint_locks_out_and_answers_a_problem(user):
    failures = [token_attempt("wrong").status_code for _ in range(LIMIT - 1)]
    locking = token_attempt("wrong")
    right_password = token_attempt("password")

    assert failures == [401] * (LIMIT - 1)
    for response in (locking, right_password):
        assert response.status_code == 429
        assert response["Content-Type"] == "application/problem+json"
        assert "failed logins" in response.json()["detail"]
        assert int(response["Retry-After"]) > 0
    assert "access" not in right_password.json()


def test_a_correct_login_before_the_limit_still_gets_tokens(user):
    for _ in range(LIMIT - 1):
        token_attempt("wrong")

    response = token_attempt("password")

    assert response.status_code == 200 and response.json()["access"]


def test_a_forged_x_forwarded_for_does_not_reset_the_count(user):
    for number in range(LIMIT):
        token_attempt("wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{number}")

    assert token_attempt("password", HTTP_X_FORWARDED_FOR="203.0.113.200").status_code == 429


def test_behind_a_proxy_only_the_address_the_proxy_saw_counts(user, behind_proxy):
    # The client writes what it likes on the left; our proxy appends the address it saw.
    for number in range(LIMIT):
        token_attempt("wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{number}, 198.51.100.7")

    assert token_attempt("password", HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.7").status_code == 429
    # Someone else, elsewhere, is not locked out of the account.
    assert token_attempt("password", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 200


def test_the_admin_login_locks_out_and_a_forged_x_forwarded_for_does_not_help(user):
    failures = [admin_attempt("wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in range(LIMIT - 1)]
    locking = admin_attempt("wrong")
    browser = Client()
    refused = browser.post(
        ADMIN_LOGIN, {"username": "alice", "password": "password"}, HTTP_X_FORWARDED_FOR="203.0.113.99"
    )

    assert failures == [200] * (LIMIT - 1)  # the form again, with an error
    assert locking.status_code == refused.status_code == 429
    assert browser.get("/admin/").status_code == 302  # still not logged in: sent to the login page
