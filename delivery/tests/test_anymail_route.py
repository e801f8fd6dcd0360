"""Sending through an email service provider's HTTP API with django-anymail: the real Postmark
backend, pointed at a local HTTP server that answers as Postmark's API does."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from conftest import free_port
from delivery import signing
from delivery.models import Event, Message
from delivery.tests.factories import email_sequence, send, write_messages
from emailseq.environment import EmailConfig
from organizations.tests.factories import OrganizationFactory
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@dataclass
class PostmarkApi:
    """Records each request; answers with the queued replies, then with Postmark's success."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, status: int, body: dict[str, Any]) -> None:
        with self.lock:
            self.replies.append((status, body))

    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            if self.replies:
                return self.replies.pop(0)
        return 200, {
            "To": body["To"],
            "SubmittedAt": timezone.now().isoformat(),
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }


@pytest.fixture
def postmark(settings) -> Iterator[PostmarkApi]:
    api = PostmarkApi(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, reply = api.answer(self.path, dict(self.headers), body)
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
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "x", "POSTMARK_API_URL": f"http://127.0.0.1:{api.port}/"}
    settings.EMAIL = EmailConfig(kind="anymail", anymail_backend="anymail.backends.postmark.EmailBackend")
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def one_message(**sequence_fields: object) -> Message:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2, **sequence_fields)
    [message] = write_messages(sequence, ContactFactory(organization=organization, first_name="Zoë"))
    return message


def test_a_message_arrives_at_the_provider_with_our_headers_and_is_recorded_sent(postmark: PostmarkApi) -> None:
    message = one_message(subject="Grüße {{ contact.first_name }}", reply_to="replies@example.com")

    assert send(message).sent == 1

    [request] = postmark.requests
    assert request["path"] == "/email"
    assert request["headers"]["X-Postmark-Server-Token"] == "x"
    body = request["body"]
    message.refresh_from_db()
    assert body["To"] == message.recipient == message.contact.email
    assert body["Subject"] == "Grüße Zoë" == message.subject
    assert body["ReplyTo"] == "replies@example.com"
    assert "/t/o/" in body["HtmlBody"] and "Hello Zoë" in body["HtmlBody"]
    assert "Unsubscribe: " in body["TextBody"]
    headers = {header["Name"]: header["Value"] for header in body["Headers"]}
    assert headers["Message-ID"] == message.message_id_header
    assert signing.unsign("correlation", headers["X-Emailseq-ID"]) == (message.pk,)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (part.strip().strip("<>") for part in headers["List-Unsubscribe"].split(","))
    assert signing.unsign("unsubscribe", https.rsplit("/", 1)[1]) == (message.pk, message.contact_id)
    assert mailto.startswith("mailto:unsubscribe+")
    assert message.status == Message.Status.SENT
    assert message.response == "sent by provider"


def test_an_inactive_recipient_reply_is_a_bounce(postmark: PostmarkApi) -> None:
    message = one_message()
    address = message.contact.email
    postmark.reply(
        422,
        {
            "ErrorCode": 406,
            "Message": "You tried to send to a recipient that has been marked as inactive.\n"
            f"Found inactive addresses: {address}.\n"
            "Inactive recipients are ones that have generated a hard bounce or a spam complaint.",
        },
    )

    report = send(message)

    assert report.bounced == 1
    message.refresh_from_db()
    assert message.status == Message.Status.BOUNCED
    contact = Contact.objects.get(pk=message.contact_id)
    assert contact.status == Contact.Status.BOUNCED
    assert Suppression.objects.get(email_hash=email_hash(address)).reason == Suppression.Reason.BOUNCED
    assert Event.objects.filter(type=Event.Type.BOUNCE, message=message).exists()


@pytest.mark.parametrize(
    ("status", "reply"),
    [
        (500, {"ErrorCode": 500, "Message": "Internal server error"}),
        (503, {"ErrorCode": 0, "Message": "Service unavailable"}),
    ],
    ids=["500", "503"],
)
def test_a_provider_failure_leaves_the_message_queued_and_the_retry_delivers_it(
    postmark: PostmarkApi, status: int, reply: dict[str, Any], tick
) -> None:
    message = one_message()
    postmark.reply(status, reply)

    report = send(message)

    assert (report.retried, report.sent, report.bounced) == (1, 0, 0)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 1 and message.next_attempt_at > timezone.now()
    assert str(status) in message.response
    assert Contact.objects.get(pk=message.contact_id).status == Contact.Status.ACTIVE

    with time_machine.travel(message.next_attempt_at + dt.timedelta(seconds=1)):
        tick()

    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(postmark.requests) == 2


def test_a_throttling_provider_defers_the_message_without_using_an_attempt(postmark: PostmarkApi, tick) -> None:
    message = one_message()
    postmark.reply(429, {"ErrorCode": 429, "Message": "Rate limit exceeded"})

    report = send(message)

    # 429 is the provider slowing us down, not a failure of the message (the route rests).
    assert (report.deferred, report.retried, report.sent, report.bounced) == (1, 0, 0, 0)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 0 and message.next_attempt_at > timezone.now()

    with time_machine.travel(message.next_attempt_at + dt.timedelta(seconds=1)):
        tick()

    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(postmark.requests) == 2


def test_an_unreachable_provider_leaves_the_whole_batch_queued(settings) -> None:
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "x", "POSTMARK_API_URL": f"http://127.0.0.1:{free_port()}/"}
    settings.EMAIL = EmailConfig(kind="anymail", anymail_backend="anymail.backends.postmark.EmailBackend")
    organization = OrganizationFactory()
    messages = write_messages(
        email_sequence(organization, emails=2), *[ContactFactory(organization=organization) for _ in range(3)]
    )

    report = send(*messages)

    # The first message was tried; the others go back untried, so an outage costs them no attempt.
    assert (report.retried, report.deferred) == (1, 2)
    assert sorted(Message.objects.values_list("status", "attempts")) == [
        (Message.Status.QUEUED, 0),
        (Message.Status.QUEUED, 0),
        (Message.Status.QUEUED, 1),
    ]
