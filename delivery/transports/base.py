from __future__ import annotations

import abc
import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

    from delivery.composer import ComposedMessage


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"  # try again later (4xx, throttling, connection trouble)
    PERMANENT = "permanent"  # the recipient's address cannot be reached: a bounce
    REJECTED = "rejected"  # refused for the message or the sender (policy, content), not the address
    THROTTLED = "throttled"  # the route asks us to slow down: not the message's fault, not an attempt


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    response: str
    provider_message_id: str = ""


class TransportUnavailable(Exception):
    """The route itself failed (connection refused or lost): nothing after this can be sent.

    `throttled`: the route refused because we send too fast (421 with rate wording, HTTP 429).
    `maybe_delivered`: the message in hand was handed over in full before the failure, so the
    server may have accepted it; only then is sending it again elsewhere a risk of a duplicate.
    """

    def __init__(self, message: str, *, throttled: bool = False, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled
        self.maybe_delivered = maybe_delivered


# Replies that ask the sender to slow down rather than say anything about the message: Gmail's
# "421 4.7.28 ... unusual rate", Outlook's "451 4.7.500 Server busy", Yahoo's "421 4.7.0 [TSS04]
# Messages temporarily deferred due to unexpected volume", "452 Too many messages". A bare
# "451 4.7.1 Try again later" is greylisting of one recipient, retried like any 4xx.
THROTTLING_WORDS = re.compile(
    r"\b(rate|rates|throttl\w*|too many|slow down|busy|limit(s|ed)?|exceeded|quota|volume|TSS0\d)\b", re.IGNORECASE
)
THROTTLING_CODES = re.compile(r"^4\.7\.(28|500|650)\b")
# The address's own passing state ("4.2.2 mailbox over quota", "size limit exceeded"): a soft
# bounce of one recipient, whatever its wording.
RECIPIENT_CODES = re.compile(r"^4\.[12]\.\d{1,3}\b")


def is_throttling_reply(code: int, text: str) -> bool:
    """Whether a temporary SMTP reply (4xx) asks us to send more slowly."""
    if not 400 <= code < 500:
        return False
    text = text.strip()
    if RECIPIENT_CODES.match(text):
        return False
    return bool(THROTTLING_CODES.match(text) or THROTTLING_WORDS.search(text))


class Transport(abc.ABC):
    """A delivery route. Used as a context manager around a batch: open once, send many."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - optional hook: routes without a connection keep it empty
        """Release the connection, if any."""

    @abc.abstractmethod
    def send(self, message: ComposedMessage, *, organization_id: int) -> SendResult:
        """Hand one message to the route and classify the answer.

        Raises TransportUnavailable when the route fails as a whole.
        """


# What a reply leaves in Message.response, a route's last_error and API answers: one short line,
# so a hostile server cannot fill them (replies are classified on their full text first).
SUMMARY_LENGTH = 200


def summary(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_LENGTH else line[: SUMMARY_LENGTH - 1] + "…"
