"""Acceptance: after a randomized simulated run (10,000 contacts, thousands of events of every
type, some arriving twice or out of order, flushes in between), every funnel number equals a
brute-force recount from the raw rows, written here from the definitions in analytics.selectors.

Everything is written through the product's own paths: enrollment, the engine, the send path's
claim and recording, event_record (as the pixel, click redirect, unsubscribe link, bounce and
complaint reports do), the tracking services with signed tokens, and custom-event ingestion
with goals.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics import selectors, services
from analytics.models import FunnelRollup, LinkRollup, Period
from analytics.services import FUNNEL_METRICS, revenue_of
from delivery import services as delivery_services
from delivery import signing
from delivery.models import Event, Message
from delivery.tests.factories import BROWSER, email_sequence
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences import services as sequence_services
from sequences.models import Enrollment, Sequence
from subscribers.models import Contact, ContactEvent
from subscribers.services import NewContactEvent, contact_events_ingest
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

CONTACTS = 10_000
LINKS = ["https://shop.example/spring", "https://shop.example/sale?utm=1", "https://help.example/faq"]
SCANNER = "Barracuda Sentinel (EE)"
HOUR, DAY = 3600, 86400


def _claim_and_record(messages: list[int], rng: random.Random, now: dt.datetime) -> None:
    """What a send task does, with the routes' answers drawn at random."""
    for start in range(0, len(messages), 500):
        rows = delivery_services._claim(messages[start : start + 500], now)
        outcomes = delivery_services._Outcomes()
        for row in rows:
            draw = rng.random()
            message_id = row["id"]
            if draw < 0.84:
                sent_at_offset = dt.timedelta(seconds=rng.randrange(0, 3 * DAY))
                outcomes.sent.append(
                    (
                        message_id,
                        "Hello",
                        row["contact__email"],
                        f"<{message_id}@x>",
                        json.dumps(LINKS),
                        "250 ok",
                        None,
                        "",
                    )
                )
                # sent at its own time: record each sent message on its own, as the send path does
                single = delivery_services._Outcomes(sent=[outcomes.sent.pop()])
                delivery_services._record(single, now + sent_at_offset)
            elif draw < 0.87:
                outcomes.bounced.append(
                    (message_id, "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown")
                )
            elif draw < 0.90:
                outcomes.rejected.append((message_id, "554 5.7.1 Message refused for its content"))
            elif draw < 0.92:
                outcomes.failed.append((message_id, Enrollment.ExitReason.RENDER_FAILED, "render failed"))
            elif draw < 0.94:
                outcomes.cancelled.append((message_id, "contact is unsubscribed"))
            else:
                outcomes.retry.append((message_id, 1, "451 try later"))
        delivery_services._record(outcomes, now)


def _sent_messages(sequence: Sequence) -> list[Message]:
    return list(Message.objects.filter(sequence=sequence, status=Message.Status.SENT).select_related("contact"))


def _events(messages: list[Message], rng: random.Random, count: int, *, earlier: bool = False) -> None:
    """Record `count` events of every kind on random sent messages; `earlier` dates them before
    the message's other events (arriving late and out of order)."""
    for _ in range(count):
        message = rng.choice(messages)
        base = message.sent_at
        offset = dt.timedelta(seconds=rng.randrange(1, 2 * HOUR) if earlier else rng.randrange(2 * HOUR, 4 * DAY))
        occurred_at = base + offset
        kind = rng.choices(
            ["open", "machine_open", "click", "machine_click", "unsubscribe", "complaint", "bounce", "delivered"],
            weights=[40, 15, 20, 8, 3, 2, 3, 9],
        )[0]
        machine = kind.startswith("machine_")
        event_type = kind.removeprefix("machine_")
        url = rng.choice(LINKS) if event_type == "click" else ""
        times = 2 if rng.random() < 0.1 else 1  # some arrive twice
        for _ in range(times):
            delivery_services.event_record(
                message=message,
                contact=message.contact,
                type=event_type,
                occurred_at=occurred_at,
                user_agent=SCANNER if machine else BROWSER,
                url=url,
                is_machine=machine,
                machine_reason="scanner" if machine else "",
            )


def _recount(sequence: Sequence) -> tuple[dict[tuple, Counter], dict[tuple, Counter]]:
    """Every rollup cell, recounted from raw rows with the selectors' definitions."""
    cells: dict[tuple, Counter] = defaultdict(Counter)
    links: dict[tuple, Counter] = defaultdict(Counter)

    def put(key: tuple, metric: str, when: dt.datetime, n=1) -> None:
        ts = when.timestamp()
        for period, seconds in ((Period.HOUR, HOUR), (Period.DAY, DAY)):
            cells[(*key, period, int(ts // seconds * seconds))][metric] += n

    def put_link(step_id: int, url: str, metric: str, when: dt.datetime) -> None:
        ts = when.timestamp()
        for period, seconds in ((Period.HOUR, HOUR), (Period.DAY, DAY)):
            links[(step_id, url, period, int(ts // seconds * seconds))][metric] += 1

    events_of: dict[int, list[Event]] = defaultdict(list)
    for event in Event.objects.filter(message__sequence=sequence):
        events_of[event.message_id].append(event)
    for message in Message.objects.filter(sequence=sequence).select_related("step"):
        key = (message.step_id or 0, message.step.template_id if message.step else 0, message.variant_id or 0)
        events = events_of[message.pk]
        put(key, "reached", message.created_at)
        bounces = [e.occurred_at for e in events if e.type == "bounce"]
        bounced_at = min(bounces) if bounces else None
        if message.status == Message.Status.BOUNCED and bounced_at is None:
            bounced_at = message.sent_at or message.created_at
        sent_at = message.sent_at or (bounced_at if message.status == Message.Status.BOUNCED else None)
        if sent_at:
            put(key, "sent", sent_at)
            if bounced_at is None:
                put(key, "delivered", sent_at)
            else:
                put(key, "bounced", bounced_at)
        if message.status in (Message.Status.FAILED, Message.Status.CANCELLED):
            put(key, message.status, message.created_at)
        for metric, types in (("opened", ("open", "click")), ("clicked", ("click",))):
            human = [e.occurred_at for e in events if e.type in types and not e.is_machine]
            machine = [e.occurred_at for e in events if e.type in types and e.is_machine]
            if human:
                put(key, metric, min(human))
            elif machine:
                put(key, f"machine_{metric}", min(machine))
        for metric, kind in (("unsubscribed", "unsubscribe"), ("complained", "complaint")):
            times = [e.occurred_at for e in events if e.type == kind]
            if times:
                put(key, metric, min(times))
        first_click: dict[str, dt.datetime] = {}
        for event in events:
            if event.type in ("open", "click"):
                put(key, f"{'machine_' if event.is_machine else ''}{event.type}s_total", event.occurred_at)
            if event.type == "click" and event.url:
                put_link(
                    key[0], event.url, "machine_clicks_total" if event.is_machine else "clicks_total", event.occurred_at
                )
                if not event.is_machine and (
                    event.url not in first_click or event.occurred_at < first_click[event.url]
                ):
                    first_click[event.url] = event.occurred_at
        for url, when in first_click.items():
            put_link(key[0], url, "clicked", when)
    goal = sequence.goal
    for enrollment in Enrollment.objects.filter(sequence=sequence):
        put((0, 0, 0), "enrolled", enrollment.enrolled_at)
        if enrollment.exit_reason == Enrollment.ExitReason.GOAL_REACHED:
            put((0, 0, 0), "goal_reached", enrollment.finished_at)
            revenue = sum(
                (
                    revenue_of(e.properties) or Decimal(0)
                    for e in ContactEvent.objects.filter(
                        contact_id=enrollment.contact_id,
                        name=goal["name"],
                        occurred_at__gte=enrollment.enrolled_at,
                        occurred_at__lte=enrollment.finished_at,
                    )
                ),
                Decimal(0),
            )
            put((0, 0, 0), "revenue", enrollment.finished_at, revenue)
    return cells, links


def _rollups(sequence: Sequence) -> tuple[dict[tuple, Counter], dict[tuple, Counter]]:
    cells: dict[tuple, Counter] = {}
    for row in FunnelRollup.objects.filter(sequence=sequence).values():
        counts = Counter({m: row[m] for m in (*FUNNEL_METRICS, "revenue") if row[m]})
        if counts:
            key = (row["step_id"], row["template_id"], row["variant_id"], row["period"], int(row["bucket"].timestamp()))
            cells[key] = counts
    links: dict[tuple, Counter] = {}
    for row in LinkRollup.objects.filter(sequence=sequence).values():
        counts = Counter({m: row[m] for m in ("clicked", "clicks_total", "machine_clicks_total") if row[m]})
        if counts:
            links[(row["step_id"], row["url"], row["period"], int(row["bucket"].timestamp()))] = counts
    return cells, links


def _without_zeros(cells: dict[tuple, Counter]) -> dict[tuple, Counter]:
    found = {}
    for key, counts in cells.items():
        kept = Counter(
            {m: (Decimal(n).quantize(Decimal("0.01")) if m == "revenue" else n) for m, n in counts.items() if n}
        )
        if kept:
            found[key] = kept
    return found


def test_every_funnel_number_equals_a_recount_from_raw_events():
    rng = random.Random(20261201)
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2, delay=dt.timedelta(days=1))
    Sequence.objects.filter(pk=sequence.pk).update(goal={"type": "event", "name": "purchased"})
    sequence.refresh_from_db()
    contacts = Contact.objects.bulk_create(ContactFactory.build_batch(CONTACTS, organization=organization))
    sequence_services.enrollments_create(sequence=sequence, contacts=contacts)
    engine.advance_due_enrollments(limit=CONTACTS)
    first = list(Message.objects.filter(sequence=sequence).values_list("id", flat=True))
    assert len(first) == CONTACTS
    start = timezone.now()

    _claim_and_record(first, rng, start)
    # A flush part-way: later facts must correct what it counted, never count twice.
    services.rollups_flush(limit=3_000, max_batches=2)

    sent = _sent_messages(sequence)
    _events(sent, rng, 3_000)
    services.rollups_flush(limit=2_500, max_batches=1)
    _events(sent, rng, 1_500, earlier=True)  # late and out of order
    # Through the tracking services with signed tokens, as the pixel and redirect call them.
    for message in rng.sample(sent, 200):
        request = delivery_services.TrackedRequest(ip="203.0.113.9", user_agent=BROWSER, method="GET")
        assert delivery_services.open_record(token=signing.sign("open", message.pk), request=request)
        assert delivery_services.click_record(token=signing.sign("click", message.pk, 1), request=request) == LINKS[1]

    # Purchases end some enrollments at the goal, with revenue (some without, some not numeric).
    buyers = rng.sample(contacts, 400)
    contact_events_ingest(
        organization=organization,
        events=[
            NewContactEvent(
                index=index,
                name="purchased",
                occurred_at=timezone.now() - dt.timedelta(seconds=5),
                properties=rng.choice(
                    [{"revenue": round(rng.uniform(5, 300), 2)}, {"value": "19.99"}, {}, {"revenue": "n/a"}]
                ),
                contact_id=contact.pk,
            )
            for index, contact in enumerate(buyers)
        ],
    )
    # A day later the engine writes the second email for those still in; some are sent.
    engine.advance_due_enrollments(now=timezone.now() + dt.timedelta(days=1, minutes=1), limit=CONTACTS)
    second = list(
        Message.objects.filter(sequence=sequence, status=Message.Status.QUEUED)
        .exclude(id__in=first)
        .values_list("id", flat=True)
    )
    assert second
    _claim_and_record(second[: len(second) // 2], rng, start + dt.timedelta(days=1))
    # Staff remove a few contacts: their queued mail is cancelled.
    for enrollment in Enrollment.objects.filter(sequence=sequence, status=Enrollment.Status.ACTIVE)[:50]:
        sequence_services.enrollment_exit(enrollment=enrollment)
    _events(_sent_messages(sequence), rng, 1_000)

    assert services.rollups_flush() > 0
    assert services.rollups_flush() == 0  # nothing left pending

    expected_cells, expected_links = _recount(sequence)
    cells, links = _rollups(sequence)
    assert _without_zeros(cells) == _without_zeros(expected_cells)
    assert links == _without_zeros(expected_links)

    # The funnel the API serves sums the same cells.
    funnel = selectors.sequence_funnel(sequence_id=sequence.pk)
    totals = Counter()
    for (step_id, _, _, period, _), counts in expected_cells.items():
        if period == Period.DAY:
            for metric, n in counts.items():
                if step_id == 0 or metric not in ("enrolled", "goal_reached", "revenue"):
                    totals[metric] += n
    for metric in FUNNEL_METRICS:
        assert funnel.totals.counts[metric] == totals[metric], metric
    assert funnel.totals.counts["revenue"] == Decimal(totals["revenue"]).quantize(Decimal("0.01"))
    assert funnel.totals.counts["goal_reached"] > 0 and funnel.totals.counts["revenue"] > 0
    hourly = selectors.sequence_funnel(sequence_id=sequence.pk, period=Period.HOUR)
    assert hourly.totals.counts == funnel.totals.counts
    assert sum(bucket.counts["opened"] for bucket in hourly.series) == funnel.totals.counts["opened"]
    # Every kind of number was exercised.
    for metric in FUNNEL_METRICS:
        if metric != "assigned":
            assert funnel.totals.counts[metric] > 0, metric
