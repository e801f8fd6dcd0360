"""The sequence engine: claim due enrollments, advance them through their steps, write messages.

A tick claims due enrollments in batches with SELECT ... FOR UPDATE SKIP LOCKED, so any number
of workers can tick at once and each enrollment is advanced by exactly one of them. Within a
batch, every enrollment runs through its steps until it has to wait (a delay, a wait-until, a
closed send window) or ends; an email step writes a Message row and moves on. The batch's
writes are grouped: one bulk insert of messages and one UPDATE per distinct outcome, not one
statement per row. Messages are handed to send tasks after the transaction commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, Exists, OuterRef, Value, When
from django.utils import timezone

from delivery import services as delivery_services
from delivery.models import Event, Message
from experiments import services as experiment_services
from sequences.conditions import property_matches
from sequences.models import Enrollment, Sequence, Step
from sequences.schedule import next_time_of_day, window_opening, zone
from sequences.services import enrollments_goal_facts, events_since_enrollment, goal_reached
from subscribers.models import Contact, ContactEvent

logger = logging.getLogger(__name__)

Kind = Step.Kind
ACTIVE = Enrollment.Status.ACTIVE
# An enrollment that cannot be advanced (a step that fails, a loop left by reordering steps)
# waits this long before it is tried again, and the rest of its batch goes on meanwhile.
QUARANTINE = dt.timedelta(hours=1)


@dataclass
class TickReport:
    claimed: int = 0
    advanced_steps: int = 0
    messages_created: int = 0
    finished: int = 0
    parked: int = 0
    messages_dispatched: int = 0
    more_due: bool = False

    def add(self, other: TickReport) -> None:
        self.claimed += other.claimed
        self.advanced_steps += other.advanced_steps
        self.messages_created += other.messages_created
        self.finished += other.finished
        self.parked += other.parked
        self.messages_dispatched += other.messages_dispatched
        self.more_due = self.more_due or other.more_due


@dataclass
class _Row:
    """One claimed enrollment while the engine works on it."""

    enrollment_id: int
    organization_id: int
    sequence_id: int
    contact_id: int
    step_id: int | None


@dataclass(frozen=True)
class _Outcome:
    """Where an enrollment ends up after this batch; rows with equal outcomes share one UPDATE."""

    step_id: int | None
    next_run_at: dt.datetime | None
    status: str = ACTIVE
    exit_reason: str = ""
    parked: bool = False


@dataclass
class _SequencePlan:
    """A sequence's settings and steps, loaded once per batch."""

    id: int
    status: str
    goal: dict[str, Any] | None
    send_days: frozenset[int]
    send_start_hour: int
    send_end_hour: int
    default_timezone: str
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)
    following: dict[int, int | None] = field(default_factory=dict)
    first_step_id: int | None = None


def _load_plans(sequence_ids: set[int]) -> dict[int, _SequencePlan]:
    plans = {
        row["id"]: _SequencePlan(
            id=row["id"],
            status=row["status"],
            goal=row["goal"],
            send_days=frozenset(row["send_days"] or range(7)),
            send_start_hour=row["send_start_hour"],
            send_end_hour=row["send_end_hour"],
            default_timezone=row["organization__timezone"],
        )
        for row in Sequence.objects.filter(id__in=sequence_ids).values(
            "id", "status", "goal", "send_days", "send_start_hour", "send_end_hour", "organization__timezone"
        )
    }
    previous: dict[int, int] = {}
    for step in (
        Step.objects.filter(sequence_id__in=sequence_ids)
        .order_by("sequence_id", "position")
        .values(
            "id",
            "sequence_id",
            "kind",
            "delay",
            "wait_until_time",
            "wait_until_days",
            "condition",
            "yes_step_id",
            "no_step_id",
        )
    ):
        plan = plans[step["sequence_id"]]
        plan.steps[step["id"]] = step
        plan.following[step["id"]] = None
        if step["sequence_id"] in previous:
            plan.following[previous[step["sequence_id"]]] = step["id"]
        else:
            plan.first_step_id = step["id"]
        previous[step["sequence_id"]] = step["id"]
    return plans


class _Batch:
    def __init__(self, rows: list[_Row], now: dt.datetime) -> None:
        self.rows = rows
        self.now = now
        self.plans = _load_plans({row.sequence_id for row in rows})
        self.contacts: dict[int, tuple[str, str, dict[str, Any]]] = {}
        self.outcomes: dict[int, _Outcome] = {}
        self.messages: list[delivery_services.NewMessage] = []
        # (split step id, variant id) -> enrollments whose message carries that variant
        self.variants: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.advanced_steps = 0

    # Contact data is loaded only for the rows whose steps need it, once per batch.
    def _load_contacts(self, rows: list[_Row]) -> None:
        missing = [row.contact_id for row in rows if row.contact_id not in self.contacts]
        if missing:
            for contact_id, status, timezone_name, properties in Contact.objects.filter(id__in=missing).values_list(
                "id", "status", "timezone", "properties"
            ):
                self.contacts[contact_id] = (status, timezone_name, properties or {})

    def _zone_of(self, row: _Row) -> Any:
        _status, timezone_name, _properties = self.contacts[row.contact_id]
        return zone(timezone_name or self.plans[row.sequence_id].default_timezone)

    def _finish(self, row: _Row, status: str, reason: str = "") -> None:
        self.outcomes[row.enrollment_id] = _Outcome(step_id=None, next_run_at=None, status=status, exit_reason=reason)

    def _wait(self, row: _Row, step_id: int | None, until: dt.datetime | None) -> None:
        self.outcomes[row.enrollment_id] = _Outcome(step_id=step_id, next_run_at=until)

    def run(self) -> None:
        pending = self._check_sequences_and_goals(self.rows)
        longest = max((len(plan.steps) for plan in self.plans.values()), default=0)
        # Branches only lead forward, so no enrollment can take more rounds than there are steps.
        for _round in range(longest + 1):
            if not pending:
                break
            pending = self._advance(pending)
        for row in pending:
            # Only a loop gets here (steps reordered under a branch): never spin on it.
            logger.warning("enrollment %s loops at step %s; deferred", row.enrollment_id, row.step_id)
            self._wait(row, row.step_id, self.now + QUARANTINE)

    def _check_sequences_and_goals(self, rows: list[_Row]) -> list[_Row]:
        with_goal = [
            row
            for row in rows
            if self.plans[row.sequence_id].goal and self.plans[row.sequence_id].status == Sequence.Status.ACTIVE
        ]
        reached: set[int] = set()
        if with_goal:
            self._load_contacts(with_goal)
            tags = _tags_of({row.contact_id for row in with_goal})
            events = _event_goals_met(with_goal, self.plans, self.now)
            for row in with_goal:
                _status, _tz, properties = self.contacts[row.contact_id]
                if goal_reached(
                    self.plans[row.sequence_id].goal,
                    properties=properties,
                    tag_ids=tags.get(row.contact_id, set()),
                    event_names=events.get(row.enrollment_id, set()),
                ):
                    reached.add(row.enrollment_id)
        pending = []
        for row in rows:
            plan = self.plans[row.sequence_id]
            if plan.status == Sequence.Status.PAUSED or plan.status == Sequence.Status.DRAFT:
                # Parked: resuming the sequence makes it due again, at the step it is on.
                self.outcomes[row.enrollment_id] = _Outcome(step_id=row.step_id, next_run_at=None, parked=True)
            elif plan.status == Sequence.Status.ARCHIVED:
                self._finish(row, Enrollment.Status.EXITED, Enrollment.ExitReason.SEQUENCE_ARCHIVED)
            elif row.enrollment_id in reached:
                self._finish(row, Enrollment.Status.EXITED, Enrollment.ExitReason.GOAL_REACHED)
            else:
                pending.append(row)
        return pending

    def _advance(self, rows: list[_Row]) -> list[_Row]:
        """Run each row's current step once; return the rows that go straight on to another step."""
        by_kind: dict[str | None, list[_Row]] = defaultdict(list)
        for row in rows:
            step = self.plans[row.sequence_id].steps.get(row.step_id) if row.step_id else None
            by_kind[step["kind"] if step else None].append(row)
        self.advanced_steps += len(rows) - len(by_kind.get(None, ()))

        going_on: list[_Row] = []
        for row in by_kind.pop(None, []):
            self._finish(row, Enrollment.Status.COMPLETED)
        for row in by_kind.pop(Kind.EXIT, []):
            self._finish(row, Enrollment.Status.EXITED, Enrollment.ExitReason.EXIT_STEP)
        for row in by_kind.pop(Kind.DELAY, []):
            plan = self.plans[row.sequence_id]
            self._wait(row, plan.following[row.step_id], self.now + plan.steps[row.step_id]["delay"])
        if Kind.WAIT_UNTIL in by_kind:
            going_on += self._wait_until(by_kind.pop(Kind.WAIT_UNTIL))
        if Kind.CONDITION in by_kind:
            going_on += self._conditions(by_kind.pop(Kind.CONDITION))
        if Kind.EMAIL in by_kind:
            going_on += self._emails(by_kind.pop(Kind.EMAIL))
        if Kind.SPLIT in by_kind:
            going_on += self._splits(by_kind.pop(Kind.SPLIT))
        return going_on

    def _move_on(self, row: _Row, step_id: int | None) -> _Row:
        row.step_id = step_id
        return row

    def _wait_until(self, rows: list[_Row]) -> list[_Row]:
        self._load_contacts(rows)
        going_on = []
        for row in rows:
            plan = self.plans[row.sequence_id]
            step = plan.steps[row.step_id]
            days = frozenset(step["wait_until_days"] or range(7))
            moment = next_time_of_day(self.now, self._zone_of(row), step["wait_until_time"], days)
            if moment <= self.now:
                going_on.append(self._move_on(row, plan.following[row.step_id]))
            else:
                self._wait(row, plan.following[row.step_id], moment)
        return going_on

    def _conditions(self, rows: list[_Row]) -> list[_Row]:
        by_step: dict[int, list[_Row]] = defaultdict(list)
        for row in rows:
            by_step[row.step_id].append(row)
        going_on = []
        for step_id, step_rows in by_step.items():
            plan = self.plans[step_rows[0].sequence_id]
            step = plan.steps[step_id]
            satisfied = self._satisfied(step["condition"], step_rows)
            for row in step_rows:
                target = step["yes_step_id"] if row.enrollment_id in satisfied else step["no_step_id"]
                going_on.append(self._move_on(row, target if target in plan.steps else plan.following[step_id]))
        return going_on

    def _satisfied(self, condition: dict[str, Any], rows: list[_Row]) -> set[int]:
        """Enrollment ids, among `rows`, for which the condition holds."""
        kind = condition["type"]
        if kind in ("opened", "clicked"):
            types = [Event.Type.CLICK] if kind == "clicked" else [Event.Type.OPEN, Event.Type.CLICK]
            events = Event.objects.filter(
                message__enrollment_id__in=[row.enrollment_id for row in rows], type__in=types, is_machine=False
            )
            if condition.get("step"):
                events = events.filter(message__step_id=condition["step"])
            return set(events.values_list("message__enrollment_id", flat=True).distinct())
        if kind == "has_tag":
            tags = _tags_of({row.contact_id for row in rows})
            return {row.enrollment_id for row in rows if condition["tag"] in tags.get(row.contact_id, set())}
        if kind == "event":
            since: Any = OuterRef("enrolled_at")
            if condition.get("within_days"):
                since = self.now - dt.timedelta(days=condition["within_days"])
            events = ContactEvent.objects.filter(
                contact_id=OuterRef("contact_id"),
                name=condition["name"],
                occurred_at__gte=since,
                occurred_at__lte=self.now,
            )
            return set(
                Enrollment.objects.filter(id__in=[row.enrollment_id for row in rows])
                .filter(Exists(events))
                .values_list("id", flat=True)
            )
        self._load_contacts(rows)
        return {row.enrollment_id for row in rows if property_matches(self.contacts[row.contact_id][2], condition)}

    def _sendable(self, rows: list[_Row]) -> list[_Row]:
        """The rows that may be mailed now; the others end (not mailable) or wait for the window."""
        self._load_contacts(rows)
        sendable = []
        for row in rows:
            plan = self.plans[row.sequence_id]
            status, _timezone, _properties = self.contacts[row.contact_id]
            if status != Contact.Status.ACTIVE:
                self._finish(row, Enrollment.Status.EXITED, Enrollment.ExitReason.NOT_MAILABLE)
                continue
            opening = window_opening(
                self.now, self._zone_of(row), plan.send_days, plan.send_start_hour, plan.send_end_hour
            )
            if opening > self.now:
                self._wait(row, row.step_id, opening)
                continue
            sendable.append(row)
        return sendable

    def _send(self, row: _Row) -> None:
        self.messages.append(
            delivery_services.NewMessage(
                organization_id=row.organization_id,
                enrollment_id=row.enrollment_id,
                step_id=row.step_id,
                sequence_id=row.sequence_id,
                contact_id=row.contact_id,
            )
        )

    def _emails(self, rows: list[_Row]) -> list[_Row]:
        going_on = []
        for row in self._sendable(rows):
            self._send(row)
            going_on.append(self._move_on(row, self.plans[row.sequence_id].following[row.step_id]))
        return going_on

    def _splits(self, rows: list[_Row]) -> list[_Row]:
        """Like an email step, with a variant per enrollment (experiments.services); the
        holdout gets no message and moves on as if it had. Assigned when the mail would go out,
        so every arm starts from the same moment."""
        by_step: dict[int, list[_Row]] = defaultdict(list)
        for row in self._sendable(rows):
            by_step[row.step_id].append(row)
        going_on = []
        for step_id, step_rows in by_step.items():
            assigned = experiment_services.variants_assign(
                step_id=step_id, enrollments=[(row.enrollment_id, row.contact_id) for row in step_rows], now=self.now
            )
            for row in step_rows:
                variant = assigned[row.enrollment_id]
                if not variant.is_holdout:
                    self._send(row)
                    if variant.variant_id is not None:
                        self.variants[(step_id, variant.variant_id)].append(row.enrollment_id)
                going_on.append(self._move_on(row, self.plans[row.sequence_id].following[step_id]))
        return going_on

    def write(self) -> TickReport:
        report = TickReport(claimed=len(self.rows), advanced_steps=self.advanced_steps)
        if self.messages:
            report.messages_created = len(delivery_services.messages_enqueue(messages=self.messages, now=self.now))
        for (step_id, variant_id), enrollment_ids in self.variants.items():
            # Before commit, so before any send task can claim these messages.
            Message.objects.filter(step_id=step_id, enrollment_id__in=enrollment_ids, variant__isnull=True).update(
                variant_id=variant_id
            )
        groups: dict[_Outcome, list[int]] = defaultdict(list)
        for enrollment_id, outcome in self.outcomes.items():
            groups[outcome].append(enrollment_id)
        for outcome, ids in groups.items():
            values: dict[str, Any] = {"current_step_id": outcome.step_id, "next_run_at": outcome.next_run_at}
            if outcome.status != ACTIVE:
                values.update(status=outcome.status, exit_reason=outcome.exit_reason, finished_at=self.now)
                report.finished += len(ids)
                if outcome.exit_reason == Enrollment.ExitReason.GOAL_REACHED:
                    enrollments_goal_facts(Enrollment.objects.filter(id__in=ids))
            elif outcome.parked:
                # The sequence may have been resumed since this batch read it; the resume only
                # releases rows already parked, so decide against its committed status now.
                values["next_run_at"] = Case(
                    When(
                        Exists(Sequence.objects.filter(pk=OuterRef("sequence_id"), status=Sequence.Status.ACTIVE)),
                        then=Value(self.now),
                    ),
                    default=None,
                    output_field=DateTimeField(),
                )
                report.parked += len(ids)
            Enrollment.objects.filter(id__in=ids).update(**values)
        return report


def _event_goals_met(rows: list[_Row], plans: dict[int, _SequencePlan], now: dt.datetime) -> dict[int, set[str]]:
    """For rows whose goal is an event: enrollment id -> names of goal events since it began."""
    with_event_goal = [row for row in rows if plans[row.sequence_id].goal["type"] == "event"]
    if not with_event_goal:
        return {}
    return events_since_enrollment(
        enrollment_ids=[row.enrollment_id for row in with_event_goal],
        names={plans[row.sequence_id].goal["name"] for row in with_event_goal},
        now=now,
    )


def _tags_of(contact_ids: set[int]) -> dict[int, set[int]]:
    tags: dict[int, set[int]] = defaultdict(set)
    for contact_id, tag_id in Contact.tags.through.objects.filter(contact_id__in=contact_ids).values_list(
        "contact_id", "tag_id"
    ):
        tags[contact_id].add(tag_id)
    return tags


def advance_due_enrollments(*, now: dt.datetime | None = None, limit: int | None = None) -> TickReport:
    """Claim up to `limit` due enrollments and advance them, in one transaction."""
    now = now or timezone.now()
    limit = limit or settings.ENGINE_CLAIM_BATCH_SIZE
    with transaction.atomic():
        claimed = list(
            Enrollment.objects.filter(status=ACTIVE, next_run_at__lte=now)
            .order_by("next_run_at")
            .select_for_update(skip_locked=True)
            .values_list("id", "organization_id", "sequence_id", "contact_id", "current_step_id")[:limit]
        )
        if not claimed:
            return TickReport()
        try:
            with transaction.atomic():
                batch = _Batch([_Row(*row) for row in claimed], now)
                batch.run()
                return batch.write()
        except Exception:  # one bad enrollment must not stop every organization's mail
            logger.exception("a batch of %d enrollments failed; advancing them one by one", len(claimed))
        report = TickReport()
        for row_values in claimed:  # fresh rows: the failed attempt moved them along
            row = _Row(*row_values)
            try:
                with transaction.atomic():
                    single = _Batch([row], now)
                    single.run()
                    report.add(single.write())
            except Exception:
                logger.exception("enrollment %s could not be advanced; retried in %s", row.enrollment_id, QUARANTINE)
                Enrollment.objects.filter(id=row.enrollment_id).update(next_run_at=now + QUARANTINE)
                report.claimed += 1
        return report


def tick(*, batch_size: int | None = None, budget_seconds: float | None = None) -> TickReport:
    """One scheduler pass: advance due enrollments for up to the time budget, then hand due
    and stranded messages to send tasks. `more_due` says the budget ran out with work left."""
    batch_size = batch_size or settings.ENGINE_CLAIM_BATCH_SIZE
    budget = settings.ENGINE_TICK_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    started = time.monotonic()
    report = TickReport()
    try:
        while True:
            batch = advance_due_enrollments(limit=batch_size)
            report.add(batch)
            if batch.claimed < batch_size:
                break
            if time.monotonic() - started > budget:
                report.more_due = True
                break
    finally:
        # Retries and lost dispatches are swept even when advancing failed.
        report.messages_dispatched = delivery_services.messages_sweep()
    return report
