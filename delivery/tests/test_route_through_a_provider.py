"""A route through an email service provider (django-anymail's real Postmark backend, pointed at
a local server that answers as Postmark's API does) uses the route's own account, records the
provider's message id, and takes an HTTP 429 as throttling: the message waits, no attempt
counted, and goes once the route has rested."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine

from conftest import free_port
from delivery.models import DeliveryRoute, Message
from delivery.tests.factories import DeliveryRouteFactory, many_messages, send
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


class FakePostmark:
    def __init__(self) -> None:
        self.port = free_port()
        self.tokens: list[str] = []
        self.statuses: list[int] = []  # answers to give before the successes
        self.lock = threading.Lock()

    def answer(self, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.tokens.append(token)
            status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            return status, {"ErrorCode": status, "Message": "Rate limit exceeded"}
        return 200, {"To": body["To"], "MessageID": str(uuid.uuid4()), "ErrorCode": 0, "Message": "OK"}


@pytest.fixture
def postmark(settings) -> Iterator[FakePostmark]:
    api = FakePostmark()
    # Where Postmark's API is, is the operator's setting; a route brings only its account.
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_API_URL": f"http://127.0.0.1:{api.port}/"}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, reply = api.answer(self.headers["X-Postmark-Server-Token"], body)
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", api.port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def provider_route(postmark: FakePostmark, organization, token: str) -> DeliveryRoute:
    return DeliveryRouteFactory(
        organization=organization,
        kind=DeliveryRoute.Kind.ANYMAIL,
        url=f"postmark://{token}@",
    )


def test_each_organizations_route_sends_with_its_own_account(postmark: FakePostmark) -> None:
    first, second = OrganizationFactory(), OrganizationFactory()
    route = provider_route(postmark, first, "token-first")
    provider_route(postmark, second, "token-second")

    assert send(*many_messages(first, 2), *many_messages(second, 1)).sent == 3

    assert sorted(postmark.tokens) == ["token-first", "token-first", "token-second"]
    sent = Message.objects.filter(organization=first)
    assert set(sent.values_list("route_id", flat=True)) == {route.pk}
    assert all(len(provider_id) == 36 for provider_id in sent.values_list("provider_message_id", flat=True))


def test_a_429_rests_the_route_and_the_message_waits_without_an_attempt(postmark: FakePostmark) -> None:
    organization = OrganizationFactory()
    route = provider_route(postmark, organization, "token")
    postmark.statuses = [429]
    messages = many_messages(organization, 3)

    report = send(*messages)

    assert (report.sent, report.deferred, report.retried, report.failed) == (0, 3, 0, 0)
    route.refresh_from_db()
    assert route.throttled_until is not None and route.rate_factor == 0.5
    assert set(Message.objects.values_list("status", "attempts", "next_attempt_at")) == {
        (Message.Status.QUEUED, 0, route.throttled_until)
    }
    with time_machine.travel(route.throttled_until + dt.timedelta(seconds=1)):
        assert send(*messages).sent == 3
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}
