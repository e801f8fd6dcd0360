"""Tracking hits (pixel fetches, link clicks) on their way to events.

The pixel and the click redirect are the busiest endpoints: every recipient's mail client hits
them. With TRACKING_BUFFER on (the default on PostgreSQL), a hit costs the request one append
(a single write(2)) to a spool file of its process; a drainer writes hits to the database in
batches (`hits_apply`: one INSERT of events, one of their analytics facts) and publishes them to
live dashboards after commit. Without it (embedded defaults, tests), `hits_apply` runs in the
request.

The spool (TRACKING_SPOOL_DIR, one per host): each process appends to a segment file of its own,
`<pid>-<random>.hits`, one JSON line per hit, and holds an exclusive flock on it while it is
open. It closes the segment at its first hit after SEGMENT_SECONDS and starts another; the
process's drainer thread closes it a moment after its first hit, so that the last hits before a
quiet spell are written too. A segment whose lock can be taken is complete: closed by its writer, or
left by a writer that died (the kernel drops the lock with the process). One drainer at a time
per spool (an flock on `.drain.lock`) writes complete segments in batches and deletes each file
once its hits are committed, and removes what a writer that died while creating a segment left.

Why a file and not a Redis list: an append costs the request a few microseconds of CPU and no
round trip; an RPUSH cost about a fifth of the request rate (bench/tracking_rps.py). A hit is in
the kernel's page cache once the request answers: it survives its process (a crash, kill -9, a
restart) and an outage of the database or Redis, not a crash of the machine (no fsync per hit,
as with Redis without an append-only file).

Every hit carries its own id, stored as the event's dedupe key: a segment written but not yet
deleted when a drainer dies is written again as nothing. While the database is away, segments
stay for the next drain: a hit is never lost once the request answered. A hit whose data the
database refuses is set aside (logged), as is a line that is not a hit: neither holds up the
hits after it.

Drainers: one thread per web process, woken by the first hit of each segment and every
TRACKING_DRAIN_SECONDS, and the periodic flush task (analytics.tasks.rollups_flush) for
segments whose process is gone. In a cluster each host drains its own spool; keep it on a local
disk (flock is not dependable on NFS) that outlives the process's container.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, close_old_connections, connection, connections, transaction

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".hits"
DRAIN_LOCK_NAME = ".drain.lock"
DRAIN_BATCH = 2_000
GATHER_SECONDS = 0.2
# A writer starts a new segment at its first hit after this long.
SEGMENT_SECONDS = 0.5
# What the database (or its driver: psycopg2 refuses NUL characters itself) says of bad data,
# as opposed to being away.
REFUSED_DATA = (DataError, IntegrityError, ValueError, OverflowError)


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
        return cls(id=secrets.token_hex(16), at=time.time(), user_agent=user_agent.replace("\x00", "")[:512], **fields)


def buffered() -> bool:
    return bool(settings.TRACKING_BUFFER)


def spool_dir() -> Path:
    return Path(settings.TRACKING_SPOOL_DIR)


def hit_record(hit: Hit) -> None:
    """Take a hit: into this process's spool segment, or straight to the database when the
    buffer is off (or the spool cannot be written: the hit is written in the request instead,
    never dropped)."""
    if buffered():
        line = hit_line(hit)
        try:
            opened = _writer.append(line)
        except OSError:
            logger.warning("tracking spool unwritable; writing the hit directly", exc_info=True)
        else:
            if opened:
                _drainer().wake()
            return
    hits_apply([hit])


class _SegmentWriter:
    """This process's open segment: appended to by requests, closed by the drainer thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._opened_at = 0.0

    def append(self, line: bytes) -> bool:
        """Append one line; True when it opened a new segment."""
        with self._lock:
            if self._fd is not None and time.monotonic() - self._opened_at > SEGMENT_SECONDS:
                self._close()  # complete: drainable, whether or not our drainer thread runs
            opened = self._fd is None
            if opened:
                self._fd = _segment_open()
                self._opened_at = time.monotonic()
            try:
                written = os.write(self._fd, line)
            except OSError:
                self._close()
                raise
            if written != len(line):
                # A short write (a full disk) leaves a torn line: end the segment there, so the
                # next hit starts a clean one; the torn line is dropped, logged, when drained.
                self._close()
                raise OSError(f"short write to the tracking spool ({written} of {len(line)} bytes)")
            return opened

    def rotate(self) -> None:
        """Close the open segment, if any: its hits become drainable."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def before_fork(self) -> None:
        self._lock.acquire()

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def forget_after_fork(self) -> None:
        # A forked child shares the parent's open segment (and its lock): drop its copy, so the
        # parent's close completes the segment, and start a segment of its own.
        self._lock = threading.Lock()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _segment_open() -> int:
    directory = spool_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{secrets.token_hex(16)}"
    temporary = directory / f".{name}.new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        # Locked before it has its drainable name: no drainer takes a segment still written.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, directory / f"{name}{SEGMENT_SUFFIX}")
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    return fd


_writer = _SegmentWriter()
# Forked with the lock held (a request thread mid-append), the child's copy would stay locked.
os.register_at_fork(
    before=_writer.before_fork, after_in_parent=_writer.after_fork_in_parent, after_in_child=_writer.forget_after_fork
)


def hits_apply(hits: Iterable[Hit]) -> int:
    """Write hits as events (machine opens and clicks flagged), with their analytics facts, in
    one transaction; publish them after commit. Hits of unknown messages, and hits already
    written (same id), are skipped. Returns how many events were written."""
    from analytics import services
    from delivery.machines import machine_reason
    from delivery.models import Message

    # Every hit is keyed (Hit.new gives it an id): the key makes a rewrite a no-op, and tells
    # which hits the INSERT wrote.
    hits = [hit if hit.id else replace(hit, id=secrets.token_hex(16)) for hit in hits]
    if not hits:
        return 0
    message_table = connection.ops.quote_name(Message._meta.db_table)
    wanted = sorted({hit.message_id for hit in hits})
    with connection.cursor() as cursor:
        # Plain SQL: the ORM's `id__in` costs a few microseconds per id, and a drain passes
        # thousands.
        cursor.execute(
            f"SELECT id, organization_id, contact_id, sent_at, sequence_id, step_id FROM {message_table} "
            f"WHERE id IN ({', '.join(['%s'] * len(wanted))})",
            wanted,
        )
        messages = {row[0]: row for row in cursor.fetchall()}
    rows: list[tuple] = []
    keyed: dict[str, tuple[Hit, tuple, str, bool]] = {}
    adapt_datetime = connection.ops.adapt_datetimefield_value
    for hit in hits:
        message = messages.get(hit.message_id)
        if message is None:
            continue
        sent_at = message[3]
        if isinstance(sent_at, str):
            sent_at = dt.datetime.fromisoformat(sent_at)
        if sent_at is not None and sent_at.tzinfo is None:  # SQLite keeps UTC without an offset
            sent_at = sent_at.replace(tzinfo=dt.UTC)
        occurred_at = dt.datetime.fromtimestamp(hit.at, tz=dt.UTC)
        reason = machine_reason(
            user_agent=hit.user_agent, ip=hit.ip, sent_at=sent_at, occurred_at=occurred_at, method=hit.method
        )
        dedupe_key = f"hit:{hit.id}"
        keyed[dedupe_key] = (hit, message, occurred_at.isoformat(), bool(reason))
        rows.append(
            (
                message[1],
                hit.message_id,
                message[2],
                hit.kind,
                adapt_datetime(occurred_at),
                hit.ip,
                hit.user_agent[:512],
                hit.url,
                bool(reason),
                reason,
                "",
                dedupe_key,
            )
        )
    if not rows:
        return 0
    written: list[tuple[int, str]] = []
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # One array per column: PostgreSQL reads arrays for a third of what it spends
                # parsing a VALUES list of thousands of rows.
                cursor.execute(_events_from_arrays_sql(), [list(column) for column in zip(*rows, strict=True)])
                written.extend(cursor.fetchall())
            else:
                for start in range(0, len(rows), 1000):
                    chunk = rows[start : start + 1000]
                    values = ", ".join(["(" + ", ".join(["%s"] * len(HIT_EVENT_COLUMNS)) + ")"] * len(chunk))
                    cursor.execute(
                        f"INSERT INTO {_event_table()} ({', '.join(HIT_EVENT_COLUMNS)}) VALUES {values} "
                        "ON CONFLICT DO NOTHING RETURNING id, dedupe_key",
                        [value for row in chunk for value in row],
                    )
                    written.extend(cursor.fetchall())
        by_organization: dict[int, list[int]] = {}
        payloads = []
        for event_id, dedupe_key in written:
            hit, message, occurred_at, is_machine = keyed[dedupe_key]
            by_organization.setdefault(message[1], []).append(event_id)
            payloads.append(
                {
                    "organization_id": message[1],
                    "sequence_id": message[4],
                    "step_id": message[5],
                    "message_id": hit.message_id,
                    "type": hit.kind,
                    "occurred_at": occurred_at,
                    "is_machine": is_machine,
                    "url": hit.url,
                }
            )
        for organization_id, event_ids in by_organization.items():
            services.facts_add(organization_id=organization_id, kind="event", object_ids=event_ids)

        def publish() -> None:
            from analytics import live

            live.events_publish(payloads)

        transaction.on_commit(publish)
    return len(written)


HIT_EVENT_COLUMNS = (
    "organization_id",
    "message_id",
    "contact_id",
    "type",
    "occurred_at",
    "ip",
    "user_agent",
    "url",
    "is_machine",
    "machine_reason",
    "detail",
    "dedupe_key",
)


def _event_table() -> str:
    from delivery.models import Event

    return connection.ops.quote_name(Event._meta.db_table)


@lru_cache(maxsize=1)
def _events_from_arrays_sql() -> str:
    from delivery.models import Event

    fields = {field.column: field for field in Event._meta.concrete_fields}
    # Characters as text[]: a cast to varchar(n)[] would cut a value that is too long without a
    # word, where storing it in the column refuses it (and the hit is set aside).
    arrays = ", ".join(
        f"%s::{'text' if fields[column].get_internal_type() == 'CharField' else fields[column].db_type(connection)}[]"
        for column in HIT_EVENT_COLUMNS
    )
    return (
        f"INSERT INTO {_event_table()} ({', '.join(HIT_EVENT_COLUMNS)}) SELECT * FROM unnest({arrays}) "
        "ON CONFLICT DO NOTHING RETURNING id, dedupe_key"
    )


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


def hit_line(hit: Hit) -> bytes:
    """A hit as one line of a spool segment: a JSON array of its fields in order (JSON escapes
    the newlines a user agent or a link may hold)."""
    fields = (hit.kind, hit.message_id, hit.at, hit.ip, hit.user_agent, hit.method, hit.url, hit.id)
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


HIT_KINDS = ("open", "click")
LATEST_HIT_TIME = 2**33  # epoch seconds: the year 2242


def _parse(raw: str | bytes) -> Hit | None:
    """The hit of a spool line, or None (logged) for a line that is not one: a line the drain
    cannot read must not stop the hits after it."""
    try:
        fields = json.loads(raw)
    except ValueError:
        fields = None
    # `type(...) is` rather than isinstance: a JSON true is no message id.
    if type(fields) is list and len(fields) == 8:
        kind, message_id, at, ip, user_agent, method, url, hit_id = fields
        if (
            kind in HIT_KINDS
            and type(message_id) is int
            and 0 < message_id < 2**63
            and type(at) in (float, int)
            and 0 <= at < LATEST_HIT_TIME
            and (ip is None or type(ip) is str)
            and type(user_agent) is str
            and type(method) is str
            and type(url) is str
            and type(hit_id) is str
            and 0 < len(hit_id) <= 64
        ):
            return Hit(kind, message_id, at, ip, user_agent, method, url, hit_id)
    logger.error("dropping an unreadable tracking hit: %r", raw[:200])
    return None


@dataclass
class _Segment:
    path: Path
    fd: int
    lines: list[str]


def _locked_if_free(path: Path) -> int | None:
    """`path` opened and exclusively locked, or None when another holds its lock (its writer is
    alive) or it is gone."""
    try:
        fd = _drain_open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _drain_close(fd)
        return None
    except BaseException:
        _drain_close(fd)
        raise
    return fd


def _segment_take(path: Path) -> _Segment | None:
    """A complete segment, locked and read; None when it is still being written or gone."""
    fd = _locked_if_free(path)
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_nlink == 0:  # drained and deleted while we opened it
            _drain_close(fd)
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except BaseException:
        _drain_close(fd)
        raise
    # Lines are ASCII JSON; a torn or corrupt one decodes to something _parse refuses.
    text = b"".join(chunks).decode("utf-8", "replace")
    return _Segment(path=path, fd=fd, lines=[line for line in text.split("\n") if line])


def _segments_write(segments: list[_Segment]) -> int:
    """Write the hits of these segments (in batches), then delete them. A failure other than bad
    data leaves every segment in place for the next drain."""
    try:
        lines = [line for segment in segments for line in segment.lines]
        hits = [hit for hit in map(_parse, lines) if hit is not None]
        for start in range(0, len(hits), DRAIN_BATCH):
            _apply_setting_aside_bad_hits(hits[start : start + DRAIN_BATCH])
        for segment in segments:
            segment.path.unlink(missing_ok=True)
        return len(lines)
    finally:
        for segment in segments:
            _drain_close(segment.fd)


def hits_drain() -> int:
    """Write the complete segments of the spool to the database, oldest first. Returns how many
    hits were taken (0 when another drainer holds the spool)."""
    # Not only while the buffer is on: segments written before it was turned off are drained too.
    directory = spool_dir()
    try:
        lock = _drain_open(directory / DRAIN_LOCK_NAME, os.O_RDWR | os.O_CREAT)
    except FileNotFoundError:
        return 0  # no spool yet: nothing was ever buffered here
    except OSError:
        # Requests write their hits directly meanwhile; the flush that called us goes on.
        logger.warning("tracking spool %s unusable; nothing drained", directory, exc_info=True)
        return 0
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        taken = 0
        batch: list[_Segment] = []
        size = 0
        try:
            for path in _spool_scan(directory):
                segment = _segment_take(path)
                if segment is None:
                    continue
                batch.append(segment)
                size += len(segment.lines)
                if size >= DRAIN_BATCH:
                    segments, batch, size = batch, [], 0
                    taken += _segments_write(segments)
            if batch:
                segments, batch = batch, []
                taken += _segments_write(segments)
        finally:
            for segment in batch:  # taken but not written: an error stopped the drain
                _drain_close(segment.fd)
        return taken
    finally:
        _drain_close(lock)


# The descriptors a drain holds (its lock, the segments it took): a process forked meanwhile must
# close its copies, or it would hold their locks, and the spool, for as long as it lives.
_drain_fds: set[int] = set()


def _drain_open(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    _drain_fds.add(fd)
    return fd


def _drain_close(fd: int) -> None:
    _drain_fds.discard(fd)
    os.close(fd)


def _drain_forget_after_fork() -> None:
    for fd in list(_drain_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _drain_fds.clear()


os.register_at_fork(after_in_child=_drain_forget_after_fork)


# A segment is locked within microseconds of its creation: one still unnamed this long after,
# and unlocked, was left by a process that died in between (it holds no hits).
ABANDONED_AFTER_SECONDS = 60


def _spool_scan(directory: Path, *, remove_abandoned: bool = True) -> list[Path]:
    """The spool's segments, oldest first; on the way (for a drainer), the unnamed files of
    writers that died while creating a segment are removed."""
    paths = []
    for entry in os.scandir(directory):
        try:
            modified = entry.stat().st_mtime_ns
        except FileNotFoundError:
            continue
        if entry.name.endswith(SEGMENT_SUFFIX):
            paths.append((modified, Path(entry.path)))
        elif (
            remove_abandoned
            and entry.name.startswith(".")
            and entry.name.endswith(".new")
            and time.time() - modified / 1e9 >= ABANDONED_AFTER_SECONDS
        ):
            fd = _locked_if_free(Path(entry.path))
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                _drain_close(fd)
    return [path for _, path in sorted(paths)]


def hits_pending() -> int:
    """Hits in the spool not yet written, complete segments or not (reads every segment)."""
    if not spool_dir().is_dir():
        return 0
    pending = 0
    for path in _spool_scan(spool_dir(), remove_abandoned=False):
        try:
            pending += sum(1 for line in path.read_bytes().split(b"\n") if line)
        except FileNotFoundError:
            continue
    return pending


class _Drainer:
    """One thread per process that closes this process's segment and drains the spool when
    woken, and every TRACKING_DRAIN_SECONDS."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # the current thread's
        self._lock = threading.Lock()

    def wake(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    # Each thread has its own stop: a thread being stopped never stops its successor.
                    self._stopping = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run, args=(self._stopping,), name="tracking-drainer", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the drain it may be in), closing its database connections; the
        next wake starts another. For tests and for a process that is going away."""
        with self._lock:
            thread, stopping, self._thread = self._thread, self._stopping, None
        if thread is None or not thread.is_alive():
            return
        stopping.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the tracking drainer thread did not stop")

    def _run(self, stopping: threading.Event) -> None:
        try:
            while not stopping.is_set():
                if self._wake.wait(timeout=settings.TRACKING_DRAIN_SECONDS) and not stopping.is_set():
                    # Let a batch gather: a batch of a few hits costs much more per hit than a
                    # full one, and the segment's first hit is what woke us.
                    time.sleep(GATHER_SECONDS)
                self._wake.clear()
                if stopping.is_set():
                    break
                try:
                    _writer.rotate()
                    close_old_connections()
                    hits_drain()
                except Exception:
                    logger.exception("draining tracking hits failed; they stay in the spool")
                finally:
                    close_old_connections()
        finally:
            connections.close_all()

    def forget_after_fork(self) -> None:
        self._wake = threading.Event()
        self._thread = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()


_drainer_instance = _Drainer()
os.register_at_fork(after_in_child=_drainer_instance.forget_after_fork)


def _drainer() -> _Drainer:
    return _drainer_instance
