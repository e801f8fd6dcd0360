from __future__ import annotations

import abc
import enum
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


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    response: str
    provider_message_id: str = ""


class TransportUnavailable(Exception):
    """The route itself failed (connection refused or lost): nothing after this can be sent."""


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
