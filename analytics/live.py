"""Live updates for dashboards: the one place that publishes to the WebSocket consumers.

Services call these functions after their transaction commits (`transaction.on_commit`), so a
dashboard never shows something that was rolled back. Each publishes through the channel layer
(channels-redis pub/sub with REDIS_URL, the in-memory layer on the embedded defaults) to a group
of one organization; analytics/consumers.py joins a connection to its own organization's group
only. Groups, one per organization and stream:

    org-<organization id>.events    org-<organization id>.counters    org-<organization id>.notifications

A connection that follows one sequence is in its organization's group and forwards only that
sequence's frames: one group message per organization and call, whatever the sequences, keeps
publishing cheap (one Redis PUBLISH each; bench/websocket_fanout.py), and each channel-layer
message carries the sequence id beside each encoded frame for that filter.

Frames the consumers send to the browser (JSON, one per event, counter update or notification):

    {"type": "event", "event": {"organization_id": int, "sequence_id": int | null,
        "step_id": int | null, "message_id": int | null, "type": str (open, click, ...),
        "occurred_at": ISO 8601 str, "is_machine": bool, "url": str}}
    {"type": "counters", "organization_id": int, "sequence_id": int | null,
        "deltas": {name: int}}
    {"type": "notification", "organization_id": int, "kind": str, "title": str,
        "data": {...}, "created_at": ISO 8601 str}
    {"type": "snapshot", ...}   # sent by /ws/analytics on connect, see analytics/consumers.py

Publishing is best effort: live updates are a view of data that is already stored, so a
channel layer that is down or slow is logged and never fails (or holds up) the caller.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

logger = logging.getLogger(__name__)

EVENTS = "events"
COUNTERS = "counters"
NOTIFICATIONS = "notifications"

# Channel-layer message types; the consumers' handlers are named after them (live.events ->
# live_events).
EVENTS_MESSAGE = "live.events"
COUNTERS_MESSAGE = "live.counters"
NOTIFICATION_MESSAGE = "live.notification"

# A publish that has not reached Redis by then is given up: the caller is a request or a task
# that must not wait on a dashboard.
PUBLISH_TIMEOUT_SECONDS = 2.0

EVENT_FIELDS = ("organization_id", "sequence_id", "step_id", "message_id", "type", "occurred_at", "is_machine", "url")


def organization_group(organization_id: int, stream: str) -> str:
    return f"org-{int(organization_id)}.{stream}"


def events_publish(events: Iterable[Mapping[str, Any]]) -> None:
    """Send events to the dashboards of their organization (and of their sequence).

    Each event is a mapping with the keys of EVENT_FIELDS (missing optional ones become null;
    `occurred_at` may be a datetime or an ISO 8601 string). All the events of one call that go
    to the same group travel as one channel-layer message, which the consumer unpacks into one
    frame per event: a caller with many events at hand should pass them together. Frames are
    encoded once here, not once per connection.
    """
    by_group: dict[str, list[tuple[int | None, str]]] = defaultdict(list)
    for event in events:
        payload = event_payload(event)
        frame = frame_json({"type": "event", "event": payload})
        by_group[organization_group(payload["organization_id"], EVENTS)].append((payload["sequence_id"], frame))
    _publish([(group, {"type": EVENTS_MESSAGE, "frames": frames}) for group, frames in by_group.items()])


def counters_publish(organization_id: int, sequence_id: int | None, deltas: Mapping[str, Any]) -> None:
    """Tell the organization's (and the sequence's) analytics dashboards that counts moved.
    Counts are integers; revenue is a decimal string ("12.50"), passed on as it is."""
    changed = {str(name): (str(delta) if name == "revenue" else int(delta)) for name, delta in deltas.items() if delta}
    if not changed:
        return
    frame = {
        "type": "counters",
        "organization_id": int(organization_id),
        "sequence_id": None if sequence_id is None else int(sequence_id),
        "deltas": changed,
    }
    message = {"type": COUNTERS_MESSAGE, "sequence_id": frame["sequence_id"], "frame": frame_json(frame)}
    _publish([(organization_group(organization_id, COUNTERS), message)])


def notification_publish(organization_id: int, *, kind: str, title: str, data: Mapping[str, Any]) -> None:
    """Show a notification to everyone of the organization who has a dashboard open.

    `data` must be JSON-serializable (Django's encoder: dates, decimals and UUIDs become strings)."""
    frame = {
        "type": "notification",
        "organization_id": int(organization_id),
        "kind": str(kind),
        "title": str(title),
        "data": dict(data),
        "created_at": timezone.now().isoformat(),
    }
    message = {"type": NOTIFICATION_MESSAGE, "frame": frame_json(frame)}
    _publish([(organization_group(organization_id, NOTIFICATIONS), message)])


def frame_json(content: Any) -> str:
    return json.dumps(content, cls=DjangoJSONEncoder, separators=(",", ":"))


def event_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON shape of one event, as the consumers forward it."""
    occurred_at = event.get("occurred_at")
    if isinstance(occurred_at, dt.datetime):
        occurred_at = occurred_at.isoformat()
    return {
        "organization_id": int(event["organization_id"]),
        "sequence_id": _optional_id(event.get("sequence_id")),
        "step_id": _optional_id(event.get("step_id")),
        "message_id": _optional_id(event.get("message_id")),
        "type": str(event["type"]),
        "occurred_at": occurred_at or timezone.now().isoformat(),
        "is_machine": bool(event.get("is_machine", False)),
        "url": str(event.get("url") or ""),
    }


def _optional_id(value: Any) -> int | None:
    return None if value is None else int(value)


def _publish(messages: list[tuple[str, dict[str, Any]]]) -> None:
    if not messages:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # It reaches only consumers of this process and is not thread-safe: drive it on the
            # caller's event loop (a sync view under daphne runs beside one).
            async_to_sync(_group_send_all)(layer, messages)
        else:
            _publisher_loop().run(_group_send_all(layer, messages))
    except Exception:
        # Redis down or slow: the data is stored; the dashboards catch up on their next load.
        logger.exception("live: could not publish %d message(s) to the channel layer", len(messages))


class _PublisherLoop:
    """One event loop per process, on a daemon thread, that every publish of the process uses.

    channels-redis keeps its connection pool per event loop. async_to_sync from a thread without
    a loop (a Celery task, a management command, a WSGI worker) would make a new loop, and so a
    new Redis connection, for each call: 3.4 ms of CPU a publish, measured. On this loop the
    connections stay open and a publish costs a few Redis round trips.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-publisher", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=PUBLISH_TIMEOUT_SECONDS + 1)


_publisher: _PublisherLoop | None = None
_publisher_lock = threading.Lock()


def _publisher_loop() -> _PublisherLoop:
    global _publisher
    # A forked child (Celery prefork, gunicorn) inherits the object but not the thread.
    if _publisher is None or _publisher.pid != os.getpid():
        with _publisher_lock:
            if _publisher is None or _publisher.pid != os.getpid():
                _publisher = _PublisherLoop()
    return _publisher


async def _group_send_all(layer: BaseChannelLayer, messages: list[tuple[str, dict[str, Any]]]) -> None:
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        for group, message in messages:
            await layer.group_send(group, message)
