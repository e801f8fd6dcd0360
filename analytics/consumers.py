"""WebSocket consumers for the live dashboards: they authenticate, join groups and forward.

    /ws/analytics?organization=<id>[&sequence=<id>]   a snapshot of the totals, then counter deltas
    /ws/events?organization=<id>[&sequence=<id>]      each event (open, click, ...) as it happens
    /ws/notifications?organization=<id>               the organization's notifications

`organization` (an id or a slug) is needed only by a user who belongs to several; an API key
acts in its own organization. `sequence` narrows the stream to one sequence of it (the
connection joins the organization's group and forwards only that sequence's frames). Frames are
documented in analytics/live.py, which publishes them.

Once the handshake completes, the connection is in its group: it receives everything published
from then on. A connection that may not follow the stream is accepted and then closed with a
code the client can read:
4400 a malformed or missing parameter, 4401 not authenticated (or a token that does not verify),
4403 an organization or sequence the caller cannot see (whether or not it exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from analytics import live
from analytics.ws_auth import SUBPROTOCOL
from organizations.models import Membership
from sequences.models import Sequence

BAD_REQUEST = 4400
UNAUTHENTICATED = 4401
FORBIDDEN = 4403


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Subscription:
    organization_id: int
    sequence_id: int | None


def subscription_for(scope: dict[str, Any], *, allow_sequence: bool) -> Subscription:
    """The organization (and sequence) this connection may follow, or Refused."""
    user = scope.get("user")
    if scope.get("token_refused") or user is None or not user.is_authenticated:
        raise Refused(UNAUTHENTICATED, "Sign in, or present an API key or access token.")
    try:
        raw_query = scope.get("query_string", b"").decode()
    except UnicodeDecodeError:
        raise Refused(BAD_REQUEST, "The query string is not UTF-8.") from None
    query = {name: values[0].strip() for name, values in parse_qs(raw_query).items()}
    wanted = query.get("organization", "")
    api_key = scope.get("api_key")
    if api_key is not None:
        organization_id = api_key.organization_id
        if wanted and wanted not in (str(organization_id), api_key.organization.slug):
            raise Refused(FORBIDDEN, "This API key belongs to another organization.")
    else:
        memberships = Membership.objects.filter(user_id=user.pk)
        if wanted:
            lookup = {"organization_id": int(wanted)} if _is_id(wanted) else {"organization__slug": wanted}
            found = list(memberships.filter(**lookup).values_list("organization_id", flat=True))
            if not found:
                raise Refused(FORBIDDEN, f"You are not a member of an organization {wanted!r}.")
        else:
            found = list(memberships.values_list("organization_id", flat=True)[:2])
            if not found:
                raise Refused(FORBIDDEN, "You are not a member of any organization.")
            if len(found) > 1:
                raise Refused(BAD_REQUEST, "You belong to several organizations: name one with ?organization=<id>.")
        organization_id = found[0]
    sequence_id = None
    if "sequence" in query:
        if not allow_sequence:
            raise Refused(BAD_REQUEST, "This stream has no per-sequence view.")
        if not _is_id(query["sequence"]):
            raise Refused(BAD_REQUEST, "sequence must be a sequence id.")
        sequence_id = int(query["sequence"])
        if not Sequence.objects.for_org(organization_id).filter(pk=sequence_id).exists():
            raise Refused(FORBIDDEN, f"There is no sequence {sequence_id} in this organization.")
    return Subscription(organization_id=organization_id, sequence_id=sequence_id)


def _is_id(text: str) -> bool:
    """Plain ASCII digits of a 64-bit id ("²".isdigit() is true, int("²") fails)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def live_totals(subscription: Subscription) -> dict[str, Any]:
    """The totals a dashboard starts from, before the deltas (analytics.selectors)."""
    from analytics import selectors

    if subscription.sequence_id is not None:
        return selectors.sequence_live_totals(subscription.sequence_id)
    return selectors.organization_live_totals(subscription.organization_id)


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Joins the group of one stream of the caller's organization; forwards all of it, or one sequence's part."""

    stream: str = ""
    allow_sequence = True

    async def connect(self) -> None:
        self.joined: list[str] = []
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", []) else None
        try:
            self.subscription = await database_sync_to_async(subscription_for)(
                self.scope, allow_sequence=self.allow_sequence
            )
        except Refused as refused:
            # Accepted, then closed: a refused handshake would hide the code from a browser.
            await self.accept(subprotocol)
            await self.close(code=refused.code, reason=refused.reason)
            return
        group = live.organization_group(self.subscription.organization_id, self.stream)
        # Joined before the handshake completes: a client receives everything published after
        # its connection opened.
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.append(group)
        await self.accept(subprotocol)
        await self.subscribed()

    def follows(self, sequence_id: int | None) -> bool:
        """Whether a frame of this sequence (None: of no sequence) is for this connection."""
        return self.subscription.sequence_id is None or self.subscription.sequence_id == sequence_id

    async def subscribed(self) -> None:
        """Called once the connection has joined its group and is open."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        # channels closes stale database connections before each handler: a hop to the one
        # thread that runs sync code, for every message of every connection (about 0.4 ms of
        # CPU a frame, and a queue behind that thread, measured with 1,000 connections). The
        # live.* handlers only forward frames and never touch the database.
        if message["type"].startswith("live."):
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        # The streams are one-way; what a client sends is ignored (not even parsed).
        return

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return live.frame_json(content)


class AnalyticsConsumer(LiveConsumer):
    stream = live.COUNTERS

    async def subscribed(self) -> None:
        # Joined first, then read: a change between the two may be both in the snapshot and in
        # a delta, but none is missed.
        totals = await database_sync_to_async(live_totals)(self.subscription)
        await self.send_json(
            {
                "type": "snapshot",
                "organization_id": self.subscription.organization_id,
                "sequence_id": self.subscription.sequence_id,
                "totals": totals,
            }
        )

    async def live_counters(self, message: dict[str, Any]) -> None:
        if self.follows(message["sequence_id"]):
            await self.send(text_data=message["frame"])


class EventsConsumer(LiveConsumer):
    stream = live.EVENTS

    async def live_events(self, message: dict[str, Any]) -> None:
        for sequence_id, frame in message["frames"]:
            if self.follows(sequence_id):
                await self.send(text_data=frame)


class NotificationsConsumer(LiveConsumer):
    stream = live.NOTIFICATIONS
    allow_sequence = False

    async def live_notification(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["frame"])
