"""How the engine claims and writes: due enrollments oldest first, at most a batch at a time,
rows locked by another ticker skipped rather than waited for; a batch's writes grouped into a
fixed number of statements whatever its size; and sends handed over only once the batch has
committed."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import requires_postgres
from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence
from sequences.tests.helpers import captured_mail, delay_step, draft_sequence, email_step, utc
from subscribers.tests.factories import ContactFactory

NOW = utc(2025, 3, 3, 12)


def email_then_wait(organization=None) -> Sequence:
    sequence = draft_sequence(organization or OrganizationFactory())
    email_step(sequence, "Hello")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Again")
    return services.sequence_activate(sequence=sequence)


def enroll(sequence: Sequence, count: int, *, now: dt.datetime = NOW) -> list[Enrollment]:
    contacts = ContactFactory.create_batch(count, organization=sequence.organization)
    return services.enrollments_create(sequence=sequence, contacts=contacts, now=now).enrolled


@pytest.mark.django_db
def test_the_claim_takes_the_longest_waiting_enrollments_first_up_to_the_limit() -> None:
    sequence = email_then_wait()
    enrollments = enroll(sequence, 8)
    for minutes, enrollment in zip([5, 40, 1, 30, 20, 2, 10, 3], enrollments, strict=True):
        Enrollment.objects.filter(pk=enrollment.pk).update(next_run_at=NOW - dt.timedelta(minutes=minutes))

    report = engine.advance_due_enrollments(now=NOW, limit=3)

    assert report.claimed == 3
    advanced = set(Message.objects.values_list("enrollment", flat=True))
    assert advanced == {enrollments[1].pk, enrollments[3].pk, enrollments[4].pk}


@pytest.mark.django_db
def test_enrollments_not_yet_due_are_left_alone() -> None:
    sequence = email_then_wait()
    [due] = enroll(sequence, 1, now=NOW)
    [later] = enroll(sequence, 1, now=NOW + dt.timedelta(seconds=1))

    report = engine.advance_due_enrollments(now=NOW)

    assert report.claimed == 1
    assert list(Message.objects.values_list("enrollment", flat=True)) == [due.pk]
    later.refresh_from_db()
    assert later.next_run_at == NOW + dt.timedelta(seconds=1)
    assert later.current_step.name == "Hello"


@pytest.mark.django_db
def test_one_tick_works_through_batch_after_batch_until_nothing_is_due(django_capture_on_commit_callbacks) -> None:
    sequence = email_then_wait()
    enroll(sequence, 10, now=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        report = engine.tick(batch_size=4)

    assert report.claimed == 10
    assert report.messages_created == 10
    assert report.more_due is False
    assert len(captured_mail(sequence.organization)) == 10


def claim_statements(count: int) -> list[str]:
    sequence = email_then_wait()
    enroll(sequence, count)
    with CaptureQueriesContext(connection) as queries:
        report = engine.advance_due_enrollments(now=NOW)
    assert report.claimed == count
    return [query["sql"] for query in queries.captured_queries]


@pytest.mark.django_db
def test_a_batch_costs_the_same_statements_whatever_its_size() -> None:
    small = claim_statements(3)
    large = claim_statements(40)

    assert len(large) == len(small)
    enrollment_updates = [sql for sql in large if sql.startswith('UPDATE "sequences_enrollment"')]
    message_inserts = [sql for sql in large if sql.startswith('INSERT INTO "delivery_message"')]
    assert len(enrollment_updates) == 1
    assert len(message_inserts) == 1
    assert Message.objects.count() == 43


@pytest.mark.django_db
def test_sends_are_handed_over_only_once_the_batch_commits(django_capture_on_commit_callbacks) -> None:
    sequence = email_then_wait()
    enroll(sequence, 3, now=timezone.now())

    with django_capture_on_commit_callbacks(execute=False) as pending:
        engine.advance_due_enrollments()
    assert len(pending) == 1
    assert captured_mail(sequence.organization) == []
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.QUEUED}

    pending[0]()

    assert len(captured_mail(sequence.organization)) == 3
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}


@pytest.mark.django_db
def test_a_batch_that_rolls_back_leaves_no_trace_and_sends_nothing(django_capture_on_commit_callbacks) -> None:
    sequence = email_then_wait()
    enrollments = enroll(sequence, 3, now=timezone.now())
    first_step = enrollments[0].current_step

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        engine.advance_due_enrollments()
        raise RuntimeError("the worker died before the commit")

    assert captured_mail(sequence.organization) == []
    assert not Message.objects.exists()
    assert set(Enrollment.objects.values_list("current_step", flat=True)) == {first_step.pk}


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_an_enrollment_locked_by_another_ticker_is_skipped_not_waited_for() -> None:
    sequence = email_then_wait()
    enrollments = enroll(sequence, 5, now=timezone.now())
    held = enrollments[0]
    locked, release = threading.Event(), threading.Event()

    def other_ticker() -> None:
        try:
            with transaction.atomic():
                Enrollment.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=20)
        finally:
            connection.close()

    thread = threading.Thread(target=other_ticker)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        started = time.monotonic()
        report = engine.advance_due_enrollments()
        elapsed = time.monotonic() - started
    finally:
        release.set()
        thread.join(timeout=20)

    assert report.claimed == 4
    assert elapsed < 5
    assert held.pk not in set(Message.objects.values_list("enrollment", flat=True))
    assert engine.advance_due_enrollments().claimed == 1
