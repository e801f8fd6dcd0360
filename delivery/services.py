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
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from delivery import signing
from delivery.composer import ComposedMessage, Recipient, Skeleton
from delivery.machines import machine_reason
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
        Message.objects.filter(id__in=[message_id for message_id, _ in given_up]).update(
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

# Outcomes are recorded as a batch goes, so a worker that dies loses (and later resends) at
# most this many messages' worth of news.
RECORD_EVERY = 50
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
    sent: list[tuple[int, str, str, str, str, str]] = field(default_factory=list)
    retry: list[tuple[int, int, str]] = field(default_factory=list)  # id, attempts made, response
    deferred: list[int] = field(default_factory=list)  # never tried: the route was down or time ran out
    deferred_because: str = ""
    bounced: list[tuple[int, str]] = field(default_factory=list)  # id, response
    rejected: list[tuple[int, str]] = field(default_factory=list)  # id, response: refused, not a bounce
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # id, enrollment exit reason, response
    cancelled: list[tuple[int, str]] = field(default_factory=list)  # id, response
    held: list[int] = field(default_factory=list)


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
)


def _claim(message_ids: list[int], now: dt.datetime) -> list[dict[str, Any]]:
    """Take the still-queued messages among `message_ids` for this worker."""
    lease = now + dt.timedelta(seconds=settings.SEND_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Message._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET status = %s, lease_expires_at = %s WHERE id IN (SELECT id FROM {table} "
                "WHERE id = ANY(%s) AND status = %s FOR UPDATE SKIP LOCKED) RETURNING id",
                [Message.Status.SENDING, lease, list(message_ids), Message.Status.QUEUED],
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
    return Skeleton(
        subject=row["step__template__subject"],
        html_body=row["step__template__html_body"],
        text_body=row["step__template__text_body"],
        from_name=row["sequence__from_name"],
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
    report = _record(checks, now)
    for outcomes in _deliver(sendable, now):
        report.add(_record(outcomes, timezone.now()))
    return report


def _deliver(rows: list[dict[str, Any]], now: dt.datetime) -> Iterator[_Outcomes]:
    """Compose and send `rows`, yielding their outcomes every RECORD_EVERY messages.

    Stops taking new messages well before the task's time limit and the lease run out: what is
    left goes back to the queue untried, rather than being resent by whoever takes it over.
    """
    if not rows:
        return
    deadline = time.monotonic() + min(settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.SEND_LEASE_SECONDS) * 0.75
    skeletons: dict[tuple[int, int], Skeleton] = {}
    date_header = format_datetime(now)
    outcomes = _Outcomes()
    untried = 0  # index of the first row without an outcome
    rejections_in_a_row = 0
    try:
        with open_transport() as transport:
            for index, row in enumerate(rows):
                if time.monotonic() > deadline:
                    break
                composed = _compose(row, skeletons, date_header, outcomes)
                if composed is not None:
                    try:
                        result = _send_one(transport, composed, row)
                    except TransportUnavailable as error:
                        outcomes.retry.append((row["id"], row["attempts"] + 1, str(error)[:1000]))
                        untried = index + 1
                        raise
                    _classify(row, composed, result, outcomes)
                    rejections_in_a_row = rejections_in_a_row + 1 if result.outcome is Outcome.REJECTED else 0
                    if rejections_in_a_row >= REJECTIONS_BEFORE_ROUTE_DOWN:
                        refused = outcomes.rejected[-REJECTIONS_BEFORE_ROUTE_DOWN:]
                        del outcomes.rejected[-REJECTIONS_BEFORE_ROUTE_DOWN:]
                        attempts = {row["id"]: row["attempts"] for row in rows[: index + 1]}
                        outcomes.retry += [(message_id, attempts[message_id] + 1, text) for message_id, text in refused]
                        untried = index + 1
                        raise TransportUnavailable(
                            f"{rejections_in_a_row} messages refused in a row: {result.response}"
                        )
                untried = index + 1
                if untried % RECORD_EVERY == 0:
                    yield outcomes
                    outcomes = _Outcomes()
    except TransportUnavailable as error:
        logger.warning("route unavailable, %d messages go back to the queue: %s", len(rows) - untried, error)
        outcomes.deferred_because = f"not tried, the route is unavailable: {error}"[:1000]
    except SoftTimeLimitExceeded:
        # The message in hand may or may not have been accepted: it keeps its lease and is
        # released by the sweep; the ones after it go back untried.
        outcomes.deferred += [row["id"] for row in rows[untried + 1 :]]
        yield outcomes
        raise
    outcomes.deferred += [row["id"] for row in rows[untried:]]
    yield outcomes


def _compose(
    row: dict[str, Any], skeletons: dict[tuple[int, int], Skeleton], date_header: str, outcomes: _Outcomes
) -> ComposedMessage | None:
    key = (row["step_id"], row["sequence_id"])
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


def _classify(row: dict[str, Any], composed: ComposedMessage, result: SendResult, outcomes: _Outcomes) -> None:
    if result.outcome is Outcome.ACCEPTED:
        outcomes.sent.append(
            (
                row["id"],
                composed.subject[:998],
                composed.recipient,
                composed.message_id_header,
                json.dumps(composed.links),
                result.response[:1000],
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


def _update_sent(rows: list[tuple[int, str, str, str, str, str]], now: dt.datetime) -> None:
    """Record successful sends with one statement (UPDATE ... FROM VALUES), whatever the count."""
    table = connection.ops.quote_name(Message._meta.db_table)
    links = "v.column5::jsonb" if connection.vendor == "postgresql" else "v.column5"
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
        sql = (
            f"UPDATE {table} SET status = %s, sent_at = %s, lease_expires_at = NULL, attempts = attempts + 1, "
            f"subject = v.column2, recipient = v.column3, message_id_header = v.column4, links = {links}, "
            f"response = v.column6 FROM (VALUES {placeholders}) AS v WHERE {table}.id = v.column1 "
            f"AND {table}.status = %s"
        )
        params: list[Any] = [Message.Status.SENT, now]
        for row in chunk:
            params.extend(row)
        params.append(Message.Status.SENDING)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _record(outcomes: _Outcomes, now: dt.datetime) -> SendReport:
    """Write outcomes. Only rows this worker still holds ("sending") are touched, and each kind
    commits on its own: a bounce that has to wait for locks never holds back the sent ones."""
    report = SendReport()
    mine = Message.objects.filter(status=Message.Status.SENDING)
    if outcomes.sent:
        _update_sent(outcomes.sent, now)
        report.sent = len(outcomes.sent)
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
            next_attempt_at=now + dt.timedelta(seconds=settings.SEND_RETRY_BASE_SECONDS),
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
        mine.filter(id=message_id).update(
            status=Message.Status.CANCELLED, lease_expires_at=None, next_attempt_at=None, response=response
        )
        report.cancelled += 1
    for message_id, response in outcomes.rejected:
        # Refused for the message or the route (policy, relay, content), not for the address:
        # the contact stays mailable and the enrollment goes on.
        mine.filter(id=message_id).update(
            status=Message.Status.FAILED,
            lease_expires_at=None,
            next_attempt_at=None,
            attempts=F("attempts") + 1,
            response=response,
        )
        report.failed += 1
    failed_enrollments: dict[str, list[int]] = defaultdict(list)
    for message_id, reason, response, attempts_made in failed:
        mine.filter(id=message_id).update(
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
                message_bounced(message=message, detail=response)
        report.bounced += 1
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
) -> Event:
    return Event.objects.create(
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
    )


@transaction.atomic
def message_bounced(*, message: Message, detail: str) -> None:
    """A permanent delivery failure: the contact becomes unmailable and leaves every sequence."""
    contact = Contact.objects.get(pk=message.contact_id)
    subscriber_services.contact_mark_bounced(contact=contact, detail=detail)
    event_record(message=message, contact=contact, type=Event.Type.BOUNCE, detail=detail)


# Tracking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedRequest:
    ip: str | None
    user_agent: str
    method: str


def _tracking_event(message: Message, event_type: str, request: TrackedRequest, url: str = "") -> Event:
    now = timezone.now()
    reason = machine_reason(
        user_agent=request.user_agent, ip=request.ip, sent_at=message.sent_at, occurred_at=now, method=request.method
    )
    return event_record(
        message=message,
        contact=message.contact,
        type=event_type,
        occurred_at=now,
        ip=request.ip,
        user_agent=request.user_agent,
        url=url,
        is_machine=bool(reason),
        machine_reason=reason,
    )


def open_record(*, token: str, request: TrackedRequest) -> bool:
    """Record an open for a pixel token; False when the token is not genuine."""
    ids = signing.unsign("open", token)
    message = Message.objects.select_related("contact").filter(pk=ids[0]).first() if ids else None
    if message is None:
        return False
    _tracking_event(message, Event.Type.OPEN, request)
    return True


def click_record(*, token: str, request: TrackedRequest) -> str | None:
    """Record a click and return the stored URL it leads to, or None when the token is not genuine."""
    ids = signing.unsign("click", token)
    if not ids:
        return None
    message_id, link_index = ids
    message = Message.objects.select_related("contact").filter(pk=message_id).first()
    if message is None or link_index >= len(message.links):
        return None
    url = message.links[link_index]
    _tracking_event(message, Event.Type.CLICK, request, url=url)
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
    changed = subscriber_services.contact_unsubscribe(contact=target.contact, source=source)
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
    with open_transport() as transport:
        try:
            result = transport.send(composed, organization_id=organization.pk)
        except TransportUnavailable:
            raise
        except Exception as error:  # a provider's own error type: report it, as a send would
            logger.exception("test email of template %s could not be handed to the route", template.pk)
            result = SendResult(Outcome.TRANSIENT, f"send failed: {error}")
    return composed, result
