"""Writes of the analytics app: pending facts in, rollups out.

Every write a funnel counts adds a PendingFact in its own transaction (`facts_add`,
`facts_add_for`, or the send path's one statement in delivery.services). `rollups_flush` folds
pending facts into FunnelRollup and LinkRollup and deletes them in the same transaction, under
one lock: a fact is counted exactly once, whatever crashes.

What a message contributes is a function of its state (status, times, the first open and click
by a person and by a machine, ...). The flush re-reads the message, merges the new events into
its stored state, and applies the difference between what the old and the new state contribute.
Counts of distinct messages are therefore exact when events arrive twice, late or out of order:
a machine-only open becomes a human open, a count moves to an earlier hour. Event totals (all
opens and clicks, not distinct) are simply added at the event's hour.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, quote_plus

from django.db import connection, transaction
from django.db.models import QuerySet

from analytics.models import FunnelRollup, LinkRollup, MessageState, PendingFact, Period

logger = logging.getLogger(__name__)

FUNNEL_METRICS = (
    "enrolled",
    "assigned",
    "reached",
    "sent",
    "delivered",
    "bounced",
    "failed",
    "cancelled",
    "opened",
    "machine_opened",
    "clicked",
    "machine_clicked",
    "unsubscribed",
    "complained",
    "goal_reached",
    "opens_total",
    "machine_opens_total",
    "clicks_total",
    "machine_clicks_total",
)
LINK_METRICS = ("clicked", "clicks_total", "machine_clicks_total")
FLUSH_BATCH = 20_000
# One flusher at a time (PostgreSQL advisory lock; SQLite serializes writers anyway).
FLUSH_LOCK_KEY = 0x656D_6C73
KINDS = frozenset(PendingFact.Kind.values)
REVENUE_KEYS = ("revenue", "value", "amount")


# Facts in ---------------------------------------------------------------------------------------


def facts_add(*, organization_id: int, kind: str, object_ids: Iterable[int]) -> None:
    """Note that these objects were written or changed, for the next flush. Call it inside the
    transaction of the write it describes."""
    if kind not in KINDS:
        raise ValueError(f"unknown fact kind {kind!r}")
    ids = list(object_ids)
    if not ids:
        return
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(PendingFact._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (organization_id, kind, object_id) SELECT %s, %s, unnest(%s::bigint[])",
                [organization_id, kind, ids],
            )
        return
    PendingFact.objects.bulk_create(
        [PendingFact(organization_id=organization_id, kind=kind, object_id=object_id) for object_id in ids],
        batch_size=2000,
    )


def facts_add_for(*, kind: str, queryset: QuerySet) -> None:
    """facts_add for every row of `queryset` (any tenant model), in one INSERT ... SELECT: for
    mass updates, such as cancelling every queued message of ended enrollments."""
    if kind not in KINDS:
        raise ValueError(f"unknown fact kind {kind!r}")
    sql, params = queryset.values_list("organization_id", "id").query.sql_with_params()
    table = connection.ops.quote_name(PendingFact._meta.db_table)
    with connection.cursor() as cursor:
        # `kind` is one of the model's choices (checked above), safe to write inline.
        cursor.execute(
            f"INSERT INTO {table} (organization_id, object_id, kind) SELECT *, '{kind}' FROM ({sql}) AS facts",
            params,
        )


def message_fact_sql(id_placeholder: str = "%s") -> str:
    """SQL that adds a message fact for one message id, for callers that write it with the
    statement that changes the message (one round trip on the send path)."""
    table = connection.ops.quote_name(PendingFact._meta.db_table)
    from delivery.models import Message

    messages = connection.ops.quote_name(Message._meta.db_table)
    return (
        f"INSERT INTO {table} (organization_id, object_id, kind) "
        f"SELECT organization_id, id, 'message' FROM {messages} WHERE id = {id_placeholder}"
    )


# Flush ------------------------------------------------------------------------------------------


def _ts(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _bucket(ts: float, seconds: int) -> int:
    return int(ts // seconds * seconds)


@dataclass
class _Deltas:
    funnel: dict[tuple, dict[str, Any]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    links: dict[tuple, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    organization_of_sequence: dict[int, int] = field(default_factory=dict)

    def add(self, organization_id: int, key: tuple[int, int, int, int], metric: str, ts: float, n: Any = 1) -> None:
        self.organization_of_sequence[key[0]] = organization_id
        for period, seconds in ((Period.HOUR, 3600), (Period.DAY, 86400)):
            self.funnel[(*key, period, _bucket(ts, seconds))][metric] += n

    def add_link(
        self, organization_id: int, sequence_id: int, step_id: int, url: str, metric: str, ts: float, n: int
    ) -> None:
        self.organization_of_sequence[sequence_id] = organization_id
        for period, seconds in ((Period.HOUR, 3600), (Period.DAY, 86400)):
            self.links[(sequence_id, step_id, url, period, _bucket(ts, seconds))][metric] += n

    def sequence_totals(self) -> dict[int, dict[str, Any]]:
        """Per sequence, the change to its totals (hour rows only, so nothing counts twice)."""
        totals: dict[int, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        for (sequence_id, step_id, _, _, period, _), metrics in self.funnel.items():
            if period != Period.HOUR:
                continue
            for metric, n in metrics.items():
                if n and (step_id == 0 or metric not in ("enrolled", "goal_reached", "revenue")):
                    totals[sequence_id][metric] += n
        return totals


def rollups_flush(*, limit: int = FLUSH_BATCH, max_batches: int | None = None) -> int:
    """Fold pending facts into the rollups, `limit` at a time, until none are left (or
    `max_batches` are done). Returns how many facts were folded."""
    folded = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        done = _flush_batch(limit)
        folded += done
        batches += 1
        if done < limit:
            break
    return folded


def _flush_batch(limit: int) -> int:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FLUSH_LOCK_KEY])
        facts = _facts_take(limit)
        if not facts:
            return 0
        ids_of: dict[str, set[int]] = defaultdict(set)
        for kind, object_id in facts:
            ids_of[kind].add(object_id)
        deltas = _Deltas()
        events = _load_events(ids_of[PendingFact.Kind.EVENT])
        _fold_messages(ids_of[PendingFact.Kind.MESSAGE], events, deltas)
        _fold_enrollments(ids_of[PendingFact.Kind.ENROLLED], deltas)
        _fold_goals(ids_of[PendingFact.Kind.GOAL], deltas)
        _fold_assignments(ids_of[PendingFact.Kind.ASSIGNED], deltas)
        _write(deltas)
        totals = deltas.sequence_totals()
        organizations = dict(deltas.organization_of_sequence)
        transaction.on_commit(lambda: _publish_counters(totals, organizations))
    return len(facts)


def _facts_take(limit: int) -> list[tuple[str, int]]:
    """Take (delete) the oldest `limit` pending facts; the caller's transaction makes taking
    and folding one."""
    table = connection.ops.quote_name(PendingFact._meta.db_table)
    with connection.cursor() as cursor:
        facts = list(PendingFact.objects.order_by("id").values_list("id", "kind", "object_id")[:limit])
        if connection.vendor == "postgresql":
            # By the ids just read, not `id IN (subquery)`: with stale statistics (a table
            # analyzed while empty) the planner may re-run a subquery for every row.
            if facts:
                cursor.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", [[fact_id for fact_id, _, _ in facts]])
            return [(kind, object_id) for _, kind, object_id in facts]
        if facts:
            cursor.execute(f"DELETE FROM {table} WHERE id <= %s AND id >= %s", [facts[-1][0], facts[0][0]])
        return [(kind, object_id) for _, kind, object_id in facts]


def _publish_counters(totals: dict[int, dict[str, Any]], organizations: dict[int, int]) -> None:
    from analytics import live

    by_organization: dict[int, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for sequence_id, metrics in totals.items():
        clean = {metric: (str(n) if isinstance(n, Decimal) else n) for metric, n in metrics.items() if n}
        if not clean:
            continue
        live.counters_publish(organizations[sequence_id], sequence_id, clean)
        for metric, n in metrics.items():
            by_organization[organizations[sequence_id]][metric] += n
    for organization_id, metrics in by_organization.items():
        clean = {metric: (str(n) if isinstance(n, Decimal) else n) for metric, n in metrics.items() if n}
        if clean:
            live.counters_publish(organization_id, None, clean)


# Messages and their events -------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    id: int
    message_id: int
    type: str
    ts: float
    is_machine: bool
    url: str


def _load_events(event_ids: set[int]) -> list[_Event]:
    from delivery.models import Event

    events: list[_Event] = []
    ids = sorted(event_ids)
    if connection.vendor == "postgresql" and ids:
        # Times as epoch seconds straight from the server: no datetime objects for millions of rows.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, message_id, type, extract(epoch FROM occurred_at)::float8, is_machine, url "
                f"FROM {connection.ops.quote_name(Event._meta.db_table)} "
                "WHERE id = ANY(%s) AND message_id IS NOT NULL",
                [ids],
            )
            return [_Event(*row) for row in cursor.fetchall()]
    for start in range(0, len(ids), 5000):
        for event_id, message_id, kind, occurred_at, is_machine, url in Event.objects.filter(
            id__in=ids[start : start + 5000], message_id__isnull=False
        ).values_list("id", "message_id", "type", "occurred_at", "is_machine", "url"):
            events.append(_Event(event_id, message_id, kind, occurred_at.timestamp(), is_machine, url))
    return events


def _earliest(state: dict[str, Any], name: str, ts: float) -> None:
    if state.get(name) is None or ts < state[name]:
        state[name] = ts


def message_contributions(state: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """What a message in this state counts towards: metric -> time, and link URL -> time of
    the first click by a person. The definitions are in analytics.selectors."""
    counts: dict[str, float] = {}
    created, status = state["c"], state["st"]
    counts["reached"] = created
    bounced_at = state.get("b")
    if status == "bounced" and bounced_at is None:
        bounced_at = state.get("s") or created
    sent_at = state.get("s")
    if sent_at is None and status == "bounced":
        sent_at = bounced_at
    if sent_at is not None:
        counts["sent"] = sent_at
        if bounced_at is None:
            counts["delivered"] = sent_at
    if bounced_at is not None and sent_at is not None:
        counts["bounced"] = bounced_at
    if status == "failed":
        counts["failed"] = created
    elif status == "cancelled":
        counts["cancelled"] = created
    for metric, human, machine in (("opened", "ho", "mo"), ("clicked", "hc", "mc")):
        if state.get(human) is not None:
            counts[metric] = state[human]
        elif state.get(machine) is not None:
            counts[f"machine_{metric}"] = state[machine]
    if state.get("u") is not None:
        counts["unsubscribed"] = state["u"]
    if state.get("x") is not None:
        counts["complained"] = state["x"]
    return counts, dict(state.get("l", {}))


def _message_rows(ids: list[int]) -> dict[int, tuple]:
    """id -> (organization, sequence, step, variant, step's template, variant's template,
    status, created at, sent at), times as epoch seconds."""
    from delivery.models import Message

    if not ids:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT m.id, m.organization_id, m.sequence_id, m.step_id, m.variant_id, s.template_id, v.template_id, "
                "m.status, extract(epoch FROM m.created_at)::float8, extract(epoch FROM m.sent_at)::float8 "
                "FROM delivery_message m LEFT JOIN sequences_step s ON s.id = m.step_id "
                "LEFT JOIN experiments_variant v ON v.id = m.variant_id WHERE m.id = ANY(%s)",
                [ids],
            )
            return {row[0]: row[1:] for row in cursor.fetchall()}
    rows = {}
    for chunk in _chunks(set(ids)):
        for row in Message.objects.filter(id__in=chunk).values_list(
            "id",
            "organization_id",
            "sequence_id",
            "step_id",
            "variant_id",
            "step__template_id",
            "variant__template_id",
            "status",
            "created_at",
            "sent_at",
        ):
            rows[row[0]] = (*row[1:8], row[8].timestamp(), _ts(row[9]))
    return rows


def _states_load(ids: list[int]) -> dict[int, tuple[int, dict[str, Any]]]:
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(MessageState._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT message_id, organization_id, state::text FROM {table} WHERE message_id = ANY(%s)", [ids]
            )
            return {message_id: (organization_id, json.loads(state)) for message_id, organization_id, state in cursor}
    return {
        message_id: (organization_id, state)
        for message_id, organization_id, state in MessageState.objects.filter(message_id__in=ids).values_list(
            "message_id", "organization_id", "state"
        )
    }


def _fold_messages(changed_ids: set[int], events: list[_Event], deltas: _Deltas) -> None:
    """Re-read the messages that changed, merge in the new events, and apply the difference
    between what each message's old and new state contribute. A message touched only by events
    is not re-read: any change of its own comes with a fact of its own."""
    events_of: dict[int, list[_Event]] = defaultdict(list)
    for event in events:
        events_of[event.message_id].append(event)
    touched = changed_ids | events_of.keys()
    for chunk in _chunks(touched, 10_000):
        states = _states_load(chunk)
        rows = _message_rows(
            [message_id for message_id in chunk if message_id in changed_ids or message_id not in states]
        )
        new_states: list[tuple[int, int, dict[str, Any]]] = []
        for message_id in chunk:
            stored, row = states.get(message_id), rows.get(message_id)
            if row is not None:
                organization_id = row[0]
            elif stored is not None:
                organization_id = stored[0]
            else:
                continue  # deleted since (its contact was erased)
            old = stored[1] if stored else None
            if old:
                state = dict(old)
                if "l" in old:
                    state["l"] = dict(old["l"])
            else:
                _, sequence_id, step_id, variant_id, step_template, variant_template = row[:6]
                # The message's place in the rollups is fixed when first counted: a step or
                # template changed later does not move its history.
                state = {"k": [sequence_id, step_id or 0, variant_template or step_template or 0, variant_id or 0]}
            if row is not None:
                state["st"], state["c"], state["s"] = row[6], row[7], row[8]
            key = tuple(state["k"])
            for event in events_of.get(message_id, ()):
                _fold_event(state, event, key, organization_id, deltas)
            if state != old:
                _apply_difference(old, state, key, organization_id, deltas)
                new_states.append((message_id, organization_id, state))
        _states_save(new_states)


def _fold_event(state: dict[str, Any], event: _Event, key: tuple, organization_id: int, deltas: _Deltas) -> None:
    ts = event.ts
    if event.type in ("open", "click"):
        _earliest(state, "mo" if event.is_machine else "ho", ts)
        total = f"{'machine_' if event.is_machine else ''}{event.type}s_total"
        deltas.add(organization_id, key, total, ts)
        if event.type == "click":
            _earliest(state, "mc" if event.is_machine else "hc", ts)
            if event.url:
                link_total = "machine_clicks_total" if event.is_machine else "clicks_total"
                deltas.add_link(organization_id, key[0], key[1], event.url, link_total, ts, 1)
                if not event.is_machine:
                    links = state.setdefault("l", {})
                    if links.get(event.url) is None or ts < links[event.url]:
                        links[event.url] = ts
    elif event.type == "bounce":
        _earliest(state, "b", ts)
    elif event.type == "unsubscribe":
        _earliest(state, "u", ts)
    elif event.type == "complaint":
        _earliest(state, "x", ts)


def _apply_difference(
    old: dict[str, Any] | None, new: dict[str, Any], key: tuple, organization_id: int, deltas: _Deltas
) -> None:
    before, links_before = message_contributions(old) if old else ({}, {})
    after, links_after = message_contributions(new)
    for metric in before.keys() | after.keys():
        if before.get(metric) == after.get(metric):
            continue
        if metric in before:
            deltas.add(organization_id, key, metric, before[metric], -1)
        if metric in after:
            deltas.add(organization_id, key, metric, after[metric], 1)
    for url in links_before.keys() | links_after.keys():
        if links_before.get(url) == links_after.get(url):
            continue
        if url in links_before:
            deltas.add_link(organization_id, key[0], key[1], url, "clicked", links_before[url], -1)
        if url in links_after:
            deltas.add_link(organization_id, key[0], key[1], url, "clicked", links_after[url], 1)


def _states_save(states: list[tuple[int, int, dict[str, Any]]]) -> None:
    if not states:
        return
    table = connection.ops.quote_name(MessageState._meta.db_table)
    upsert = "ON CONFLICT (message_id) DO UPDATE SET state = excluded.state"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} (message_id, organization_id, state) "
                f"SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::jsonb[]) {upsert}",
                [
                    [message_id for message_id, _, _ in states],
                    [organization_id for _, organization_id, _ in states],
                    [json.dumps(state, separators=(",", ":")) for _, _, state in states],
                ],
            )
            return
        for start in range(0, len(states), 500):
            chunk = states[start : start + 500]
            params: list[Any] = []
            for message_id, organization_id, state in chunk:
                params.extend((message_id, organization_id, json.dumps(state, separators=(",", ":"))))
            cursor.execute(
                f"INSERT INTO {table} (message_id, organization_id, state) VALUES "
                + ", ".join(["(%s, %s, %s)"] * len(chunk))
                + f" {upsert}",
                params,
            )


# Enrollments, goals, assignments ---------------------------------------------------------------


def _chunks(ids: set[int], size: int = 5000) -> Iterable[list[int]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _fold_enrollments(enrollment_ids: set[int], deltas: _Deltas) -> None:
    from sequences.models import Enrollment

    for chunk in _chunks(enrollment_ids):
        for organization_id, sequence_id, enrolled_at in Enrollment.objects.filter(id__in=chunk).values_list(
            "organization_id", "sequence_id", "enrolled_at"
        ):
            deltas.add(organization_id, (sequence_id, 0, 0, 0), "enrolled", enrolled_at.timestamp())


def revenue_of(properties: Any) -> Decimal | None:
    """The revenue a custom event carries ("revenue", else "value" or "amount"), if numeric."""
    if not isinstance(properties, dict):
        return None
    for name in REVENUE_KEYS:
        value = properties.get(name)
        if isinstance(value, bool) or value is None:
            continue
        try:
            amount = Decimal(str(value))
        except (InvalidOperation, ValueError):
            continue
        if amount.is_finite():
            return amount.quantize(Decimal("0.01"))
    return None


def goal_revenue(*, contact_id: int, goal: dict[str, Any] | None, since: dt.datetime, until: dt.datetime) -> Decimal:
    """Revenue carried by the goal's events between enrollment and goal: the sum over the
    custom events of the goal's name in that span (event goals only; others carry none)."""
    from subscribers.models import ContactEvent

    if not goal or goal.get("type") != "event":
        return Decimal(0)
    total = Decimal(0)
    for properties in ContactEvent.objects.filter(
        contact_id=contact_id, name=goal["name"], occurred_at__gte=since, occurred_at__lte=until
    ).values_list("properties", flat=True):
        total += revenue_of(properties) or 0
    return total


def _fold_goals(enrollment_ids: set[int], deltas: _Deltas) -> None:
    from experiments.models import Assignment
    from sequences.models import Enrollment

    for chunk in _chunks(enrollment_ids):
        reached = Enrollment.objects.filter(id__in=chunk, exit_reason=Enrollment.ExitReason.GOAL_REACHED).values_list(
            "id", "organization_id", "sequence_id", "contact_id", "enrolled_at", "finished_at", "sequence__goal"
        )
        arms: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for enrollment_id, step_id, variant_id in Assignment.objects.filter(enrollment_id__in=chunk).values_list(
            "enrollment_id", "experiment__step_id", "variant_id"
        ):
            arms[enrollment_id].append((step_id, variant_id))
        for enrollment_id, organization_id, sequence_id, contact_id, enrolled_at, finished_at, goal in reached:
            at = finished_at or enrolled_at
            revenue = goal_revenue(contact_id=contact_id, goal=goal, since=enrolled_at, until=at)
            for key in [(sequence_id, 0, 0, 0)] + [
                (sequence_id, step, 0, variant) for step, variant in arms[enrollment_id]
            ]:
                deltas.add(organization_id, key, "goal_reached", at.timestamp())
                if revenue:
                    deltas.add(organization_id, key, "revenue", at.timestamp(), revenue)


def _fold_assignments(assignment_ids: set[int], deltas: _Deltas) -> None:
    from experiments.models import Assignment

    for chunk in _chunks(assignment_ids):
        for organization_id, sequence_id, step_id, variant_id, assigned_at in Assignment.objects.filter(
            id__in=chunk
        ).values_list(
            "organization_id", "experiment__step__sequence_id", "experiment__step_id", "variant_id", "assigned_at"
        ):
            deltas.add(organization_id, (sequence_id, step_id, 0, variant_id), "assigned", assigned_at.timestamp())


# Writing the rollups ------------------------------------------------------------------------------


def _datetime_param(ts: int) -> Any:
    return connection.ops.adapt_datetimefield_value(dt.datetime.fromtimestamp(ts, tz=dt.UTC))


def _write(deltas: _Deltas) -> None:
    funnel_table = connection.ops.quote_name(FunnelRollup._meta.db_table)
    metrics = (*FUNNEL_METRICS, "revenue")
    columns = "organization_id, sequence_id, step_id, template_id, variant_id, period, bucket, " + ", ".join(metrics)
    updates = ", ".join(f"{m} = {funnel_table}.{m} + excluded.{m}" for m in metrics)
    rows = []
    for (sequence_id, step_id, template_id, variant_id, period, bucket), values in deltas.funnel.items():
        if not any(values.values()):
            continue
        rows.append(
            (
                deltas.organization_of_sequence[sequence_id],
                sequence_id,
                step_id,
                template_id,
                variant_id,
                period,
                _datetime_param(bucket),
                *(values.get(m, 0) for m in FUNNEL_METRICS),
                str(values.get("revenue", 0)),
            )
        )
    _upsert(
        funnel_table,
        columns,
        rows,
        "(sequence_id, period, bucket, step_id, template_id, variant_id)",
        updates,
    )
    link_table = connection.ops.quote_name(LinkRollup._meta.db_table)
    link_columns = "organization_id, sequence_id, step_id, url_hash, url, period, bucket, " + ", ".join(LINK_METRICS)
    link_updates = ", ".join(f"{m} = {link_table}.{m} + excluded.{m}" for m in LINK_METRICS)
    link_rows = []
    for (sequence_id, step_id, url, period, bucket), values in deltas.links.items():
        if not any(values.values()):
            continue
        link_rows.append(
            (
                deltas.organization_of_sequence[sequence_id],
                sequence_id,
                step_id,
                url_hash(url),
                url,
                period,
                _datetime_param(bucket),
                *(values.get(m, 0) for m in LINK_METRICS),
            )
        )
    _upsert(link_table, link_columns, link_rows, "(sequence_id, period, bucket, step_id, url_hash)", link_updates)


def person_traces_forget(*, organization_id: int, message_ids: Iterable[int], address: str) -> None:
    """For a person being erased (subscribers.services.contact_erase calls it in its transaction,
    before their messages and events are deleted): the states of their messages go, and a link
    rollup whose URL carries their address (a link personalized with it) keeps its counts under
    the URL with the address blanked. The counts their messages placed stay in the rollups: they
    are no longer anyone's."""
    from delivery.models import Event, Message

    ids = set(message_ids)
    if not ids:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # After a flush in progress, before the next one: neither writes these states back.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FLUSH_LOCK_KEY])
    urls: set[str] = set()
    for chunk in _chunks(ids):
        for links in Message.objects.filter(id__in=chunk).values_list("links", flat=True):
            urls.update(link for link in links or () if isinstance(link, str))
        urls.update(Event.objects.filter(message_id__in=chunk).exclude(url="").values_list("url", flat=True))
        states = MessageState.objects.filter(organization_id=organization_id, message_id__in=chunk)
        for state in states.values_list("state", flat=True):
            urls.update((state or {}).get("l", {}))
        states.delete()
    address_in_url = _address_pattern(address)
    for url in urls:
        blanked = address_in_url.sub(ERASED_ADDRESS, url)
        if blanked != url:
            LinkRollup.objects.filter(organization_id=organization_id, url_hash=url_hash(url)).update(url=blanked)


ERASED_ADDRESS = "[erased]"


def _address_pattern(address: str) -> re.Pattern[str]:
    """The address as a URL may carry it: as it is, percent-encoded, or form-encoded."""
    forms = {address, quote(address, safe=""), quote_plus(address), quote(address)}
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)), re.IGNORECASE)


def url_hash(url: str) -> str:
    return hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


def _upsert(table: str, columns: str, rows: list[tuple], conflict: str, updates: str) -> None:
    if not rows:
        return
    width = len(rows[0])
    size = max(1, 30000 // width // 2)  # under SQLite's parameter cap
    with connection.cursor() as cursor:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            values = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT {conflict} DO UPDATE SET {updates}",
                [value for row in chunk for value in row],
            )


# Live -------------------------------------------------------------------------------------------


def live_event(event: Any) -> dict[str, Any]:
    """What a dashboard is told of an event (delivery.models.Event): no address, no IP."""
    message = event.message if event.message_id else None
    return {
        "organization_id": event.organization_id,
        "sequence_id": message.sequence_id if message else None,
        "step_id": message.step_id if message else None,
        "message_id": event.message_id,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "is_machine": event.is_machine,
        "url": event.url,
    }


def events_publish_after_commit(events: list[Any]) -> None:
    """Publish these events to live dashboards once the current transaction commits: the one
    way events reach /ws/events."""
    if not events:
        return
    payloads = [live_event(event) for event in events]

    def publish() -> None:
        from analytics import live

        live.events_publish(payloads)

    transaction.on_commit(publish)
