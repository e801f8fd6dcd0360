"""schemathesis against the live OpenAPI schema, over every operation, authenticated as an owner.

Acceptance: no server error and no answer that breaks the schema (status code, content type,
body). Path ids are swapped for ids of real rows of the caller's organization half the time, so
the fuzzed bodies reach real objects and not only 404s. A bounded, seeded run is part of the
suite; `make fuzz` runs many more examples with a random seed (FUZZ_EXAMPLES, FUZZ_SEED).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.tests.api_world import ApiWorld, build_api_world
from api.throttling import CallerRateThrottle

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = os.environ.get("FUZZ_SEED")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def _connection_kept_open() -> Iterator[None]:
    # The fuzzer calls the WSGI application itself, whose end-of-request signal closes the
    # database connection, and with it the test's transaction (Django's test client
    # disconnects it the same way).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db: None, _connection_kept_open: None, monkeypatch: pytest.MonkeyPatch) -> ApiWorld:
    # The fuzzer is one caller sending thousands of requests: throttling would answer most of
    # them with 429 and hide what the operations do.
    monkeypatch.setattr(CallerRateThrottle, "THROTTLE_RATES", {"api_key": None, "user": None, "anonymous": None})
    cache.clear()
    return build_api_world("fuzz")


def _with_real_ids(case: Any, world: ApiWorld) -> None:
    if not case.path_parameters:
        return
    for name in list(case.path_parameters):
        real = world.ids.get(name)
        # crc32, not hash(): string hashes change per process, and the seeded run must repeat.
        if real is not None and zlib.crc32(f"{case.operation.label}{case.body!r:.64}".encode()) % 2 == 0:
            case.path_parameters[name] = real


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED is None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_schema_and_never_fails(case: Any, world: ApiWorld) -> None:
    _with_real_ids(case, world)
    token = RefreshToken.for_user(world.owner).access_token
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
