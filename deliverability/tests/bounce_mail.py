"""Helpers for the bounce tests: a message really sent to the SMTP sink, real-world reports from
the corpus rewritten to be about it, and a real bounce receiver to deliver them to."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from prometheus_client import REGISTRY

from conftest import SmtpServer, free_port
from deliverability import receiver
from deliverability.bounces import parse_report
from delivery.models import Message
from delivery.tests.factories import email_sequence, send, write_messages
from organizations.models import Organization
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

CORPUS = Path(__file__).resolve().parent / "corpus" / "emails"
BOUNCE_DOMAIN = "bounces.example.test"


@dataclass(frozen=True)
class SentMessage:
    """A message as it left us and arrived at the SMTP sink."""

    message: Message
    contact: Contact
    return_path: str  # MAIL FROM as the sink received it
    message_id_header: str
    correlation: str  # X-Emailseq-ID


def send_one(organization: Organization, smtp: SmtpServer, *, email: str | None = None) -> SentMessage:
    """Send one sequence email to a new contact over SMTP, and return it as it arrived."""
    contact = ContactFactory(organization=organization, **({"email": email} if email else {}))
    already = len(smtp.received)
    # Two emails a day apart: the enrollment is still active, waiting for the second, when reports come.
    write_messages(email_sequence(organization, emails=2), contact)
    # Outside a test transaction the engine's dispatch has sent it already (Celery runs eagerly).
    message = Message.objects.get(contact=contact)
    if message.status == Message.Status.QUEUED:
        send(message)
    mail = smtp.wait_for(already + 1)[-1]
    assert mail.recipients == (contact.email,)
    headers = mail.parsed()
    message.refresh_from_db()
    return SentMessage(
        message=message,
        contact=contact,
        return_path=mail.mail_from,
        message_id_header=headers["Message-ID"],
        correlation=headers["X-Emailseq-ID"],
    )


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def corpus_report(name: str, sent: SentMessage, *, correlation_header: bool = False) -> bytes:
    """A report from the corpus, made about `sent`: its (first) failed recipient becomes the
    contact's address and the returned original's Message-ID becomes ours; with
    `correlation_header`, the original also gets our X-Emailseq-ID after its Message-ID. The
    rest of the file, its structure included, is left as it is."""
    raw = (CORPUS / name).read_bytes()
    parsed = parse_report(raw)
    assert parsed.recipients, f"{name} reports no recipient"
    failed = parsed.recipients[0].recipient
    if failed:
        raw = re.sub(re.escape(failed).encode(), sent.contact.email.encode(), raw, flags=re.IGNORECASE)
    original = parsed.original_headers.get("message-id", "").strip()
    if original:
        raw = raw.replace(original.encode(), sent.message_id_header.encode())
        if correlation_header:
            raw = re.sub(
                rb"(?im)^(message-id:[ \t]*" + re.escape(sent.message_id_header.encode()) + rb")\r?$",
                rb"\1\nX-Emailseq-ID: " + sent.correlation.encode(),
                raw,
            )
    return crlf(raw)


class BounceReceiver(Controller):
    """The bounce receiver's own SMTP server and handler, in a thread of the test process."""

    def __init__(self) -> None:
        self.bounce_handler = receiver.BounceHandler(workers=2)
        # A free port chosen first: Controller(port=0) cannot tell its caller the port it got.
        super().__init__(self.bounce_handler, hostname="127.0.0.1", port=free_port())

    def factory(self) -> SMTP:
        return receiver.smtp_server(self.bounce_handler)

    def stop(self, *args: object, **kwargs: object) -> None:
        super().stop(*args, **kwargs)
        self.bounce_handler.close()

    def deliver(self, raw: bytes, *, to: str, mail_from: str = "") -> dict[str, tuple[int, bytes]]:
        """Deliver a report the way a reporting MTA does (null sender); returns refused
        recipients as smtplib does. Raises smtplib errors for refused messages."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            return client.sendmail(mail_from, [to], crlf(raw))

    def conversation(self, raw: bytes, *, to: str) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        """(RCPT reply, DATA reply) for one report."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo()
            client.mail("")
            rcpt = client.rcpt(to)
            if rcpt[0] != 250:
                return rcpt, (0, b"")
            return rcpt, client.data(crlf(raw))


def running_receiver() -> Iterator[BounceReceiver]:
    server = BounceReceiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def counted(outcome: str) -> float:
    """The receiver's Prometheus counter of reports with this outcome, in this process."""
    return REGISTRY.get_sample_value("emailseq_bounce_receiver_reports_total", {"outcome": outcome}) or 0.0
