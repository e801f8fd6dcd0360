from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from delivery.transports.base import Outcome, SendResult, Transport

if TYPE_CHECKING:
    from delivery.composer import ComposedMessage


class ConsoleTransport(Transport):
    """Writes each message to standard output (EMAIL_URL=console://), for debugging."""

    def send(self, message: ComposedMessage, *, organization_id: int) -> SendResult:
        sys.stdout.write(message.as_bytes().decode("ascii") + "\n" + "-" * 72 + "\n")
        sys.stdout.flush()
        return SendResult(Outcome.ACCEPTED, "written to the console")
