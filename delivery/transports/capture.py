"""Keeps outgoing mail in the local mailbox (var/mailbox) instead of sending it: the embedded
default, browsable by staff at /mailbox/."""

from __future__ import annotations

from typing import TYPE_CHECKING

from delivery import mailbox
from delivery.transports.base import Outcome, SendResult, Transport

if TYPE_CHECKING:
    from delivery.composer import ComposedMessage


class CaptureTransport(Transport):
    def send(self, message: ComposedMessage, *, organization_id: int) -> SendResult:
        key = mailbox.store(message.as_bytes(), organization_id=organization_id)
        return SendResult(Outcome.ACCEPTED, f"captured as {key}", provider_message_id=key)
