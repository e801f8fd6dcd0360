"""With Redis, pixel and click hits are buffered in a Redis list and written in batches by a
drainer: nothing is lost when the database is away, and nothing is written twice when a drainer
dies between writing a batch and trimming it from the list."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict

import pytest
from django.test import Client
from django.utils import timezone

from analytics import intake, services
from analytics.models import FunnelRollup
from conftest import USES_REDIS
from delivery.composer import click_url, open_pixel_url
from delivery.models import Event, Message
from delivery.tests.factories import BROWSER, MessageFactory, email_sequence, email_step, enrollment_for
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not USES_REDIS, reason="needs REDIS_URL (CI sets it): the tracking buffer lives in Redis"),
]


@pytest.fixture
def buffer(settings):
    settings.TRACKING_BUFFER = True
    settings.TRACKING_DRAIN_SECONDS = 3600  # no background drain: the test drains
    client = intake._redis()
    client.delete(intake.HITS_KEY, intake.LOCK_KEY)
    intake._drainer().wake = lambda: None  # the test is the drainer
    yield client
    client.delete(intake.HITS_KEY, intake.LOCK_KEY)
    del intake._drainer().wake


@pytest.fixture
def delivered_message() -> Message:
    organization = OrganizationFactory()
    sequence = email_sequence(organization)
    enrollment = enrollment_for(sequence, ContactFactory(organization=organization))
    return MessageFactory(
        enrollment=enrollment,
        step=email_step(sequence),
        sent_at=timezone.now() - dt.timedelta(hours=1),
        links=["https://shop.example/a"],
    )


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_hits_wait_in_redis_until_drained_then_count_once(buffer, delivered_message: Message):
    client = Client()
    for _ in range(3):
        assert client.get(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER).status_code == 200
    response = client.get(path_of(click_url(delivered_message.pk, 0)), HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 302 and response["Location"] == delivered_message.links[0]
    assert not Event.objects.filter(message=delivered_message).exists()
    assert intake.hits_pending() == 4

    assert intake.hits_drain() == 4
    services.rollups_flush()

    assert sorted(Event.objects.filter(message=delivered_message).values_list("type", flat=True)) == [
        "click",
        "open",
        "open",
        "open",
    ]
    totals = FunnelRollup.objects.filter(sequence_id=delivered_message.sequence_id, period="day")
    assert sum(totals.values_list("opens_total", flat=True)) == 3
    assert sum(totals.values_list("opened", flat=True)) == 1
    assert intake.hits_pending() == 0


def test_a_batch_written_twice_counts_once(buffer, delivered_message: Message):
    hit = intake.Hit.new(
        kind="open", message_id=delivered_message.pk, ip="198.51.100.1", user_agent=BROWSER, method="GET"
    )
    # A drainer wrote this batch and died before trimming it: the next drain sees it again.
    assert intake.hits_apply([hit]) == 1
    buffer.rpush(intake.HITS_KEY, json.dumps(asdict(hit)))

    assert intake.hits_drain() == 1

    assert Event.objects.filter(message=delivered_message).count() == 1


def test_hits_stay_buffered_while_the_database_refuses_them(buffer, delivered_message: Message, monkeypatch):
    intake.hit_record(
        intake.Hit.new(kind="open", message_id=delivered_message.pk, ip=None, user_agent=BROWSER, method="GET")
    )

    def database_down(hits):
        list(hits)
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(intake, "hits_apply", database_down)
    with pytest.raises(RuntimeError):
        intake.hits_drain()
    assert intake.hits_pending() == 1
    monkeypatch.undo()

    assert intake.hits_drain() == 1
    assert Event.objects.filter(message=delivered_message).count() == 1


def test_an_unreadable_hit_is_dropped_and_the_rest_written(buffer, delivered_message: Message):
    buffer.rpush(intake.HITS_KEY, b"not json")
    intake.hit_record(
        intake.Hit.new(kind="open", message_id=delivered_message.pk, ip=None, user_agent=BROWSER, method="GET")
    )

    assert intake.hits_drain() == 2
    assert Event.objects.filter(message=delivered_message).count() == 1


def test_a_drainer_that_lost_its_lock_leaves_the_list_to_the_next(buffer, delivered_message: Message, monkeypatch):
    for _ in range(4):
        intake.hit_record(
            intake.Hit.new(kind="open", message_id=delivered_message.pk, ip=None, user_agent=BROWSER, method="GET")
        )
    monkeypatch.setattr(intake, "DRAIN_BATCH", 2)
    apply = intake._apply_setting_aside_bad_hits

    def slow_batch(hits):
        apply(hits)
        buffer.set(intake.LOCK_KEY, "another drainer")  # our lock expired and was taken over

    monkeypatch.setattr(intake, "_apply_setting_aside_bad_hits", slow_batch)
    assert intake.hits_drain() == 0
    assert intake.hits_pending() == 4  # nothing trimmed: the batch is the next drainer's to trim
    monkeypatch.undo()
    buffer.delete(intake.LOCK_KEY)

    assert intake.hits_drain() == 4
    assert Event.objects.filter(message=delivered_message).count() == 4  # each once
    assert intake.hits_pending() == 0


def test_a_hit_the_database_refuses_is_set_aside_and_the_rest_written(buffer, delivered_message: Message):
    good = intake.Hit.new(kind="open", message_id=delivered_message.pk, ip=None, user_agent=BROWSER, method="GET")
    bad = dict(asdict(good), id="bad", user_agent="evil\x00agent")  # PostgreSQL text cannot hold NUL
    buffer.rpush(intake.HITS_KEY, json.dumps(bad), json.dumps(asdict(good)))

    assert intake.hits_drain() == 2

    assert intake.hits_pending() == 0
    assert Event.objects.filter(message=delivered_message, dedupe_key=f"hit:{good.id}").count() == 1


def test_a_click_that_carries_its_target_costs_no_database_query(
    buffer, delivered_message: Message, django_assert_num_queries
):
    path = path_of(click_url(delivered_message.pk, 0, delivered_message.links[0]))

    with django_assert_num_queries(0):
        response = Client().get(path, HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 302 and response["Location"] == delivered_message.links[0]
    assert intake.hits_drain() == 1
    assert Event.objects.get(message=delivered_message).url == delivered_message.links[0]
