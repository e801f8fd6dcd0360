"""Sending policies, applied to a claimed batch just before its messages go out: a contact's
pause, the sunset policy and the organization's frequency caps.

messages_send first drops what may not be sent at all (paused sequence, contact no longer
mailable, suppressed address) and hands the rest to `sending_policies_apply`, which answers
which messages go out now, which are cancelled, and defers the others itself.

Definitions:

- A *marketing* message is one of a sequence that is not `is_transactional`. Transactional
  messages (receipts, password resets) are exempt from all three policies and never count
  towards a cap.
- A contact's *day* is its local calendar day: its own time zone, else its organization's
  (sequences.schedule.zone), midnight to midnight.
- *Pause.* `Contact.paused_until` in the future (chosen on the preference page): marketing
  messages are deferred until then, not dropped.
- *Sunset.* With `Organization.sunset_days` = N, a contact is sunset when it has been mailed
  for at least N days (a marketing message of its was sent N or more days ago: a new contact
  gets its chance) and has had no human open or click (`Event.is_machine` false) in the last N
  days. A pause that ended less than N days ago counts as engagement: a contact who asked for
  a break is not sunset for taking it. A sunset contact's marketing message is cancelled
  ("sunset: ...") and its enrollment ends with exit reason `sunset` (exited; one that had
  already completed past this last email is marked exited for sunset too). Its other
  enrollments end the same way when their next email comes up, and new enrollments meet the
  same check. The contact stays active and suppressed nowhere: a human open or click of an
  earlier email (or a pause) brings marketing mail back.
- *Frequency caps.* At most `frequency_cap_daily` marketing messages per contact per day and
  at most `frequency_cap_weekly` in any rolling 7 days (sent_at within the last 7 × 24 hours).
  Counted: the contact's messages with status sent in the window, plus those this batch has
  already let through (they go out now). A message over a cap is deferred: back to queued, no
  attempt counted, `next_attempt_at` = when the cap frees (the start of the contact's next
  day; or when the oldest counted send leaves the 7-day window, so that one fewer than the cap
  remains; the later of the two when both bind), moved into the sequence's send window, and
  its response says why. It is checked again then. Among one contact's messages in a batch,
  the oldest (lowest id: written first) goes first. Across batches the first batch decided
  wins: a deferred message that comes due at the very moment the engine writes a newer one for
  the same contact may lose its slot to it (it is deferred again, not lost).
- *Concurrency.* Another worker may be sending to the same contact right now (its rows are
  `sending`). Those count too, as if sent now; when only they make a message exceed the cap,
  it is deferred briefly (SEND_RETRY_BASE_SECONDS) and checked again, rather than to the next
  day. So two batches never together exceed a cap.

Cost per batch, whatever its size: one query for the batch's policy terms (sequence,
contact pause, organization); when a cap or sunset applies, one for the organizations'
transactional sequence ids, one for recent and in-flight sends of the capped contacts (a
BitmapOr of the partial indexes `message_contact_sent_idx` and `message_lease_idx`), and one
per distinct `sunset_days` for mailed-long-enough and engagement (`message_contact_sent_idx`,
`event_contact_time_idx`). Deferrals are written one UPDATE per distinct moment.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from delivery.models import Event, Message
from sequences import services as sequence_services
from sequences.models import Enrollment, Sequence
from sequences.schedule import UTC, window_opening, zone
from subscribers.models import Contact

WEEK = dt.timedelta(days=7)


@dataclass
class PolicyVerdict:
    """What the policies made of a batch: the rows that go out now, in their order; the
    messages to cancel (id, response); how many were deferred (already written back)."""

    sendable: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[tuple[int, str]] = field(default_factory=list)
    deferred: int = 0


@dataclass(frozen=True)
class _Terms:
    """What the policies need to know about one message beyond its claimed row."""

    is_transactional: bool
    send_days: frozenset[int]
    send_start_hour: int
    send_end_hour: int
    paused_until: dt.datetime | None
    cap_daily: int | None
    cap_weekly: int | None
    sunset_days: int | None
    zone: zoneinfo.ZoneInfo

    @property
    def uses_history(self) -> bool:
        """Whether deciding needs the contact's past sends (caps, sunset)."""
        return bool(self.cap_daily or self.cap_weekly or self.sunset_days)

    def into_window(self, moment: dt.datetime) -> dt.datetime:
        return window_opening(moment, self.zone, self.send_days, self.send_start_hour, self.send_end_hour)


def _terms(rows: list[dict[str, Any]]) -> dict[int, _Terms]:
    terms = {}
    for values in (
        Message.objects.filter(id__in=[row["id"] for row in rows])
        .order_by()
        .values(
            "id",
            "contact__timezone",
            "contact__paused_until",
            "sequence__is_transactional",
            "sequence__send_days",
            "sequence__send_start_hour",
            "sequence__send_end_hour",
            "organization__timezone",
            "organization__frequency_cap_daily",
            "organization__frequency_cap_weekly",
            "organization__sunset_days",
        )
    ):
        terms[values["id"]] = _Terms(
            is_transactional=values["sequence__is_transactional"],
            send_days=frozenset(values["sequence__send_days"] or range(7)),
            send_start_hour=values["sequence__send_start_hour"],
            send_end_hour=values["sequence__send_end_hour"],
            paused_until=values["contact__paused_until"],
            cap_daily=values["organization__frequency_cap_daily"],
            cap_weekly=values["organization__frequency_cap_weekly"],
            sunset_days=values["organization__sunset_days"],
            zone=zone(values["contact__timezone"] or values["organization__timezone"]),
        )
    return terms


def _may_be_held_back(row: dict[str, Any], now: dt.datetime) -> bool:
    """Whether any policy could apply to the claimed row (its organization has a cap or a sunset,
    or its contact is paused): most batches have none, and skip the policies' queries."""
    paused_until = row.get("contact__paused_until")
    return bool(
        (paused_until is not None and paused_until > now)
        or row.get("organization__frequency_cap_daily")
        or row.get("organization__frequency_cap_weekly")
        or row.get("organization__sunset_days")
        or "contact__paused_until" not in row  # a caller without these columns: decide fully
    )


def sending_policies_apply(*, rows: list[dict[str, Any]], now: dt.datetime) -> PolicyVerdict:
    """Apply pause, sunset and frequency caps to claimed rows (status `sending`, this worker's).

    Writes the deferrals and the sunset exits of enrollments; the caller cancels
    `verdict.cancelled` and sends `verdict.sendable`. Rows are decided oldest first (by id)
    and `sendable` keeps that order; a row whose message is gone is passed through untouched.
    """
    verdict = PolicyVerdict()
    if not rows:
        return verdict
    if not any(_may_be_held_back(row, now) for row in rows):
        verdict.sendable = list(rows)
        return verdict
    terms = _terms(rows)
    marketing = [row for row in rows if row["id"] in terms and not terms[row["id"]].is_transactional]
    transactional = _transactional_sequences(marketing, terms)
    sunset = _sunset_contacts(marketing, terms, transactional, now)
    capped_contacts = {
        row["contact_id"]
        for row in marketing
        if row["contact_id"] not in sunset and (terms[row["id"]].cap_daily or terms[row["id"]].cap_weekly)
    }
    sends, in_flight = _recent_sends(capped_contacts, transactional, exclude={row["id"] for row in rows}, now=now)

    deferrals: list[tuple[int, dt.datetime, str]] = []
    sunset_enrollments: list[int] = []
    for row in sorted(rows, key=lambda row: row["id"]):
        message_terms = terms.get(row["id"])
        if message_terms is None or message_terms.is_transactional:
            verdict.sendable.append(row)
            continue
        contact_id = row["contact_id"]
        if contact_id in sunset:
            days = message_terms.sunset_days
            verdict.cancelled.append((row["id"], f"sunset: no human open or click in {days} days"))
            sunset_enrollments.append(row["enrollment_id"])
            continue
        if message_terms.paused_until and message_terms.paused_until > now:
            until = message_terms.into_window(message_terms.paused_until)
            deferrals.append((row["id"], until, f"deferred until {_moment(until)}: the contact paused mail"))
            continue
        if contact_id in capped_contacts:
            deferral = _cap_deferral(message_terms, sends[contact_id], in_flight[contact_id], now)
            if deferral is not None:
                deferrals.append((row["id"], *deferral))
                continue
            sends[contact_id].append(now)
        verdict.sendable.append(row)
    verdict.deferred = _defer(deferrals)
    if sunset_enrollments:
        _end_enrollments_for_sunset(sunset_enrollments)
    return verdict


def _moment(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# Frequency caps --------------------------------------------------------------------------------


def _recent_sends(
    contact_ids: set[int], transactional: set[int], *, exclude: set[int], now: dt.datetime
) -> tuple[defaultdict[int, list[dt.datetime]], defaultdict[int, int]]:
    """Per contact: when its marketing messages of the last 7 days were sent, and how many other
    workers are sending to it right now."""
    sends: defaultdict[int, list[dt.datetime]] = defaultdict(list)
    in_flight: defaultdict[int, int] = defaultdict(int)
    if not contact_ids:
        return sends, in_flight
    # No join with sequences and nothing but the contact and status to filter on in SQL: the
    # plan stays a BitmapOr of the two partial indexes, however big a sequence grows.
    recent = (
        Message.objects.filter(contact_id__in=contact_ids)
        .filter(Q(status=Message.Status.SENT, sent_at__gt=now - WEEK) | Q(status=Message.Status.SENDING))
        .order_by()
        .values_list("id", "sequence_id", "contact_id", "status", "sent_at")
    )
    for message_id, sequence_id, contact_id, status, sent_at in recent:
        if message_id in exclude or sequence_id in transactional:
            continue
        if status == Message.Status.SENT:
            sends[contact_id].append(sent_at)
        else:
            in_flight[contact_id] += 1
    return sends, in_flight


def _cap_deferral(
    terms: _Terms, sent: list[dt.datetime], in_flight: int, now: dt.datetime
) -> tuple[dt.datetime, str] | None:
    """None when one more message fits both caps; else until when to defer it, and why."""
    reasons = []
    frees_at = now
    local = now.astimezone(terms.zone)
    day_start = dt.datetime.combine(local.date(), dt.time(0), tzinfo=terms.zone)
    today = sum(1 for moment in sent if moment >= day_start)
    this_week = sorted(moment for moment in sent if moment > now - WEEK)
    if terms.cap_daily and today >= terms.cap_daily:
        next_day = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=terms.zone)
        frees_at = max(frees_at, next_day.astimezone(UTC))
        reasons.append(f"daily cap of {terms.cap_daily} reached")
    if terms.cap_weekly and len(this_week) >= terms.cap_weekly:
        # Once this send leaves the window, one fewer than the cap remains.
        frees_at = max(frees_at, this_week[len(this_week) - terms.cap_weekly] + WEEK)
        reasons.append(f"weekly cap of {terms.cap_weekly} reached")
    if reasons:
        until = terms.into_window(frees_at)
        return until, f"deferred until {_moment(until)}: {' and '.join(reasons)}"
    if in_flight and (
        (terms.cap_daily and today + in_flight >= terms.cap_daily)
        or (terms.cap_weekly and len(this_week) + in_flight >= terms.cap_weekly)
    ):
        until = now + dt.timedelta(seconds=settings.SEND_RETRY_BASE_SECONDS)
        return until, f"deferred until {_moment(until)}: another batch is sending to this contact, cap checked again"
    return None


def _defer(deferrals: list[tuple[int, dt.datetime, str]]) -> int:
    """Put deferred messages back in the queue, untried: no attempt counted."""
    groups: defaultdict[tuple[dt.datetime, str], list[int]] = defaultdict(list)
    for message_id, until, response in deferrals:
        groups[(until, response)].append(message_id)
    deferred = 0
    for (until, response), message_ids in groups.items():
        deferred += Message.objects.filter(id__in=message_ids, status=Message.Status.SENDING).update(
            status=Message.Status.QUEUED, lease_expires_at=None, next_attempt_at=until, response=response
        )
    return deferred


# Sunset ----------------------------------------------------------------------------------------


def _transactional_sequences(marketing: list[dict[str, Any]], terms: dict[int, _Terms]) -> set[int]:
    """Ids of the transactional sequences of the rows' organizations, when a policy needs them:
    their sends neither count towards a cap nor make a contact old enough to be sunset."""
    organization_ids = {row["organization_id"] for row in marketing if terms[row["id"]].uses_history}
    if not organization_ids:
        return set()
    transactional = Sequence.objects.filter(organization_id__in=organization_ids, is_transactional=True)
    return set(transactional.values_list("id", flat=True))


def _sunset_contacts(
    marketing: list[dict[str, Any]], terms: dict[int, _Terms], transactional: set[int], now: dt.datetime
) -> set[int]:
    """The contacts, among those of `marketing` rows, whom their organization's sunset policy stops."""
    by_days: defaultdict[int, set[int]] = defaultdict(set)
    for row in marketing:
        message_terms = terms[row["id"]]
        days = message_terms.sunset_days
        if not days:
            continue
        cutoff = now - dt.timedelta(days=days)
        if message_terms.paused_until and message_terms.paused_until > cutoff:
            continue  # paused recently, or still: not sunset for taking a break
        by_days[days].add(row["contact_id"])
    sunset: set[int] = set()
    for days, contact_ids in by_days.items():
        cutoff = now - dt.timedelta(days=days)
        mailed_long_enough = Message.objects.filter(
            contact_id=OuterRef("pk"), status=Message.Status.SENT, sent_at__lte=cutoff
        ).exclude(sequence_id__in=transactional)
        engaged = Event.objects.filter(
            contact_id=OuterRef("pk"),
            type__in=[Event.Type.OPEN, Event.Type.CLICK],
            is_machine=False,
            occurred_at__gt=cutoff,
        )
        sunset.update(
            Contact.objects.filter(id__in=contact_ids)
            .filter(Exists(mailed_long_enough))
            .exclude(Exists(engaged))
            .order_by()
            .values_list("id", flat=True)
        )
    return sunset


def _end_enrollments_for_sunset(enrollment_ids: list[int]) -> None:
    # The engine moves past an email step as it writes the message, so the enrollment of a
    # sequence's last email has completed already: that email did not go out, say why.
    Enrollment.objects.filter(id__in=enrollment_ids, status=Enrollment.Status.COMPLETED, exit_reason="").update(
        status=Enrollment.Status.EXITED, exit_reason=Enrollment.ExitReason.SUNSET
    )
    for enrollment in Enrollment.objects.filter(id__in=enrollment_ids, status=Enrollment.Status.ACTIVE).only("id"):
        sequence_services.enrollment_exit(enrollment=enrollment, reason=Enrollment.ExitReason.SUNSET)
