"""Reads of the analytics app: funnels from the rollups, never from raw events.

Definitions (each count is of distinct messages, unless named *_total):

- enrolled: enrollments into the sequence, at their enrollment time.
- assigned: enrollments given a variant at a split step (holdout included).
- reached: messages written for the step (one per enrollment that got there), at writing.
- sent: messages handed to a route and answered for (accepted, or refused for the address), at
  sending. delivered: sent and never bounced. bounced: sent messages that bounced, at once or
  by a later report, at the first bounce.
- failed, cancelled: messages that ended so (at writing time: they have no other).
- opened: messages opened or clicked by a person (a click counts as an open, because images are
  often blocked), at the first such event. machine_opened: messages opened or clicked only by
  machines (scanners, privacy proxies), never by a person.
- clicked: messages clicked by a person; machine_clicked: only by machines.
- unsubscribed, complained: messages whose link was used, or that were reported as spam.
- goal_reached: enrollments that reached the sequence's goal, at that time; revenue: what the
  goal's events carried ("revenue", "value" or "amount" property).
- opens_total, clicks_total (and machine_*): every event, not distinct.

Times are bucketed by UTC hour and UTC day. Rates divide by: sent (delivery, bounce),
delivered (open, click, unsubscribe, complaint), opened (click-to-open), enrolled (goal).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from analytics.models import FunnelRollup, LinkRollup, Period
from analytics.services import FUNNEL_METRICS, LINK_METRICS

SEQUENCE_LEVEL = ("enrolled", "goal_reached", "revenue")
RATES = {
    "delivery_rate": ("delivered", "sent"),
    "bounce_rate": ("bounced", "sent"),
    "open_rate": ("opened", "delivered"),
    "click_rate": ("clicked", "delivered"),
    "click_to_open_rate": ("clicked", "opened"),
    "unsubscribe_rate": ("unsubscribed", "delivered"),
    "complaint_rate": ("complained", "delivered"),
    "goal_rate": ("goal_reached", "enrolled"),
}
METRICS = (*FUNNEL_METRICS, "revenue")


def _zero() -> dict[str, Any]:
    counts: dict[str, Any] = dict.fromkeys(FUNNEL_METRICS, 0)
    counts["revenue"] = Decimal("0.00")
    return counts


def rates_of(counts: dict[str, Any]) -> dict[str, float | None]:
    """The funnel's rates; None where the denominator is zero."""
    return {name: (counts[top] / counts[bottom] if counts[bottom] else None) for name, (top, bottom) in RATES.items()}


@dataclass
class Cell:
    counts: dict[str, Any] = field(default_factory=_zero)

    def add(self, row: dict[str, Any], metrics: tuple[str, ...] = METRICS) -> None:
        for metric in metrics:
            self.counts[metric] += row[metric] or 0

    @property
    def rates(self) -> dict[str, float | None]:
        return rates_of(self.counts)


@dataclass
class StepFunnel(Cell):
    step_id: int = 0


@dataclass
class TemplateFunnel(Cell):
    template_id: int = 0


@dataclass
class VariantFunnel(Cell):
    step_id: int = 0
    variant_id: int = 0


@dataclass
class LinkFunnel:
    step_id: int
    url: str
    clicked: int
    clicks_total: int
    machine_clicks_total: int


@dataclass
class Bucket(Cell):
    start: dt.datetime | None = None


@dataclass
class Funnel:
    sequence_id: int
    period: str
    since: dt.datetime | None
    until: dt.datetime | None
    totals: Cell
    steps: list[StepFunnel]
    templates: list[TemplateFunnel]
    variants: list[VariantFunnel]
    links: list[LinkFunnel]
    series: list[Bucket]


def _sums(metrics: tuple[str, ...]) -> dict[str, Sum]:
    return {metric: Sum(metric) for metric in metrics}


def _totals_add(totals: Cell, row: dict[str, Any]) -> None:
    # Sequence-level counts live in step 0 rows only; a split step's rows repeat goals per variant.
    metrics = METRICS if row["step_id"] == 0 else tuple(m for m in METRICS if m not in SEQUENCE_LEVEL)
    totals.add(row, metrics)


def sequence_funnel(
    *, sequence_id: int, period: str = Period.DAY, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> Funnel:
    """A sequence's funnel in total, per step, template, variant and link, and as a series of
    `period` buckets within [since, until) (buckets that start in that span)."""
    rows = FunnelRollup.objects.filter(sequence_id=sequence_id, period=period)
    links = LinkRollup.objects.filter(sequence_id=sequence_id, period=period)
    if since is not None:
        rows, links = rows.filter(bucket__gte=since), links.filter(bucket__gte=since)
    if until is not None:
        rows, links = rows.filter(bucket__lt=until), links.filter(bucket__lt=until)
    totals = Cell()
    steps: dict[int, StepFunnel] = {}
    templates: dict[int, TemplateFunnel] = {}
    variants: dict[tuple[int, int], VariantFunnel] = {}
    for row in rows.values("step_id", "template_id", "variant_id").annotate(**_sums(METRICS)).order_by():
        _totals_add(totals, row)
        if row["step_id"] == 0:
            continue
        steps.setdefault(row["step_id"], StepFunnel(step_id=row["step_id"])).add(row)
        if row["template_id"]:
            templates.setdefault(row["template_id"], TemplateFunnel(template_id=row["template_id"])).add(row)
        if row["variant_id"]:
            key = (row["step_id"], row["variant_id"])
            variants.setdefault(key, VariantFunnel(step_id=key[0], variant_id=key[1])).add(row)
    series: dict[dt.datetime, Bucket] = {}
    for row in rows.values("bucket", "step_id").annotate(**_sums(METRICS)).order_by("bucket"):
        _totals_add(series.setdefault(row["bucket"], Bucket(start=row["bucket"])), row)
    link_rows = links.values("step_id", "url_hash", "url").annotate(**_sums(LINK_METRICS)).order_by("step_id", "url")
    return Funnel(
        sequence_id=sequence_id,
        period=period,
        since=since,
        until=until,
        totals=totals,
        steps=sorted(steps.values(), key=lambda s: s.step_id),
        templates=sorted(templates.values(), key=lambda t: t.template_id),
        variants=sorted(variants.values(), key=lambda v: (v.step_id, v.variant_id)),
        links=[
            LinkFunnel(
                step_id=row["step_id"],
                url=row["url"],
                clicked=row["clicked"],
                clicks_total=row["clicks_total"],
                machine_clicks_total=row["machine_clicks_total"],
            )
            for row in link_rows
        ],
        series=sorted(series.values(), key=lambda b: b.start),
    )


def variant_totals(*, step_id: int) -> dict[int, dict[str, Any]]:
    """Variant id -> its counts at this split step, over all time (see the definitions above;
    goal_reached and revenue are of the enrollments assigned that variant)."""
    found: dict[int, dict[str, Any]] = defaultdict(_zero)
    for row in (
        FunnelRollup.objects.filter(step_id=step_id, period=Period.DAY)
        .exclude(variant_id=0)
        .values("variant_id")
        .annotate(**_sums(METRICS))
        .order_by()
    ):
        counts = found[row["variant_id"]]
        for metric in METRICS:
            counts[metric] += row[metric] or 0
    return dict(found)


def _live_totals(rows: Any) -> dict[str, Any]:
    totals = Cell()
    for row in rows.filter(period=Period.DAY).values("step_id").annotate(**_sums(METRICS)).order_by():
        _totals_add(totals, row)
    counts = dict(totals.counts)
    counts["revenue"] = str(counts["revenue"])
    return counts


def sequence_live_totals(sequence_id: int) -> dict[str, Any]:
    """A sequence's totals, as live dashboards start from (JSON-ready)."""
    return _live_totals(FunnelRollup.objects.filter(sequence_id=sequence_id))


def organization_live_totals(organization_id: int) -> dict[str, Any]:
    """The totals of all an organization's sequences, as live dashboards start from."""
    return _live_totals(FunnelRollup.objects.filter(organization_id=organization_id))
