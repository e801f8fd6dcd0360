"""Delivery routes, one module each, chosen by the kind of EMAIL_URL or of an organization's
DeliveryRoute url (delivery.routing picks the route)."""

from __future__ import annotations

from django.conf import settings

from delivery.transports.base import Outcome, SendResult, Transport, TransportUnavailable, is_throttling_reply
from delivery.transports.capture import CaptureTransport
from delivery.transports.console import ConsoleTransport
from delivery.transports.esp import AnymailTransport
from delivery.transports.smtp import SmtpTransport
from emailseq.environment import EmailConfig

TRANSPORTS = {
    "smtp": SmtpTransport,
    "capture": lambda config: CaptureTransport(),
    "console": lambda config: ConsoleTransport(),
    "anymail": AnymailTransport,
}


def open_transport(config: EmailConfig | None = None) -> Transport:
    """A transport for `config` (EMAIL_URL when None); use it as a context manager."""
    config = config or settings.EMAIL
    return TRANSPORTS[config.kind](config)


__all__ = ["Outcome", "SendResult", "Transport", "TransportUnavailable", "is_throttling_reply", "open_transport"]
