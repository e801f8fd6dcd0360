"""The bounce receiver: an SMTP server (aiosmtpd) for the VERP return paths and feedback loops.

Mail to `bounce+<signed id>@BOUNCE_DOMAIN`, to any other address at BOUNCE_DOMAIN (feedback
loops are registered with an address there) or to BOUNCE_COMPLAINT_ADDRESSES is taken; anything
else is refused with 550 (this is no relay). Each message is parsed (deliverability.bounces),
matched to the message it reports on (the VERP address it came to, else the X-Emailseq-ID or
Message-ID of the returned original) and applied through deliverability.reports.

Answers: 250 once applied, and also for reports that match nothing (logged and counted): a
reporting MTA told to retry would retry for days. 451 when the database fails, so the MTA
does retry. Several instances may run side by side: a report delivered twice, to the same
instance or another, is applied once (BounceReport's unique dedupe key).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP
from django.conf import settings
from django.db import close_old_connections, connections
from prometheus_client import Counter

from deliverability import reports, verp
from deliverability.bounces import ParsedReport, RecipientReport, parse_report
from deliverability.models import BounceReport
from delivery.models import Message

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 100

REPORTS_RECEIVED = Counter(
    "emailseq_bounce_receiver_reports",
    "Delivery reports received, by outcome: applied, duplicate (applied before), unmatched (no message of "
    "ours found), empty (nothing to apply: not a bounce).",
    labelnames=["outcome"],
)


@dataclass
class Received:
    """What became of one received report."""

    applied: int = 0
    duplicates: int = 0
    unmatched: int = 0
    message_id: int | None = None

    def summary(self) -> str:
        return f"{self.applied} applied, {self.duplicates} duplicate, {self.unmatched} unmatched"


def recipient_accepted(address: str) -> bool:
    """Whether the receiver takes mail for `address` (no relaying: everything else is refused)."""
    address = address.strip().strip("<>").lower()
    return verp.is_bounce_domain(address) or address in settings.BOUNCE_COMPLAINT_ADDRESSES


def report_message(*, envelope_recipients: Iterable[str], parsed: ParsedReport) -> Message | None:
    """The message a report is about: named by the VERP address it was sent to, or else by the
    correlation header or Message-ID of the original it returns (feedback loops write to a
    fixed address and only return the original)."""
    message_id = next(
        (found for found in map(verp.message_id_from_address, envelope_recipients) if found is not None), None
    )
    if message_id is None:
        message_id = verp.message_id_from_headers(parsed.original_headers)
    if message_id is None:
        return None
    return Message.objects.select_related("contact").filter(pk=message_id).first()


def _reports_for(message: Message, recipients: list[RecipientReport]) -> list[RecipientReport]:
    """The recipient reports that are about `message`'s address. A report about one recipient is
    about it even under another address (forwarding, aliases); of several, those that name it."""
    if len(recipients) <= 1:
        return recipients
    address = message.recipient or message.contact.email
    named = [report for report in recipients if _same_address(report.recipient, address)]
    return named or recipients[:1]


def _same_address(reported: str, ours: str) -> bool:
    return reported.strip().strip("<>").lower() == ours.lower()


def report_receive(*, raw: bytes, envelope_recipients: list[str]) -> Received:
    """Parse, match and apply one received report. Raises DatabaseError when the database fails."""
    parsed = parse_report(raw)
    received = Received()
    if not parsed.recipients:
        REPORTS_RECEIVED.labels("empty").inc()
        return received
    message = report_message(envelope_recipients=envelope_recipients, parsed=parsed)
    if message is None:
        received.unmatched = len(parsed.recipients)
        REPORTS_RECEIVED.labels("unmatched").inc(received.unmatched)
        logger.warning(
            "bounce receiver: a %s report (%s) to %s matches no message of ours",
            parsed.kind,
            parsed.report_message_id or "no Message-ID",
            ", ".join(envelope_recipients),
        )
        return received
    received.message_id = message.pk
    report_id = parsed.report_message_id or hashlib.sha256(raw).hexdigest()
    for recipient in _reports_for(message, parsed.recipients):
        applied = reports.bounce_report_apply(
            message=message,
            source=BounceReport.Source.INBOUND,
            classification=recipient.classification,
            dedupe_key=reports.dedupe_key(
                "inbound",
                str(message.pk),
                hashlib.sha256(f"{report_id}\n{recipient.recipient}".encode("utf-8", "replace")).hexdigest(),
            ),
            status=recipient.status,
            reply=recipient.reply,
            reason=recipient.reason or recipient.feedback_type,
            diagnostic=recipient.diagnostic,
            delay_warning=recipient.delay_warning,
        )
        if applied.applied:
            received.applied += 1
        else:
            received.duplicates += 1
    REPORTS_RECEIVED.labels("applied").inc(received.applied)
    REPORTS_RECEIVED.labels("duplicate").inc(received.duplicates)
    return received


def _receive_in_worker(raw: bytes, envelope_recipients: list[str]) -> Received:
    # A thread of the pool: its own database connection, closed after each report so that a
    # connection broken meanwhile never fails the next one.
    close_old_connections()
    try:
        return report_receive(raw=raw, envelope_recipients=envelope_recipients)
    finally:
        connections.close_all()


class BounceHandler:
    """aiosmtpd handler. The database work runs in a thread pool: Django's ORM is synchronous."""

    def __init__(self, *, workers: int = 4) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bounce-receiver")

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list) -> str:
        if not recipient_accepted(address):
            return "550 5.1.1 No such recipient here"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        raw = envelope.original_content if envelope.original_content is not None else envelope.content
        loop = asyncio.get_running_loop()
        try:
            received = await loop.run_in_executor(self.executor, _receive_in_worker, raw, list(envelope.rcpt_tos))
        except Exception:  # the database, mostly: the sender keeps the report and tries again
            logger.exception("bounce receiver: a report from %s could not be applied", session.peer)
            return "451 4.3.0 Temporary failure, please try again later"
        logger.info("bounce receiver: report for message %s: %s", received.message_id, received.summary())
        return f"250 2.0.0 Ok: {received.summary()}"

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def smtp_server(handler: BounceHandler) -> SMTP:
    return SMTP(
        handler,
        hostname=settings.BOUNCE_DOMAIN,
        ident="emailseq bounce receiver",
        data_size_limit=settings.BOUNCE_MAX_MESSAGE_BYTES,
        enable_SMTPUTF8=True,
    )


async def serve(*, host: str, port: int, workers: int, ready: Any = None) -> None:
    """Run the receiver until SIGTERM or SIGINT; `ready(sockets)` is called once it listens."""
    handler = BounceHandler(workers=workers)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: smtp_server(handler), host=host, port=port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready(server.sockets)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        handler.close()
