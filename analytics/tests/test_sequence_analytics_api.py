"""GET /api/v1/email-sequences/{id}/analytics serves the funnel from the rollups: per step,
template, variant and link, in total and as hour or day series, with rates; in a fixed number of
queries whatever the volume, and only for the caller's organization."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from analytics import services
from api.tests.clients import key_client
from delivery.models import Event, Message
from delivery.tests.factories import EventFactory, MessageFactory, email_sequence, email_step, enrollment_for
from experiments.models import Experiment, Variant
from organizations.models import ApiKey
from organizations.tests.factories import OrganizationFactory
from sequences.models import Sequence
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

OPEN, CLICK = Event.Type.OPEN, Event.Type.CLICK
MONDAY = dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.UTC)
URL = "https://example.com/one"


def events(message: Message, *kinds: tuple[str, bool], at: dt.datetime | None = None) -> None:
    for kind, is_machine in kinds:
        event = EventFactory(
            message=message,
            type=kind,
            is_machine=is_machine,
            url=URL if kind == CLICK else "",
            occurred_at=at or message.sent_at or MONDAY,
        )
        services.facts_add(organization_id=event.organization_id, kind="event", object_ids=[event.pk])


def message(enrollment, step, status=Message.Status.SENT, sent_at=MONDAY, **fields) -> Message:
    made = MessageFactory(enrollment=enrollment, step=step, status=status, sent_at=sent_at, **fields)
    services.facts_add(organization_id=made.organization_id, kind="message", object_ids=[made.pk])
    return made


@pytest.fixture
def sequence() -> Sequence:
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2)
    first, second = email_step(sequence, 1), email_step(sequence, 2)
    enrollments = [
        enrollment_for(sequence, ContactFactory(organization=organization), enrolled_at=MONDAY) for _ in range(6)
    ]
    services.facts_add(organization_id=organization.pk, kind="enrolled", object_ids=[e.pk for e in enrollments])
    bounced, failed = Message.Status.BOUNCED, Message.Status.FAILED
    m1 = message(enrollments[0], first)
    m2 = message(enrollments[1], first)
    m3 = message(enrollments[2], first, sent_at=MONDAY + dt.timedelta(days=1))
    m4 = message(enrollments[3], first, status=bounced, sent_at=None)
    m5 = message(enrollments[4], first)
    message(enrollments[5], first, status=failed, sent_at=None)
    events(m1, (OPEN, False), (OPEN, False), (OPEN, True))
    events(m2, (OPEN, True), (CLICK, True))
    events(m3, (CLICK, False), (CLICK, True))
    events(m4, (Event.Type.BOUNCE, False), at=MONDAY)  # recorded with the bounce itself
    events(m5, (Event.Type.BOUNCE, False), at=MONDAY + dt.timedelta(hours=5))  # reported later
    message(enrollments[0], second, status=Message.Status.QUEUED, sent_at=None)
    message(enrollments[1], second, status=Message.Status.CANCELLED, sent_at=None)
    m9 = message(enrollments[2], second, sent_at=MONDAY + dt.timedelta(days=2))
    events(m9, (Event.Type.UNSUBSCRIBE, False), (Event.Type.COMPLAINT, False))
    # Another sequence's mail counts nowhere here.
    other = email_sequence(organization, name="Other")
    noise = message(enrollment_for(other, ContactFactory(organization=organization)), email_step(other, 1))
    events(noise, (OPEN, False))
    services.rollups_flush()
    return sequence


def get(sequence: Sequence, query: str = "", organization=None):
    client = key_client(organization or sequence.organization, ApiKey.Scope.READ)
    return client.get(f"/api/v1/email-sequences/{sequence.pk}/analytics{query}")


def test_each_step_counts_distinct_messages_by_what_happened_to_them(sequence):
    response = get(sequence)

    assert response.status_code == 200
    body = response.json()
    first, second = body["steps"]
    assert (first["position"], second["position"]) == (1, 3)
    picked = ("reached", "sent", "delivered", "bounced", "failed", "cancelled", "opened", "machine_opened")
    assert {k: first["counts"][k] for k in picked} == {
        "reached": 6,
        "sent": 5,
        "delivered": 3,
        "bounced": 2,
        "failed": 1,
        "cancelled": 0,
        "opened": 2,
        "machine_opened": 1,
    }
    assert (first["counts"]["clicked"], first["counts"]["machine_clicked"]) == (1, 1)
    assert (first["counts"]["opens_total"], first["counts"]["machine_opens_total"]) == (2, 2)
    assert first["rates"]["delivery_rate"] == pytest.approx(3 / 5)
    assert first["rates"]["open_rate"] == pytest.approx(2 / 3)
    assert first["rates"]["click_to_open_rate"] == pytest.approx(1 / 2)
    assert {k: second["counts"][k] for k in ("reached", "sent", "cancelled", "unsubscribed", "complained")} == {
        "reached": 3,
        "sent": 1,
        "cancelled": 1,
        "unsubscribed": 1,
        "complained": 1,
    }
    assert second["rates"]["goal_rate"] is None  # no enrollments at step level


def test_totals_links_templates_and_series(sequence):
    body = get(sequence).json()

    totals = body["totals"]["counts"]
    assert (totals["enrolled"], totals["reached"], totals["sent"], totals["delivered"], totals["opened"]) == (
        6,
        9,
        6,
        4,
        2,
    )
    assert body["links"] == [
        {"step_id": body["steps"][0]["step_id"], "url": URL, "clicked": 1, "clicks_total": 1, "machine_clicks_total": 2}
    ]
    assert sorted(t["counts"]["reached"] for t in body["templates"]) == [3, 6]
    days = {bucket["start"][:10]: bucket["counts"] for bucket in body["series"]}
    assert days["2026-11-30"]["sent"] == 4 and days["2026-12-01"]["sent"] == 1 and days["2026-12-02"]["sent"] == 1


def test_hourly_series_within_a_span(sequence):
    body = get(sequence, "?period=hour&since=2026-11-30T00:00:00Z&until=2026-12-01T00:00:00Z").json()

    hours = {bucket["start"]: bucket["counts"] for bucket in body["series"]}
    assert hours["2026-11-30T09:00:00Z"]["bounced"] == 1
    assert hours["2026-11-30T14:00:00Z"]["bounced"] == 1  # the late report, at its own hour
    assert body["totals"]["counts"]["sent"] == 4  # buckets of that day only


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?period=week", "period"),
        ("?since=yesterday", "since"),
        ("?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z", "until"),
        ("?period=hour&since=2026-01-01T00:00:00Z&until=2026-12-01T00:00:00Z", "since"),
        ("?period=hour&until=0001-01-03T00:00:00Z", "until"),
    ],
)
def test_bad_queries_get_a_problem_naming_the_field(sequence, query, field):
    response = get(sequence, query)

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert field in str(response.json())


def test_another_organizations_sequence_is_not_found(sequence):
    assert get(sequence, organization=OrganizationFactory()).status_code == 404


def test_variants_are_counted_apart(sequence):
    step = email_step(sequence, 1)
    experiment = Experiment.objects.create(organization=sequence.organization, step=step)
    a = Variant.objects.create(organization=sequence.organization, experiment=experiment, name="A")
    b = Variant.objects.create(organization=sequence.organization, experiment=experiment, name="B", subject="Hi")
    for variant in (a, b, b):
        enrollment = enrollment_for(sequence, ContactFactory(organization=sequence.organization))
        made = message(enrollment, step, variant=variant)
        events(made, (CLICK, False))
    services.rollups_flush()

    variants = {v["variant_id"]: v["counts"] for v in get(sequence).json()["variants"]}
    assert (variants[a.pk]["sent"], variants[a.pk]["clicked"]) == (1, 1)
    assert (variants[b.pk]["sent"], variants[b.pk]["clicked"]) == (2, 2)


def test_reading_takes_the_same_queries_whatever_the_volume(sequence, django_assert_max_num_queries):
    client = key_client(sequence.organization, ApiKey.Scope.READ)
    with django_assert_max_num_queries(12):
        assert client.get(f"/api/v1/email-sequences/{sequence.pk}/analytics").status_code == 200


def test_a_sequence_without_mail_has_zero_counts():
    sequence = email_sequence(OrganizationFactory())

    body = get(sequence).json()

    assert body["totals"]["counts"]["reached"] == 0 and body["steps"] == [] and body["series"] == []
    assert body["totals"]["rates"]["open_rate"] is None


def test_a_fresh_timestamp_default_is_used_for_hourly_series(sequence):
    body = get(sequence, "?period=hour").json()

    since = dt.datetime.fromisoformat(body["since"].replace("Z", "+00:00"))
    assert timezone.now() - since > dt.timedelta(days=6)
