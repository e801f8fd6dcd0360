"""Delivery routes, one module each, chosen by the kind of EMAIL_URL."""

from __future__ import annotations

from django.conf import settings

from delivery.transports.base import Outcome, SendResult, Transport, TransportUnavailable
from delivery.transports.capture import CaptureTransport
from delivery.transports.console import ConsoleTransport
from delivery.transports.esp import AnymailTransport
from delivery.transports.smtp import SmtpTransport

TRANSPORTS = {
    "smtp": SmtpTransport,
    "capture": lambda config: CaptureTransport(),
    "console": lambda config: ConsoleTransport(),
    "anymail": AnymailTransport,
}


def open_transport() -> Transport:
    """A transport for the configured route; use it as a context manager."""
    config = settings.EMAIL
    return TRANSPORTS[config.kind](config)


__all__ = ["Outcome", "SendResult", "Transport", "TransportUnavailable", "open_transport"]
