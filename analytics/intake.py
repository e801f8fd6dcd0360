"""Tracking hits (pixel fetches, link clicks) on their way to events.

The pixel and the click redirect are the busiest endpoints: every recipient's mail client hits
them. With TRACKING_BUFFER on (the default with REDIS_URL), a hit costs the request one RPUSH to
a Redis list; a drainer writes hits to the database in batches (`hits_apply`: one INSERT of
events, one of their analytics facts) and publishes them to live dashboards after commit.
Without it (embedded defaults, tests), `hits_apply` runs in the request.

Every hit carries its own id, stored as the event's dedupe key: a batch written but not yet
trimmed from the list when a drainer dies is written again as nothing. A batch the database
refuses stays in the list for the next drain: a hit is never lost once the request answered.

Drainers: one thread per web process, woken when the list goes from empty to one item, and the
periodic flush task (analytics.tasks.rollups_flush) in case no web process is alive. A Redis
lock keeps one drainer at a time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, close_old_connections, connection, transaction

logger = logging.getLogger(__name__)

HITS_KEY = "emailseq:tracking:hits"
LOCK_KEY = "emailseq:tracking:drain-lock"
DRAIN_BATCH = 2_000
LOCK_SECONDS = 60
GATHER_SECONDS = 0.2
# What the database (or its driver: psycopg2 refuses NUL characters itself) says of bad data,
# as opposed to being away.
REFUSED_DATA = (DataError, IntegrityError, ValueError)
TRIM_IF_OWNER = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ltrim', KEYS[2], tonumber(ARGV[2]), -1)
redis.call('expire', KEYS[1], tonumber(ARGV[3]))
return 1
"""


@dataclass(frozen=True)
class Hit:
    kind: str  # "open" or "click"
    message_id: int
    at: float  # when it was requested (epoch seconds)
    ip: str | None
    user_agent: str
    method: str
    url: str = ""
    id: str = ""

    @classmethod
    def new(cls, *, user_agent: str, **fields: Any) -> Hit:
        # PostgreSQL text cannot hold NUL; a client can send one in its User-Agent.
        return cls(id=uuid.uuid4().hex, at=time.time(), user_agent=user_agent.replace("\x00", "")[:512], **fields)


def buffered() -> bool:
    return bool(settings.TRACKING_BUFFER and settings.REDIS_URL)


_redis_client: Any = None


def _redis() -> Any:
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis_client


def hit_record(hit: Hit) -> None:
    """Take a hit: into the buffer, or straight to the database when there is none (or Redis is
    down: the hit is written in the request instead, never dropped)."""
    if buffered():
        try:
            length = _redis().rpush(HITS_KEY, json.dumps(hit.__dict__, separators=(",", ":")))
        except Exception:
            logger.warning("tracking buffer unreachable; writing the hit directly", exc_info=True)
        else:
            if length == 1:
                _drainer().wake()
            return
    hits_apply([hit])


def hits_apply(hits: Iterable[Hit]) -> int:
    """Write hits as events (machine opens and clicks flagged), with their analytics facts, in
    one transaction; publish them after commit. Hits of unknown messages, and hits already
    written (same id), are skipped. Returns how many events were written."""
    from analytics import services
    from delivery.machines import machine_reason
    from delivery.models import Event, Message

    hits = list(hits)
    if not hits:
        return 0
    messages = {
        row["id"]: row
        for row in Message.objects.filter(id__in={hit.message_id for hit in hits}).values(
            "id", "organization_id", "contact_id", "sent_at", "sequence_id", "step_id"
        )
    }
    rows: list[tuple] = []
    for hit in hits:
        message = messages.get(hit.message_id)
        if message is None:
            continue
        occurred_at = dt.datetime.fromtimestamp(hit.at, tz=dt.UTC)
        reason = machine_reason(
            user_agent=hit.user_agent,
            ip=hit.ip,
            sent_at=message["sent_at"],
            occurred_at=occurred_at,
            method=hit.method,
        )
        rows.append(
            (
                message["organization_id"],
                hit.message_id,
                message["contact_id"],
                hit.kind,
                connection.ops.adapt_datetimefield_value(occurred_at),
                hit.ip,
                hit.user_agent[:512],
                hit.url,
                bool(reason),
                reason,
                "",
                f"hit:{hit.id}" if hit.id else "",
            )
        )
    if not rows:
        return 0
    table = connection.ops.quote_name(Event._meta.db_table)
    columns = (
        "organization_id, message_id, contact_id, type, occurred_at, ip, user_agent, url, is_machine, "
        "machine_reason, detail, dedupe_key"
    )
    written: list[tuple[int, int, int, str, Any, bool, str]] = []
    with transaction.atomic():
        with connection.cursor() as cursor:
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                values = ", ".join(["(" + ", ".join(["%s"] * 12) + ")"] * len(chunk))
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT DO NOTHING "
                    "RETURNING id, organization_id, message_id, type, occurred_at, is_machine, url",
                    [value for row in chunk for value in row],
                )
                written.extend(cursor.fetchall())
        by_organization: dict[int, list[int]] = {}
        for event_id, organization_id, *_ in written:
            by_organization.setdefault(organization_id, []).append(event_id)
        for organization_id, event_ids in by_organization.items():
            services.facts_add(organization_id=organization_id, kind="event", object_ids=event_ids)
        payloads = []
        for _, organization_id, message_id, kind, occurred_at, is_machine, url in written:
            message = messages[message_id]
            if isinstance(occurred_at, str):  # SQLite hands back text
                occurred_at = dt.datetime.fromisoformat(occurred_at).replace(tzinfo=dt.UTC)
            payloads.append(
                {
                    "organization_id": organization_id,
                    "sequence_id": message["sequence_id"],
                    "step_id": message["step_id"],
                    "message_id": message_id,
                    "type": kind,
                    "occurred_at": occurred_at.isoformat(),
                    "is_machine": bool(is_machine),
                    "url": url,
                }
            )

        def publish() -> None:
            from analytics import live

            live.events_publish(payloads)

        transaction.on_commit(publish)
    return len(written)


def _apply_setting_aside_bad_hits(hits: list[Hit]) -> None:
    """hits_apply for a batch; when the database refuses the batch's data (not when it is
    away), write the hits one by one and set aside, logged, those it refuses, so that one bad
    hit cannot hold up the buffer."""
    try:
        hits_apply(hits)
    except REFUSED_DATA:
        for hit in hits:
            try:
                hits_apply([hit])
            except REFUSED_DATA:
                logger.exception("setting aside a tracking hit the database refuses: %r", hit)


def _parse(raw: bytes) -> Hit | None:
    try:
        return Hit(**json.loads(raw))
    except (ValueError, TypeError):
        logger.error("dropping an unreadable tracking hit: %r", raw[:200])
        return None


def hits_drain(*, max_batches: int | None = None) -> int:
    """Write buffered hits to the database until the buffer is empty. Returns how many hits
    were taken (0 when another drainer holds the lock)."""
    if not buffered():
        return 0
    client = _redis()
    token = uuid.uuid4().hex
    taken = 0
    while True:
        if not client.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS):
            return taken
        try:
            batches = 0
            while max_batches is None or batches < max_batches:
                raw = client.lrange(HITS_KEY, 0, DRAIN_BATCH - 1)
                if not raw:
                    break
                _apply_setting_aside_bad_hits([hit for hit in map(_parse, raw) if hit is not None])
                # Trim only while the lock is still ours: a drainer whose lock expired mid-batch
                # must not trim the batch a newer drainer has read (it was written once anyway).
                if not client.eval(TRIM_IF_OWNER, 2, LOCK_KEY, HITS_KEY, token, len(raw), LOCK_SECONDS):
                    logger.warning("tracking drain lost its lock mid-batch; another drainer goes on")
                    return taken
                taken += len(raw)
                batches += 1
        finally:
            # Only our own lock: compare and delete in one step.
            client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                1,
                LOCK_KEY,
                token,
            )
        # A hit pushed while we held the lock found the list non-empty and woke nobody.
        if (max_batches is not None and batches >= max_batches) or not client.llen(HITS_KEY):
            return taken


def hits_pending() -> int:
    return int(_redis().llen(HITS_KEY)) if buffered() else 0


class _Drainer:
    """One thread per process that drains the buffer when woken, and every few seconds."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="tracking-drainer", daemon=True)
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            if self._wake.wait(timeout=settings.TRACKING_DRAIN_SECONDS):
                # Let a batch gather: under load the list empties and refills all the time, and
                # a batch of a few hits costs almost three times as much per hit as a full one.
                time.sleep(GATHER_SECONDS)
            self._wake.clear()
            try:
                close_old_connections()
                hits_drain()
            except Exception:
                logger.exception("draining tracking hits failed; they stay buffered")
            finally:
                close_old_connections()


_drainer_instance = _Drainer()


def _drainer() -> _Drainer:
    return _drainer_instance
