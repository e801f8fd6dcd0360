"""Sending messages, and what recipients do with them (opens, clicks, unsubscribes, bounces).

Every send goes through messages_send; every event through event_record.

A message's life: the engine writes it QUEUED and dispatches its id after commit. A send task
claims it (SENDING, with a lease), renders, hands it to the route, and records the outcome:
SENT; QUEUED again with a later next_attempt_at on a transient failure; BOUNCED on a permanent
one (which also makes the contact unmailable); FAILED when the template cannot render or the
attempts run out; CANCELLED when the contact may no longer be mailed. The tick's sweep
re-dispatches queued messages whose time has come (retries, or ids a broker lost) and releases
messages whose worker died holding them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from analytics import services as analytics_services
from delivery import policies, ratelimit, routing, signing
from delivery.composer import ComposedMessage, Recipient, Skeleton
from delivery.models import Event, Message
from delivery.transports import Outcome, SendResult, TransportUnavailable, open_transport
from sequences import services as sequence_services
from sequences.models import Enrollment, Sequence
from sequences.personalization import RenderError
from subscribers import services as subscriber_services
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression

logger = logging.getLogger(__name__)

SWEEP_LIMIT = 10_000


# Queueing and dispatch -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewMessage:
    organization_id: int
    enrollment_id: int
    step_id: int
    sequence_id: int
    contact_id: int


def messages_enqueue(*, messages: list[NewMessage], now: dt.datetime) -> list[int]:
    """Write messages as queued (before anything is sent) and dispatch them after commit.

    A step sends at most once per enrollment: a message that already exists for the same
    enrollment and step (the step was moved after it ran) is skipped, not an error.
    """
    next_attempt_at = now + dt.timedelta(seconds=settings.SEND_DISPATCH_GRACE_SECONDS)
    table = connection.ops.quote_name(Message._meta.db_table)
    columns = (
        "organization_id, enrollment_id, step_id, sequence_id, contact_id, status, attempts, next_attempt_at, "
        "subject, recipient, message_id_header, links, response, created_at"
    )
    rows = [(m.organization_id, m.enrollment_id, m.step_id, m.sequence_id, m.contact_id) for m in messages]
    ids: list[int] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement over arrays: a sixth of what bulk_create costs per row.
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT o, e, s, q, c, %s, 0, %s, '', '', '', '[]'::jsonb, '', %s "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) AS t(o, e, s, q, c) "
                "ON CONFLICT (enrollment_id, step_id) DO NOTHING RETURNING id",
                [Message.Status.QUEUED, next_attempt_at, now, *(list(column) for column in zip(*rows, strict=True))],
            )
            ids = [row[0] for row in cursor.fetchall()]
        else:
            for start in range(0, len(rows), 1000):  # SQLite caps the parameters of one statement
                chunk = rows[start : start + 1000]
                values = ", ".join(["(%s, %s, %s, %s, %s, %s, 0, %s, '', '', '', '[]', '', %s)"] * len(chunk))
                params: list[Any] = []
                for row in chunk:
                    params.extend((*row, Message.Status.QUEUED, next_attempt_at, now))
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) VALUES {values} "
                    "ON CONFLICT (enrollment_id, step_id) DO NOTHING RETURNING id",
                    params,
                )
                ids.extend(row[0] for row in cursor.fetchall())
    if ids:
        analytics_services.facts_add_for(kind="message", queryset=Message.objects.filter(id__in=ids))
    messages_dispatch(message_ids=ids)
    return ids


def messages_dispatch(*, message_ids: list[int]) -> None:
    """Hand message ids to send tasks, in batches, once the current transaction commits."""
    if not message_ids:
        return
    from delivery.tasks import send_messages

    size = settings.SEND_BATCH_SIZE
    chunks = [message_ids[start : start + size] for start in range(0, len(message_ids), size)]

    def enqueue() -> None:
        for chunk in chunks:
            send_messages.delay(chunk)

    transaction.on_commit(enqueue)


def messages_sweep(*, now: dt.datetime | None = None) -> int:
    """Release messages whose worker died, and dispatch queued messages that are due."""
    now = now or timezone.now()
    expired = Message.objects.filter(status=Message.Status.SENDING, lease_expires_at__lt=now)
    # A lost worker counts as an attempt, so a message that keeps killing its worker ends.
    given_up = list(expired.filter(attempts__gte=settings.SEND_MAX_ATTEMPTS - 1).values_list("id", "enrollment_id"))
    if given_up:
        given_up_messages = Message.objects.filter(id__in=[message_id for message_id, _ in given_up])
        with transaction.atomic():
            analytics_services.facts_add_for(kind="message", queryset=given_up_messages)
            given_up_messages.update(
                status=Message.Status.FAILED,
                attempts=F("attempts") + 1,
                lease_expires_at=None,
                response="gave up: the worker sending it was lost too often",
            )
        sequence_services.enrollments_fail(
            enrollment_ids=[enrollment_id for _, enrollment_id in given_up], reason=Enrollment.ExitReason.SEND_FAILED
        )
    expired.update(status=Message.Status.QUEUED, next_attempt_at=now, lease_expires_at=None, attempts=F("attempts") + 1)
    with transaction.atomic():
        due = list(
            Message.objects.filter(status=Message.Status.QUEUED, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:SWEEP_LIMIT]
        )
        if due:
            # Pushing next_attempt_at on means a second sweep will not dispatch them again
            # unless this dispatch is lost.
            Message.objects.filter(id__in=due).update(
                next_attempt_at=now + dt.timedelta(seconds=settings.SEND_DISPATCH_GRACE_SECONDS)
            )
            messages_dispatch(message_ids=due)
    return len(due)


# Sending -------------------------------------------------------------------------------------

# A batch waits this long for a free connection of a route with max_connections before it
# tries the next route.
CONNECTION_SLOT_WAIT_SECONDS = 2.0
# A route that refuses this many messages in a row for reasons other than the recipient
# (relay denied, policy) is treated as down: the messages are retried, not failed.
REJECTIONS_BEFORE_ROUTE_DOWN = 5


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    deferred: int = 0
    bounced: int = 0
    failed: int = 0
    cancelled: int = 0
    held: int = 0

    def add(self, other: SendReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Outcomes:
    # id, subject, recipient, Message-ID, links (JSON), response, route id, provider's message id
    sent: list[tuple[int, str, str, str, str, str, int | None, str]] = field(default_factory=list)
    retry: list[tuple[int, int, str]] = field(default_factory=list)  # id, attempts made, response
    deferred: list[int] = field(default_factory=list)  # never tried: the route was down or time ran out
    deferred_because: str = ""
    deferred_until: dt.datetime | None = None  # when a route can take them again, if known
    bounced: list[tuple[int, str]] = field(default_factory=list)  # id, response
    rejected: list[tuple[int, str]] = field(default_factory=list)  # id, response: refused, not a bounce
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # id, enrollment exit reason, response
    cancelled: list[tuple[int, str]] = field(default_factory=list)  # id, response
    held: list[int] = field(default_factory=list)

    @property
    def only_sent(self) -> bool:
        return not (
            self.retry or self.deferred or self.bounced or self.rejected or self.failed or self.cancelled or self.held
        )


MESSAGE_COLUMNS = (
    "id",
    "organization_id",
    "contact_id",
    "enrollment_id",
    "sequence_id",
    "step_id",
    "attempts",
    "contact__email",
    "contact__first_name",
    "contact__last_name",
    "contact__properties",
    "contact__timezone",
    "contact__status",
    "sequence__status",
    "sequence__from_name",
    "sequence__from_email",
    "sequence__reply_to",
    "sequence__track_opens",
    "sequence__track_clicks",
    "step__template_id",
    "step__template__subject",
    "step__template__html_body",
    "step__template__text_body",
    "organization__name",
    "organization__postal_address",
    # For the sending policies' shortcut (delivery.policies): nothing to decide without them.
    "contact__paused_until",
    "organization__frequency_cap_daily",
    "organization__frequency_cap_weekly",
    "organization__sunset_days",
    # A split step's variant overrides parts of the template (experiments.models.Variant).
    "variant_id",
    "variant__template__subject",
    "variant__template__html_body",
    "variant__template__text_body",
    "variant__subject",
    "variant__html_body",
    "variant__text_body",
    "variant__from_name",
)


def _claim(message_ids: list[int], now: dt.datetime) -> list[dict[str, Any]]:
    """Take the still-queued messages among `message_ids` for this worker."""
    lease = now + dt.timedelta(seconds=settings.SEND_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Message._meta.db_table)
        with connection.cursor() as cursor:
            # The locking query runs once (a CTE), and the update looks only at the asked-for ids:
            # with a locking subquery inside the UPDATE, a planner without statistics (a table
            # just filled) may re-run it for every row of the table.
            ids = list(message_ids)
            cursor.execute(
                f"WITH claimed AS (SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s "
                f"FOR UPDATE SKIP LOCKED) UPDATE {table} AS m SET status = %s, lease_expires_at = %s "
                "FROM claimed WHERE m.id = claimed.id AND m.id = ANY(%s) RETURNING m.id",
                [ids, Message.Status.QUEUED, Message.Status.SENDING, lease, ids],
            )
            ids = [row[0] for row in cursor.fetchall()]
    else:
        with transaction.atomic():
            ids = list(
                Message.objects.filter(id__in=message_ids, status=Message.Status.QUEUED)
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)
            )
            Message.objects.filter(id__in=ids).update(status=Message.Status.SENDING, lease_expires_at=lease)
    return list(Message.objects.filter(id__in=ids).order_by("id").values(*MESSAGE_COLUMNS)) if ids else []


def _skeleton(row: dict[str, Any]) -> Skeleton:
    subject, html_body, text_body = (
        row["step__template__subject"],
        row["step__template__html_body"],
        row["step__template__text_body"],
    )
    if row["variant__template__subject"] is not None:  # the variant's own template, whole
        subject, html_body, text_body = (
            row["variant__template__subject"],
            row["variant__template__html_body"],
            row["variant__template__text_body"],
        )
    if row["variant__html_body"]:
        # A text part written for the other HTML would not match: derived from this one instead.
        html_body, text_body = row["variant__html_body"], row["variant__text_body"] or ""
    elif row["variant__text_body"]:
        text_body = row["variant__text_body"]
    return Skeleton(
        subject=row["variant__subject"] or subject,
        html_body=html_body,
        text_body=text_body,
        from_name=row["variant__from_name"] or row["sequence__from_name"],
        from_email=row["sequence__from_email"],
        reply_to=row["sequence__reply_to"],
        track_opens=row["sequence__track_opens"],
        track_clicks=row["sequence__track_clicks"],
        organization_id=row["organization_id"],
        organization_name=row["organization__name"],
        postal_address=row["organization__postal_address"],
        sequence_id=row["sequence_id"],
    )


def messages_send(*, message_ids: list[int]) -> SendReport:
    """Send the still-queued messages among `message_ids` over one connection, and record each
    outcome. Safe to call twice with the same ids: a message is claimed by one caller only."""
    with _commits_without_waiting_for_disk():
        return _messages_send(message_ids)


@contextmanager
def _commits_without_waiting_for_disk() -> Iterator[None]:
    """Each accepted message is committed on its own before the next is sent (so a killed worker
    repeats at most one). Waiting for each of those commits to be flushed to disk would double
    the database's cost per message. Without the wait, a crash of PostgreSQL itself (not a
    restart, not a killed worker) can lose its last fraction of a second of records, and those
    messages are sent again: a duplicate, never a loss."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        with suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


def _messages_send(message_ids: list[int]) -> SendReport:
    now = timezone.now()
    rows = _claim(message_ids, now)
    if not rows:
        return SendReport()

    checks = _Outcomes()
    hashes = {row["id"]: email_hash(row["contact__email"]) for row in rows}
    suppressed = set(
        Suppression.objects.filter(
            organization_id__in={row["organization_id"] for row in rows}, email_hash__in=set(hashes.values())
        ).values_list("organization_id", "email_hash")
    )
    sendable = []
    for row in rows:
        if row["sequence__status"] == Sequence.Status.PAUSED:
            checks.held.append(row["id"])
        elif row["sequence__status"] != Sequence.Status.ACTIVE or row["step__template_id"] is None:
            checks.cancelled.append((row["id"], f"sequence is {row['sequence__status']}"))
        elif row["contact__status"] != Contact.Status.ACTIVE:
            checks.cancelled.append((row["id"], f"contact is {row['contact__status']}"))
        elif (row["organization_id"], hashes[row["id"]]) in suppressed:
            checks.cancelled.append((row["id"], "address is suppressed"))
        else:
            sendable.append(row)
    # Pause, sunset and frequency caps (delivery/policies.py, which writes its deferrals).
    verdict = policies.sending_policies_apply(rows=sendable, now=now)
    sendable = verdict.sendable
    checks.cancelled += verdict.cancelled
    report = _record(checks, now)
    report.deferred += verdict.deferred
    for outcomes in _deliver(sendable, now):
        report.add(_record(outcomes, timezone.now()))
    return report


def _deliver(rows: list[dict[str, Any]], now: dt.datetime) -> Iterator[_Outcomes]:
    """Compose and send `rows`, each organization's through its own routes (delivery.routing),
    yielding outcomes as they come.

    Every accepted message is yielded at once, and messages_send records it before this
    generator goes on to the next: a worker killed mid-batch leaves at most the one message in
    hand accepted but unrecorded (the sweep releases it and it is sent again). A route that
    fails hands the messages it did not take to the next route within the batch. Stops taking
    new messages well before the task's time limit and the lease run out: what is left goes
    back to the queue untried, rather than being resent by whoever takes it over.
    """
    if not rows:
        return
    batch = _Batch(now, rows)
    by_organization: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_organization[row["organization_id"]].append(row)
    try:
        for organization_rows in by_organization.values():
            yield from batch.organization_send(organization_rows)
    except SoftTimeLimitExceeded:
        # The message in hand may or may not have been accepted: it keeps its lease and is
        # released by the sweep; the ones not yet tried go back.
        outcomes = batch.flush()
        in_hand = batch.in_hand["id"] if batch.in_hand is not None else None
        outcomes.deferred += [row["id"] for row in rows if row["id"] not in batch.settled and row["id"] != in_hand]
        yield outcomes
        raise
    outcomes = batch.flush()
    outcomes.deferred += [row["id"] for row in rows if row["id"] not in batch.settled]
    yield outcomes


class _RouteFull(Exception):
    """The route cannot take more of this batch now (an allowance is used up, or every
    connection is taken); `until`: when it can again, if known."""

    def __init__(self, reason: str, until: dt.datetime | None) -> None:
        super().__init__(reason)
        self.until = until


class _OutOfTime(Exception):
    pass


class _Batch:
    """One send batch on its way out: the outcomes not yet recorded and what each row became."""

    def __init__(self, now: dt.datetime, rows: list[dict[str, Any]]) -> None:
        self.rows_by_id = {row["id"]: row for row in rows}
        self.deadline = time.monotonic() + min(settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.SEND_LEASE_SECONDS) * 0.75
        self.skeletons: dict[tuple[int, int, int | None], Skeleton] = {}
        self.date_header = format_datetime(now)
        self.composed: dict[int, ComposedMessage | None] = {}
        self.outcomes = _Outcomes()
        self.settled: set[int] = set()  # rows with an outcome (recorded or about to be)
        self.in_hand: dict[str, Any] | None = None

    def flush(self) -> _Outcomes:
        outcomes, self.outcomes = self.outcomes, _Outcomes()
        return outcomes

    def organization_send(self, rows: list[dict[str, Any]]) -> Iterator[_Outcomes]:
        """Send one organization's rows through its first route that can take them, then the next."""
        plan = routing.RoutePlan.load(rows[0]["organization_id"])
        pending = deque(rows)
        # Rows a failed route refused (421, repeated rejections): an attempt, if no route takes them.
        refused_by: dict[int, str] = {}
        reasons: list[str] = []
        while pending:
            target = plan.next_target(timezone.now())
            if target is None:
                break
            try:
                yield from self._route_send(target, plan, pending, refused_by)
            except TransportUnavailable as error:
                row, self.in_hand = self.in_hand, None
                if row is not None and error.maybe_delivered:
                    # Handed over in full before the line broke: sending it elsewhere now could
                    # deliver it twice, so it waits for its retry as today.
                    self._settle(row)
                    self.outcomes.retry.append((row["id"], row["attempts"] + 1, str(error)[:1000]))
                elif row is not None:
                    pending.appendleft(row)
                    if not error.throttled:
                        refused_by[row["id"]] = str(error)[:1000]
                logger.warning("%s unavailable, %d messages left for the next: %s", target.name, len(pending), error)
                plan.failed(target, error, throttled=error.throttled, now=timezone.now())
                reasons.append(f"the route is unavailable: {error}")
            except _RouteFull as full:
                plan.drop(target, until=full.until)
                reasons.append(f"{target.name} cannot take more now: {full}")
            except _OutOfTime:
                return
        if not pending or time.monotonic() > self.deadline:
            return
        soonest = timezone.now() + dt.timedelta(seconds=1)
        left = _Outcomes(deferred_until=max(plan.retry_at, soonest) if plan.retry_at else None)
        for row in pending:
            self._settle(row)
            if row["id"] in refused_by:
                left.retry.append((row["id"], row["attempts"] + 1, refused_by[row["id"]]))
            else:
                left.deferred.append(row["id"])
        because = reasons[-1] if reasons else "every route is resting or its circuit is open"
        left.deferred_because = f"not tried, {because}"[:1000]
        logger.warning("%d messages go back to the queue: %s", len(left.deferred), because)
        yield left

    def _route_send(
        self, target: routing.Target, plan: routing.RoutePlan, pending: deque, refused_by: dict[int, str]
    ) -> Iterator[_Outcomes]:
        route_id = target.route.pk if target.route is not None else None
        rejections_in_a_row = 0
        with self._connection_slot(target), open_transport(target.config) as transport:
            while pending:
                if time.monotonic() > self.deadline:
                    raise _OutOfTime
                row = pending[0]
                composed = self._compose(row)
                if composed is None:
                    pending.popleft()
                    continue
                token = self._permit(target)
                self.in_hand = pending.popleft()
                try:
                    result = _send_one(transport, composed, row)
                finally:
                    if token is not None:
                        ratelimit.send_done(target.limits, token)
                self.in_hand = None
                if result.outcome is Outcome.THROTTLED:
                    pending.appendleft(row)
                    raise TransportUnavailable(result.response, throttled=True)
                plan.succeeded(target, timezone.now())
                self._settle(row)
                _classify(row, composed, result, self.outcomes, route_id)
                if result.outcome is Outcome.ACCEPTED:
                    yield self.flush()
                rejections_in_a_row = rejections_in_a_row + 1 if result.outcome is Outcome.REJECTED else 0
                if rejections_in_a_row >= REJECTIONS_BEFORE_ROUTE_DOWN:
                    # The route refuses everything (relay denied, account blocked): these are
                    # not the messages' fault, so they go on to the next route or are retried.
                    refused = self.outcomes.rejected[-REJECTIONS_BEFORE_ROUTE_DOWN:]
                    del self.outcomes.rejected[-REJECTIONS_BEFORE_ROUTE_DOWN:]
                    for message_id, text in reversed(refused):
                        self.settled.discard(message_id)
                        refused_by[message_id] = text
                        pending.appendleft(self.rows_by_id[message_id])
                    raise TransportUnavailable(f"{rejections_in_a_row} messages refused in a row: {result.response}")

    def _settle(self, row: dict[str, Any]) -> None:
        self.settled.add(row["id"])

    def _compose(self, row: dict[str, Any]) -> ComposedMessage | None:
        """Composed once per batch: a message that moves to the next route stays the same."""
        if row["id"] not in self.composed:
            self.composed[row["id"]] = _compose(row, self.skeletons, self.date_header, self.outcomes)
            if self.composed[row["id"]] is None:
                self.settled.add(row["id"])
        return self.composed[row["id"]]

    def _permit(self, target: routing.Target) -> str | None:
        """Wait for the route's per-second limit; _RouteFull when an allowance is used up."""
        limits = target.limits
        if limits is None or not limits.limits_sending:
            return None
        while True:
            try:
                decision = ratelimit.send_permit(limits)
            except ratelimit.LimiterUnavailable as error:
                raise _RouteFull(f"its rate limits cannot be checked: {error}", None) from error
            if decision.token is not None:
                return decision.token
            if decision.exhausted_until is not None:
                raise _RouteFull(f"its {decision.reason} is used up", decision.exhausted_until)
            if time.monotonic() + decision.wait > self.deadline:
                raise _OutOfTime
            time.sleep(min(decision.wait, 0.25) + 0.0005)

    @contextmanager
    def _connection_slot(self, target: routing.Target) -> Iterator[None]:
        limits = target.limits
        if limits is None or not limits.max_connections:
            yield
            return
        waiting_until = time.monotonic() + CONNECTION_SLOT_WAIT_SECONDS
        try:
            token = ratelimit.connection_acquire(limits, lease=settings.SEND_LEASE_SECONDS)
            while token is None and time.monotonic() < waiting_until:
                time.sleep(0.05)
                token = ratelimit.connection_acquire(limits, lease=settings.SEND_LEASE_SECONDS)
        except ratelimit.LimiterUnavailable as error:
            raise _RouteFull(f"its connections cannot be counted: {error}", None) from error
        if token is None:
            raise _RouteFull(
                f"all its {limits.max_connections} connections are in use",
                timezone.now() + dt.timedelta(seconds=CONNECTION_SLOT_WAIT_SECONDS),
            )
        try:
            yield
        finally:
            ratelimit.connection_release(limits, token)


def _compose(
    row: dict[str, Any], skeletons: dict[tuple[int, int, int | None], Skeleton], date_header: str, outcomes: _Outcomes
) -> ComposedMessage | None:
    key = (row["step_id"], row["sequence_id"], row["variant_id"])
    try:
        if key not in skeletons:
            skeletons[key] = _skeleton(row)
        return skeletons[key].compose(
            Recipient(
                message_id=row["id"],
                contact_id=row["contact_id"],
                email=row["contact__email"],
                first_name=row["contact__first_name"],
                last_name=row["contact__last_name"],
                properties=row["contact__properties"] or {},
                timezone=row["contact__timezone"],
            ),
            date_header=date_header,
        )
    except SoftTimeLimitExceeded:
        raise
    except RenderError as error:
        response = f"render failed: {error}"
    except Exception as error:  # one malformed message must not strand its batch
        logger.exception("message %s could not be composed", row["id"])
        response = f"compose failed: {error}"
    outcomes.failed.append((row["id"], Enrollment.ExitReason.RENDER_FAILED, response[:1000]))
    return None


def _send_one(transport: Any, composed: ComposedMessage, row: dict[str, Any]) -> SendResult:
    try:
        return transport.send(composed, organization_id=row["organization_id"])
    except (TransportUnavailable, SoftTimeLimitExceeded):
        raise
    except Exception as error:  # as above; the route itself still works
        logger.exception("message %s could not be handed to the route", row["id"])
        return SendResult(Outcome.TRANSIENT, f"send failed: {error}")


def _classify(
    row: dict[str, Any], composed: ComposedMessage, result: SendResult, outcomes: _Outcomes, route_id: int | None
) -> None:
    if result.outcome is Outcome.ACCEPTED:
        outcomes.sent.append(
            (
                row["id"],
                composed.subject[:998],
                composed.recipient,
                composed.message_id_header,
                json.dumps(composed.links),
                result.response[:1000],
                route_id,
                result.provider_message_id[:255],
            )
        )
    elif result.outcome is Outcome.PERMANENT:
        outcomes.bounced.append((row["id"], result.response[:1000]))
    elif result.outcome is Outcome.REJECTED:
        outcomes.rejected.append((row["id"], result.response[:1000]))
    else:
        outcomes.retry.append((row["id"], row["attempts"] + 1, result.response[:1000]))


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff with jitter: about 1, 2, 4, 8 ... minutes, at most 6 hours."""
    seconds = min(settings.SEND_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1), 6 * 3600)
    return dt.timedelta(seconds=seconds * random.uniform(0.9, 1.1))


def _update_sent(rows: list[tuple[int, str, str, str, str, str, int | None, str]], now: dt.datetime) -> None:
    """Record successful sends, one plain UPDATE each (they come one at a time, as accepted),
    with the analytics fact in the same transaction (the same round trip on PostgreSQL)."""
    table = connection.ops.quote_name(Message._meta.db_table)
    links = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    sql = (
        f"UPDATE {table} SET status = %s, sent_at = %s, lease_expires_at = NULL, attempts = attempts + 1, "
        f"subject = %s, recipient = %s, message_id_header = %s, links = {links}, response = %s, route_id = %s, "
        "provider_message_id = %s WHERE id = %s AND status = %s"
    )
    fact_sql = analytics_services.message_fact_sql()
    # On PostgreSQL both statements go as one query string, which the server runs as one
    # transaction; elsewhere they share an atomic block.
    together = connection.vendor == "postgresql"
    if together:
        sql = f"{sql}; {fact_sql}"
    with connection.cursor() as cursor, nullcontext() if together else transaction.atomic():
        for message_id, subject, recipient, message_id_header, links_json, response, route_id, provider_id in rows:
            cursor.execute(
                sql,
                [
                    Message.Status.SENT,
                    now,
                    subject,
                    recipient,
                    message_id_header,
                    links_json,
                    response,
                    route_id,
                    provider_id,
                    message_id,
                    Message.Status.SENDING,
                    *([message_id] if together else []),
                ],
            )
            if not together:
                cursor.execute(fact_sql, [message_id])


def _settle(mine: Any, message_id: int, **values: Any) -> None:
    """Give a message still held by this worker its final status, with its analytics fact."""
    with transaction.atomic():
        if mine.filter(id=message_id).update(**values):
            analytics_services.facts_add_for(kind="message", queryset=Message.objects.filter(id=message_id))


def _record(outcomes: _Outcomes, now: dt.datetime) -> SendReport:
    """Write outcomes. Only rows this worker still holds ("sending") are touched, and each kind
    commits on its own: a bounce that has to wait for locks never holds back the sent ones."""
    report = SendReport()
    if outcomes.sent:
        _update_sent(outcomes.sent, now)
        report.sent = len(outcomes.sent)
    if outcomes.only_sent:
        return report  # the common case, once per accepted message: nothing else to build queries for
    mine = Message.objects.filter(status=Message.Status.SENDING)
    if outcomes.held:
        with transaction.atomic():
            held = mine.filter(id__in=outcomes.held)
            # The sequence may have been resumed since the claim. Lock the sequences (resuming
            # locks them too) and hold only what is still paused; the rest is due at once.
            list(Sequence.objects.select_for_update(no_key=True).filter(id__in=held.values("sequence_id")).values("id"))
            held.filter(sequence__status=Sequence.Status.PAUSED).update(
                status=Message.Status.QUEUED, lease_expires_at=None, next_attempt_at=None
            )
            held.update(status=Message.Status.QUEUED, lease_expires_at=None, next_attempt_at=now)
        report.held = len(outcomes.held)
    if outcomes.deferred:
        # Not tried: no attempt is counted, so an outage never uses up a message's attempts.
        mine.filter(id__in=outcomes.deferred).update(
            status=Message.Status.QUEUED,
            lease_expires_at=None,
            next_attempt_at=outcomes.deferred_until or now + dt.timedelta(seconds=settings.SEND_RETRY_BASE_SECONDS),
            response=outcomes.deferred_because or "not tried: the batch ran out of time",
        )
        report.deferred = len(outcomes.deferred)
    failed = [(message_id, reason, response, F("attempts") + 1) for message_id, reason, response in outcomes.failed]
    for message_id, attempts, response in outcomes.retry:
        if attempts >= settings.SEND_MAX_ATTEMPTS:
            failed.append((message_id, Enrollment.ExitReason.SEND_FAILED, f"gave up: {response}", attempts))
            continue
        mine.filter(id=message_id).update(
            status=Message.Status.QUEUED,
            attempts=attempts,
            next_attempt_at=now + retry_delay(attempts),
            lease_expires_at=None,
            response=response,
        )
        report.retried += 1
    for message_id, response in outcomes.cancelled:
        _settle(
            mine,
            message_id,
            status=Message.Status.CANCELLED,
            lease_expires_at=None,
            next_attempt_at=None,
            response=response,
        )
        report.cancelled += 1
    for message_id, response in outcomes.rejected:
        # Refused for the message or the route (policy, relay, content), not for the address:
        # the contact stays mailable and the enrollment goes on.
        _settle(
            mine,
            message_id,
            status=Message.Status.FAILED,
            lease_expires_at=None,
            next_attempt_at=None,
            attempts=F("attempts") + 1,
            response=response,
        )
        report.failed += 1
    failed_enrollments: dict[str, list[int]] = defaultdict(list)
    for message_id, reason, response, attempts_made in failed:
        _settle(
            mine,
            message_id,
            status=Message.Status.FAILED,
            lease_expires_at=None,
            next_attempt_at=None,
            attempts=attempts_made,
            response=response,
        )
        failed_enrollments[reason].append(message_id)
        report.failed += 1
    for reason, message_ids in failed_enrollments.items():
        enrollment_ids = Message.objects.filter(id__in=message_ids).values_list("enrollment_id", flat=True)
        sequence_services.enrollments_fail(enrollment_ids=list(enrollment_ids), reason=reason)
    bounce_responses = dict(outcomes.bounced)
    for message in Message.objects.filter(id__in=list(bounce_responses)):
        response = bounce_responses[message.pk]
        with transaction.atomic():
            if mine.filter(id=message.pk).update(
                status=Message.Status.BOUNCED,
                lease_expires_at=None,
                next_attempt_at=None,
                attempts=F("attempts") + 1,
                response=response,
            ):
                analytics_services.facts_add(
                    organization_id=message.organization_id, kind="message", object_ids=[message.pk]
                )
                message_bounced(message=message, detail=response)
        report.bounced += 1
    # Temporary refusals that say the mailbox is full count towards the address's soft-bounce limit.
    messages_soft_bounced(replies=[(message_id, response) for message_id, _, response in outcomes.retry])
    messages_soft_bounced(replies=outcomes.rejected)
    return report


# Events --------------------------------------------------------------------------------------


def event_record(
    *,
    message: Message | None,
    contact: Contact,
    type: str,
    occurred_at: dt.datetime | None = None,
    ip: str | None = None,
    user_agent: str = "",
    url: str = "",
    is_machine: bool = False,
    machine_reason: str = "",
    detail: str = "",
    dedupe_key: str = "",
) -> Event:
    """Write an event, with its analytics fact, and publish it to live dashboards after commit.
    A `dedupe_key` (reported events) is unique per organization: a second event with the same
    key raises IntegrityError."""
    with transaction.atomic():
        event = Event.objects.create(
            organization_id=contact.organization_id,
            message=message,
            contact=contact,
            type=type,
            occurred_at=occurred_at or timezone.now(),
            ip=ip,
            user_agent=user_agent[:512],
            url=url,
            is_machine=is_machine,
            machine_reason=machine_reason,
            detail=detail,
            dedupe_key=dedupe_key,
        )
        analytics_services.facts_add(organization_id=event.organization_id, kind="event", object_ids=[event.pk])
        analytics_services.events_publish_after_commit([event])
    return event


def message_bounced(*, message: Message, detail: str) -> None:
    """A permanent refusal of the address while sending, applied as every delivery report is
    (deliverability.reports): a hard bounce makes the contact unmailable and ends its
    enrollments; one the classifier calls soft counts towards the address's limit."""
    # Imported when called: deliverability builds on delivery, and the import graph stays one-way.
    from deliverability import reports

    reports.smtp_refusal_apply(message=message, response=detail)


def messages_soft_bounced(*, replies: list[tuple[int, str]]) -> None:
    """Count refusals (message id, reply) that say the mailbox is full as soft bounces."""
    if replies:
        from deliverability import reports

        reports.smtp_mailbox_states_apply(replies=replies)


# Tracking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedRequest:
    ip: str | None
    user_agent: str
    method: str


def open_record(*, token: str, request: TrackedRequest) -> bool:
    """Record an open for a pixel token (analytics.intake: buffered, or written at once);
    False when the token is not genuine or, written at once, its message is gone."""
    from analytics import intake

    ids = signing.unsign("open", token)
    if not ids:
        return False
    hit = intake.Hit.new(
        kind=Event.Type.OPEN, message_id=ids[0], ip=request.ip, user_agent=request.user_agent, method=request.method
    )
    if intake.buffered():
        intake.hit_record(hit)
        return True
    return intake.hits_apply([hit]) > 0


def click_record(*, token: str, request: TrackedRequest, target: str | None = None) -> str | None:
    """Record a click and return the URL it leads to, or None when the token is not genuine.

    A token signed with its `target` (every message since targets travel in the link) needs
    no database read; an older token leads to the URL stored on its message, if still there."""
    from analytics import intake

    if target is not None:
        ids = signing.unsign("click-to", token, covering=target.encode())
        if not ids:
            return None
        message_id, _ = ids
        url = target
    else:
        ids = signing.unsign("click", token)
        if not ids:
            return None
        message_id, link_index = ids
        links = Message.objects.filter(pk=message_id).values_list("links", flat=True).first()
        if links is None or link_index >= len(links):
            return None
        url = links[link_index]
    intake.hit_record(
        intake.Hit.new(
            kind=Event.Type.CLICK,
            message_id=message_id,
            ip=request.ip,
            user_agent=request.user_agent,
            method=request.method,
            url=url,
        )
    )
    return url


@dataclass(frozen=True)
class UnsubscribeTarget:
    contact: Contact
    message: Message | None


def unsubscribe_target(*, token: str) -> UnsubscribeTarget | None:
    ids = signing.unsign("unsubscribe", token)
    if not ids:
        return None
    message_id, contact_id = ids
    contact = Contact.objects.select_related("organization").filter(pk=contact_id).first()
    if contact is None:
        return None
    # The message may be gone (retention); the contact is what the link unsubscribes.
    message = Message.objects.filter(pk=message_id, contact_id=contact_id).first()
    return UnsubscribeTarget(contact=contact, message=message)


@transaction.atomic
def unsubscribe_by_link(*, target: UnsubscribeTarget, request: TrackedRequest, one_click: bool) -> bool:
    """Unsubscribe through a link in a message; True when the contact was mailable until now."""
    source = "one-click (RFC 8058)" if one_click else "unsubscribe page"
    changed = subscriber_services.contact_unsubscribe(
        contact=target.contact, source=source, ip=request.ip, user_agent=request.user_agent
    )
    if changed:
        event_record(
            message=target.message,
            contact=target.contact,
            type=Event.Type.UNSUBSCRIBE,
            ip=request.ip,
            user_agent=request.user_agent,
            detail=source,
        )
    return changed


def template_send_test(
    *, template: Any, organization: Any, to: str, contact: Any, sender: Any
) -> tuple[ComposedMessage, SendResult]:
    """Send one test email of `template` to `to` now, through the configured route.

    Rendered for `contact` (a delivery.selectors.SampleContact) as real sends are, with the
    subject prefixed "[Test] ", never tracked, and recorded nowhere: no Message, no event, so a
    test reaches no contact's history or the analytics. A suppressed address is refused
    (ValidationError on "to"). Raises RenderError when the template fails and
    TransportUnavailable when the route is down; the server's refusal comes back as the result.
    """
    # Imported here because this module's imports are not this function's to change.
    from django.core.exceptions import ValidationError

    from delivery.selectors import template_compose
    from subscribers.addresses import normalize_email

    address = normalize_email(to)
    if Suppression.objects.filter(organization_id=organization.pk, email_hash=email_hash(address)).exists():
        raise ValidationError({"to": "This address is suppressed (it unsubscribed, bounced or complained)."})
    composed = template_compose(
        template=template,
        organization=organization,
        contact=contact,
        sender=sender,
        to=address,
        subject_prefix="[Test] ",
    )
    plan = routing.RoutePlan.load(organization.pk)
    target = plan.next_target(timezone.now())
    if target is None:
        raise TransportUnavailable("no route of this organization can take mail now (circuits open or resting)")
    try:
        with open_transport(target.config) as transport:
            try:
                result = transport.send(composed, organization_id=organization.pk)
            except TransportUnavailable:
                raise
            except Exception as error:  # a provider's own error type: report it, as a send would
                logger.exception("test email of template %s could not be handed to the route", template.pk)
                result = SendResult(Outcome.TRANSIENT, f"send failed: {error}")
    except TransportUnavailable as error:
        plan.failed(target, error, throttled=error.throttled, now=timezone.now())
        raise
    if result.outcome is not Outcome.THROTTLED:
        plan.succeeded(target, timezone.now())
    return composed, result
