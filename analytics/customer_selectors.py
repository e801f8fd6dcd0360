"""Customer analytics of one organization: the inputs read from the database, then `customers`.

Purchases (conversions) are the organization's custom events (`subscribers.ContactEvent`) with
one of the given names; their revenue is the event's "revenue" property, else "value", else
"amount": a number, or a string holding one. Anything else (missing, text, a boolean,
negative, not finite) counts as no revenue, the purchase itself still counts.

Touches are an organization's email steps reaching a contact: a sent message (at `sent_at`),
or a person's open or click of one (`delivery.Event`, machines left out), by the message's step.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Min
from django.utils import timezone

from analytics import customers
from delivery.models import Event, Message
from organizations.models import Organization
from sequences.models import Enrollment, Sequence, Step
from subscribers.models import Contact, ContactEvent

REVENUE_PROPERTIES = ("revenue", "value", "amount")
ENGAGEMENT_TYPES = (Event.Type.OPEN, Event.Type.CLICK)


class TouchKind:
    SENT = "sent"
    OPENED = "opened"
    CLICKED = "clicked"
    ALL = (SENT, OPENED, CLICKED)


class CohortBasis:
    SIGNUP = "signup"
    ENROLLMENT = "enrollment"
    ALL = (SIGNUP, ENROLLMENT)


def revenue_of(properties: Any) -> float:
    """The event's revenue, 0.0 when it has none that makes sense (see the module docstring)."""
    if not isinstance(properties, dict):
        return 0.0
    for name in REVENUE_PROPERTIES:
        if name not in properties:
            continue
        value = properties[name]
        if isinstance(value, bool):
            return 0.0
        if isinstance(value, str):
            try:
                value = Decimal(value.strip())
            except InvalidOperation:
                return 0.0
        if not isinstance(value, (int, float, Decimal)):
            return 0.0
        try:
            number = float(value)
        except (OverflowError, ValueError):
            return 0.0
        return number if math.isfinite(number) and number >= 0 else 0.0
    return 0.0


def conversions_list(
    *,
    organization: Organization,
    event_names: Iterable[str],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[customers.Conversion]:
    events = ContactEvent.objects.for_org(organization).filter(name__in=list(event_names))
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lte=until)
    return [
        customers.Conversion(contact_id=contact_id, occurred_at=occurred_at, revenue=revenue_of(properties))
        for contact_id, occurred_at, properties in events.order_by("occurred_at", "id").values_list(
            "contact_id", "occurred_at", "properties"
        )
    ]


def touches_list(
    *,
    organization: Organization,
    kind: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    sequence: Sequence | None = None,
) -> list[customers.Touch]:
    if kind == TouchKind.SENT:
        rows = Message.objects.for_org(organization).filter(
            status=Message.Status.SENT, sent_at__isnull=False, step__isnull=False
        )
        time_field, step_field, sequence_field = "sent_at", "step_id", "sequence_id"
    else:
        types = [Event.Type.CLICK] if kind == TouchKind.CLICKED else list(ENGAGEMENT_TYPES)
        rows = Event.objects.for_org(organization).filter(type__in=types, is_machine=False, message__step__isnull=False)
        time_field, step_field, sequence_field = "occurred_at", "message__step_id", "message__sequence_id"
    if since is not None:
        rows = rows.filter(**{f"{time_field}__gte": since})
    if until is not None:
        rows = rows.filter(**{f"{time_field}__lte": until})
    if sequence is not None:
        rows = rows.filter(**{sequence_field: sequence.pk})
    return [
        customers.Touch(contact_id=contact_id, channel=step_id, occurred_at=moment)
        for contact_id, step_id, moment in rows.values_list("contact_id", step_field, time_field)
    ]


# Cohorts ----------------------------------------------------------------------------------------


def customer_cohorts(
    *,
    organization: Organization,
    basis: str,
    cohorts: int,
    weeks: int,
    sequence: Sequence | None = None,
    now: dt.datetime | None = None,
) -> list[customers.CohortRow]:
    """The last `cohorts` join weeks (this one included), `weeks` weeks of retention each."""
    now = now or timezone.now()
    first_week = customers.week_start(now) - dt.timedelta(weeks=cohorts - 1)
    start = dt.datetime.combine(first_week, dt.time(), tzinfo=dt.UTC)
    if basis == CohortBasis.ENROLLMENT:
        enrollments = Enrollment.objects.for_org(organization)
        if sequence is not None:
            enrollments = enrollments.filter(sequence=sequence)
        # A contact joins at their first enrollment; one that began before the range is not new.
        firsts = (
            enrollments.values("contact_id").annotate(first=Min("enrolled_at")).filter(first__gte=start, first__lte=now)
        )
        joined = {row["contact_id"]: row["first"] for row in firsts}
    else:
        contacts = Contact.objects.for_org(organization).filter(created_at__gte=start, created_at__lte=now)
        joined = dict(contacts.values_list("id", "created_at"))
    engagements = Event.objects.for_org(organization).filter(
        type__in=ENGAGEMENT_TYPES, is_machine=False, occurred_at__gte=start, occurred_at__lte=now
    )
    if sequence is not None:
        engagements = engagements.filter(message__sequence=sequence)
    engaged = (
        (contact_id, moment)
        for contact_id, moment in engagements.values_list("contact_id", "occurred_at").iterator()
        if contact_id in joined
    )
    return customers.cohort_matrix(joined=joined, engaged=engaged, weeks=weeks, now=now)


# RFM --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RfmReport:
    customers: int
    segments: list[dict[str, Any]]  # {"segment", "customers", "revenue"} for every segment
    scores: list[customers.RfmScore]  # the asked-for page, highest spend first
    emails: dict[int, str]


def customer_rfm(
    *,
    organization: Organization,
    event_names: Iterable[str],
    segment: str | None = None,
    limit: int = 100,
    now: dt.datetime | None = None,
) -> RfmReport:
    now = now or timezone.now()
    scores = customers.rfm_scores(
        conversions_list(organization=organization, event_names=event_names, until=now), now=now
    )
    segments = []
    for name in customers.Segment:
        members = [score for score in scores if score.segment == name]
        segments.append(
            {
                "segment": name.value,
                "customers": len(members),
                "revenue": math.fsum(score.monetary for score in members),
            }
        )
    chosen = [score for score in scores if segment is None or score.segment == segment]
    chosen.sort(key=lambda score: (-score.monetary, -score.frequency, score.contact_id))
    chosen = chosen[:limit]
    emails = dict(
        Contact.objects.for_org(organization)
        .filter(pk__in=[score.contact_id for score in chosen])
        .values_list("id", "email")
    )
    return RfmReport(customers=len(scores), segments=segments, scores=chosen, emails=emails)


# Lifetime value ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LifetimeValueReport:
    model: customers.LifetimeValueModel
    months: int
    monthly_discount_rate: float
    expected_purchases: float
    lifetime_value: float
    top: list[customers.LifetimeValue]
    emails: dict[int, str]


def customer_lifetime_value(
    *,
    organization: Organization,
    event_names: Iterable[str],
    months: int,
    monthly_discount_rate: float,
    limit: int,
    now: dt.datetime | None = None,
) -> LifetimeValueReport:
    """Raises customers.LifetimeValueUnavailable when the history is too thin to fit."""
    now = now or timezone.now()
    conversions = conversions_list(organization=organization, event_names=event_names, until=now)
    model = customers.lifetime_value_fit(
        [(conversion.contact_id, conversion.occurred_at, conversion.revenue) for conversion in conversions],
        observation_end=now,
    )
    values = customers.lifetime_value_predict(model, months=months, monthly_discount_rate=monthly_discount_rate)
    top = sorted(values, key=lambda value: (-value.lifetime_value, value.contact_id))[:limit]
    emails = dict(
        Contact.objects.for_org(organization)
        .filter(pk__in=[int(value.contact_id) for value in top])
        .values_list("id", "email")
    )
    return LifetimeValueReport(
        model=model,
        months=months,
        monthly_discount_rate=monthly_discount_rate,
        expected_purchases=math.fsum(value.expected_purchases for value in values),
        lifetime_value=math.fsum(value.lifetime_value for value in values),
        top=top,
        emails=emails,
    )


# Attribution ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributionReport:
    window_days: int
    half_life_days: float
    touch: str
    results: list[customers.Attribution]
    steps: dict[int, Step]


def customer_attribution(
    *,
    organization: Organization,
    event_names: Iterable[str],
    models: Iterable[customers.Model],
    window_days: int,
    half_life_days: float,
    touch: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    sequence: Sequence | None = None,
) -> AttributionReport:
    """Revenue and conversions credited to email steps; conversions between since and until."""
    window = dt.timedelta(days=window_days)
    conversions = conversions_list(organization=organization, event_names=event_names, since=since, until=until)
    touches = touches_list(
        organization=organization,
        kind=touch,
        # Non-converting paths need touches up to a window before the first conversion.
        since=since - window if since is not None else None,
        until=until,
        sequence=sequence,
    )
    results = [
        customers.attribute(
            conversions, touches, model=model, window=window, half_life=dt.timedelta(days=half_life_days)
        )
        for model in models
    ]
    step_ids = {channel for result in results for channel in result.credits}
    steps = Step.objects.for_org(organization).filter(pk__in=step_ids).select_related("sequence")
    return AttributionReport(
        window_days=window_days,
        half_life_days=half_life_days,
        touch=touch,
        results=results,
        steps={step.pk: step for step in steps},
    )
