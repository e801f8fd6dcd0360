"""With TRACKING_BUFFER on, pixel and click hits are appended to a spool of files (one segment per
process, locked by its writer while open) and written to the database in batches by a drainer:
nothing is lost when the database is away or a process dies, nothing is written twice when a
drainer dies between writing a segment and deleting it, and a segment still being written is
never taken. Real files, real flock, real processes."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from analytics import intake, live, services, tasks
from analytics.models import FunnelRollup
from conftest import requires_postgres, wait_until
from delivery.composer import click_url, open_pixel_url
from delivery.models import Event, Message
from delivery.tests.factories import BROWSER, MessageFactory, email_sequence, email_step, enrollment_for
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def spool(settings, tmp_path: Path) -> Iterator[Path]:
    """The buffer on, with a spool of this test's own; the test is the drainer."""
    settings.TRACKING_BUFFER = True
    settings.TRACKING_SPOOL_DIR = tmp_path / "spool"
    settings.TRACKING_DRAIN_SECONDS = 3600  # no background drain: the test drains
    intake._drainer().wake = lambda: None  # no drainer thread either
    try:
        yield tmp_path / "spool"
    finally:
        del intake._drainer().wake
        intake._writer.rotate()  # this process's segment is closed: no descriptor outlives the test


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


def open_hit(message: Message) -> intake.Hit:
    return intake.Hit.new(kind="open", message_id=message.pk, ip="198.51.100.1", user_agent=BROWSER, method="GET")


def segments(spool: Path) -> list[Path]:
    return sorted(spool.glob(f"*{intake.SEGMENT_SUFFIX}"))


def complete_segment(spool: Path, *lines: bytes) -> Path:
    """A segment as a writer leaves it once closed: created under a temporary name, locked,
    given its drainable name, written, closed (which releases the lock)."""
    spool.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{uuid.uuid4().hex}"
    fd = os.open(spool / f".{name}.new", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(spool / f".{name}.new", spool / f"{name}{intake.SEGMENT_SUFFIX}")
        for line in lines:
            os.write(fd, line)
    finally:
        os.close(fd)
    return spool / f"{name}{intake.SEGMENT_SUFFIX}"


def test_hits_wait_in_the_spool_until_drained_then_count_once(spool: Path, delivered_message: Message):
    client = Client()
    for _ in range(3):
        assert client.get(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER).status_code == 200
    response = client.get(path_of(click_url(delivered_message.pk, 0)), HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 302 and response["Location"] == delivered_message.links[0]
    assert not Event.objects.filter(message=delivered_message).exists()
    assert intake.hits_pending() == 4

    intake._writer.rotate()
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
    assert segments(spool) == []  # deleted once written
    assert intake.hits_drain() == 0


def test_a_segment_written_twice_counts_once(spool: Path, delivered_message: Message):
    hit = open_hit(delivered_message)
    # A drainer wrote this segment and died before deleting it: the next drain sees it again.
    assert intake.hits_apply([hit]) == 1
    complete_segment(spool, intake.hit_line(hit))

    assert intake.hits_drain() == 1

    assert Event.objects.filter(message=delivered_message).count() == 1
    assert segments(spool) == []


def test_hits_stay_in_the_spool_while_the_database_refuses_them(spool: Path, delivered_message: Message, monkeypatch):
    intake.hit_record(open_hit(delivered_message))
    intake._writer.rotate()
    [segment] = segments(spool)

    def database_down(hits):
        list(hits)
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(intake, "hits_apply", database_down)
    with pytest.raises(RuntimeError):
        intake.hits_drain()
    assert intake.hits_pending() == 1
    assert segments(spool) == [segment]
    monkeypatch.undo()

    assert intake.hits_drain() == 1  # the failed drain let go of the segment and of the spool
    assert Event.objects.filter(message=delivered_message).count() == 1
    assert segments(spool) == []


@pytest.mark.parametrize(
    "unreadable",
    [
        pytest.param(lambda good: [b"not json\n", good], id="not-json"),
        # A short write (a full disk) ends its segment with part of a line.
        pytest.param(lambda good: [good, good[:20]], id="torn-last-line"),
    ],
)
def test_an_unreadable_line_is_dropped_and_the_rest_written(
    spool: Path, delivered_message: Message, unreadable, caplog
):
    good = open_hit(delivered_message)
    complete_segment(spool, *unreadable(intake.hit_line(good)))

    with caplog.at_level(logging.ERROR, logger="analytics.intake"):
        assert intake.hits_drain() == 2  # both lines taken

    assert list(Event.objects.filter(message=delivered_message).values_list("dedupe_key", flat=True)) == [
        f"hit:{good.id}"
    ]
    assert "dropping an unreadable tracking hit" in caplog.text
    assert segments(spool) == []


WRITER_THAT_STAYS = """
import fcntl, os, sys, time
spool, line = sys.argv[1], sys.argv[2].encode()
name = f"{os.getpid()}-writer"
temporary = os.path.join(spool, f".{name}.new")
fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.rename(temporary, os.path.join(spool, name + ".hits"))
os.write(fd, line)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_segment_is_taken_only_once_its_writer_is_gone(spool: Path, delivered_message: Message):
    spool.mkdir(parents=True)
    line = intake.hit_line(open_hit(delivered_message))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_THAT_STAYS, str(spool), line.decode()], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline() == "ready\n"
        assert intake.hits_pending() == 1

        assert intake.hits_drain() == 0  # its writer holds it: maybe more is coming
        assert not Event.objects.filter(message=delivered_message).exists()
        assert len(segments(spool)) == 1

        writer.kill()  # kill -9: no clean-up of its own; the kernel drops its lock
        assert writer.wait(timeout=10) == -9
    finally:
        writer.kill()
        writer.wait(timeout=10)
        writer.stdout.close()

    assert intake.hits_drain() == 1
    assert Event.objects.filter(message=delivered_message).count() == 1
    assert segments(spool) == []


def test_one_drainer_at_a_time_per_spool(spool: Path, delivered_message: Message):
    complete_segment(spool, intake.hit_line(open_hit(delivered_message)))
    other_drainer = os.open(spool / intake.DRAIN_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(other_drainer, fcntl.LOCK_EX | fcntl.LOCK_NB)

        assert intake.hits_drain() == 0

        assert len(segments(spool)) == 1
        assert not Event.objects.filter(message=delivered_message).exists()
    finally:
        os.close(other_drainer)

    assert intake.hits_drain() == 1
    assert Event.objects.filter(message=delivered_message).count() == 1
    assert segments(spool) == []


@pytest.mark.parametrize(
    "refused",
    [
        # PostgreSQL text cannot hold NUL (SQLite's can: there it is no refusal). Hit.new strips
        # NUL, so the hit is built as a line holding one would be read.
        pytest.param({"user_agent": "evil\x00agent"}, marks=requires_postgres, id="nul-in-user-agent"),
        pytest.param({"ip": "999.0.0.1"}, marks=requires_postgres, id="not-an-address"),  # an inet column
    ],
)
def test_a_hit_the_database_refuses_is_set_aside_and_the_rest_written(
    spool: Path, delivered_message: Message, refused: dict, caplog
):
    good = open_hit(delivered_message)
    bad = replace(open_hit(delivered_message), **refused)
    complete_segment(spool, intake.hit_line(bad), intake.hit_line(good))

    with caplog.at_level(logging.ERROR, logger="analytics.intake"):
        assert intake.hits_drain() == 2

    assert intake.hits_pending() == 0
    assert list(Event.objects.filter(message=delivered_message).values_list("dedupe_key", flat=True)) == [
        f"hit:{good.id}"
    ]
    assert "setting aside a tracking hit the database refuses" in caplog.text
    assert bad.id in caplog.text


def test_a_click_that_carries_its_target_costs_no_database_query(
    spool: Path, delivered_message: Message, django_assert_num_queries
):
    path = path_of(click_url(delivered_message.pk, 0, delivered_message.links[0]))

    with django_assert_num_queries(0):
        response = Client().get(path, HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 302 and response["Location"] == delivered_message.links[0]
    intake._writer.rotate()
    assert intake.hits_drain() == 1
    assert Event.objects.get(message=delivered_message).url == delivered_message.links[0]


def test_the_writer_starts_a_new_segment_once_its_segment_is_old(spool: Path, delivered_message: Message, monkeypatch):
    monkeypatch.setattr(intake, "SEGMENT_SECONDS", 0)
    hits = [open_hit(delivered_message) for _ in range(3)]
    for hit in hits:
        intake.hit_record(hit)

    assert len(segments(spool)) == 3  # two complete, one still open

    assert intake.hits_drain() == 2  # the complete ones
    [still_open] = segments(spool)
    assert still_open.read_bytes() == intake.hit_line(hits[2])
    assert set(Event.objects.values_list("dedupe_key", flat=True)) == {f"hit:{hit.id}" for hit in hits[:2]}

    intake._writer.rotate()
    assert intake.hits_drain() == 1
    assert Event.objects.filter(message=delivered_message).count() == 3
    assert segments(spool) == []


def test_a_hit_is_written_at_once_when_the_spool_cannot_be_written(
    spool: Path, settings, tmp_path: Path, delivered_message: Message, caplog
):
    (tmp_path / "afile").write_text("not a directory")
    settings.TRACKING_SPOOL_DIR = tmp_path / "afile" / "spool"

    with caplog.at_level(logging.WARNING, logger="analytics.intake"):
        response = Client().get(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 200
    assert Event.objects.filter(message=delivered_message, type="open").count() == 1
    assert "tracking spool unwritable" in caplog.text
    assert intake.hits_pending() == 0


@pytest.fixture
def drainer_thread(settings, tmp_path: Path) -> Iterator[Path]:
    """The buffer on, drained by this process's drainer thread (woken by the first hit of a
    segment), stopped at the end: it would otherwise rotate and drain later tests' spools with a
    connection that cannot see their (uncommitted) messages."""
    settings.TRACKING_BUFFER = True
    settings.TRACKING_SPOOL_DIR = tmp_path / "spool"
    settings.TRACKING_DRAIN_SECONDS = 0.1
    try:
        yield tmp_path / "spool"
    finally:
        intake._drainer().stop()
        intake._writer.rotate()


@pytest.mark.django_db(transaction=True)  # the thread has a connection of its own: it sees committed data
def test_the_drainer_thread_writes_hits_by_itself(drainer_thread: Path, delivered_message: Message):
    response = Client().get(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 200

    # The file system first: SQLite's shared in-memory test database locks whole tables, so the
    # test reads the database only once the thread is done writing (a segment is deleted after
    # its hits are committed).
    wait_until(lambda: intake.hits_pending() == 0 and not segments(drainer_thread), timeout=5, what="the drain")
    assert Event.objects.filter(message=delivered_message, type="open").count() == 1


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'["open",1,"soon",null,"UA","GET","","x1"]', id="text-for-a-time"),
        pytest.param(b'["open",1,1.5,null,"UA","GET",""]', id="a-field-short"),
        pytest.param(b'{"kind":"open"}', id="not-an-array"),
        pytest.param(b'["open",true,1.5,null,"UA","GET","","x1"]', id="boolean-for-an-id"),
        # Well-formed, but no hit could carry them: each would make the write fail every time.
        pytest.param(b'["open",1,1e20,null,"UA","GET","","x1"]', id="a-time-beyond-any-date"),
        pytest.param(b'["open",1,Infinity,null,"UA","GET","","x1"]', id="an-infinite-time"),
        pytest.param(b'["open",1180591620717411303424,1.5,null,"UA","GET","","x1"]', id="an-id-beyond-bigint"),
        pytest.param(b'["open",1,1.5,null,"UA","GET","","' + b"y" * 300 + b'"]', id="an-overlong-hit-id"),
        pytest.param(b'["bounce",1,1.5,null,"UA","GET","","x1"]', id="not-a-tracking-hit"),
    ],
)
def test_a_line_of_the_wrong_shape_is_dropped_and_does_not_hold_up_the_spool(
    spool: Path, delivered_message: Message, line: bytes, caplog
):
    good = intake.Hit.new(kind="open", message_id=delivered_message.pk, ip=None, user_agent=BROWSER, method="GET")
    complete_segment(spool, line + b"\n", intake.hit_line(good))

    with caplog.at_level(logging.ERROR, logger="analytics.intake"):
        assert intake.hits_drain() == 2

    assert "unreadable tracking hit" in caplog.text
    assert Event.objects.filter(message=delivered_message, dedupe_key=f"hit:{good.id}").count() == 1
    assert intake.hits_pending() == 0


def test_the_periodic_flush_folds_facts_even_when_the_hits_cannot_be_written(
    spool: Path, delivered_message: Message, monkeypatch
):
    def database_refuses(hits):
        raise RuntimeError("hits table locked")

    complete_segment(spool, intake.hit_line(open_hit(delivered_message)))
    services.facts_add(
        organization_id=delivered_message.organization_id, kind="message", object_ids=[delivered_message.pk]
    )
    monkeypatch.setattr(intake, "hits_apply", database_refuses)

    result = tasks.rollups_flush()

    assert result == {"hits": 0, "facts": 1}
    assert len(segments(spool)) == 1  # kept for the next drain


def test_hits_apply_counts_a_hit_twice_in_one_batch_once_and_publishes_what_it_stored(
    delivered_message: Message, monkeypatch, django_capture_on_commit_callbacks
):
    published: list[dict] = []
    monkeypatch.setattr(live, "events_publish", lambda payloads: published.extend(payloads))
    hit, other = open_hit(delivered_message), open_hit(delivered_message)

    with django_capture_on_commit_callbacks(execute=True):
        assert intake.hits_apply([hit, hit, other]) == 2

    stored = {event.dedupe_key: event for event in Event.objects.filter(message=delivered_message)}
    assert sorted(stored) == sorted([f"hit:{hit.id}", f"hit:{other.id}"])
    assert len(published) == 2
    for payload in published:
        assert tuple(payload) == live.EVENT_FIELDS
        event = next(event for event in stored.values() if event.occurred_at.isoformat() == payload["occurred_at"])
        assert payload["message_id"] == delivered_message.pk and payload["type"] == "open"
        assert payload["is_machine"] is event.is_machine
        assert payload["sequence_id"] == delivered_message.sequence_id


def test_a_process_forked_during_a_drain_does_not_keep_the_spool_locked(spool: Path, delivered_message: Message):
    complete_segment(spool, intake.hit_line(open_hit(delivered_message)))
    lock = intake._drain_open(spool / intake.DRAIN_LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as a drain in another thread holds it
    ready, started = os.pipe()
    child = os.fork()
    if child == 0:  # forked meanwhile (by another thread): lives on, touches nothing
        os.write(started, b"1")  # past fork() (and what it runs in the child)
        time.sleep(5)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"1"
        intake._drain_close(lock)  # the drain ends

        assert intake.hits_drain() == 1  # while the child lives
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(ready)
        os.close(started)


def test_an_unusable_spool_does_not_stop_the_periodic_flush(spool: Path, settings, tmp_path: Path, caplog):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    settings.TRACKING_SPOOL_DIR = blocker / "spool"

    with caplog.at_level(logging.WARNING, logger="analytics.intake"):
        result = tasks.rollups_flush()

    assert result["hits"] == 0
    assert "unusable" in caplog.text


def test_segments_left_when_the_buffer_was_turned_off_are_still_drained(
    spool: Path, settings, delivered_message: Message
):
    hit = intake.Hit.new(kind="open", message_id=delivered_message.pk, ip=None, user_agent=BROWSER, method="GET")
    complete_segment(spool, intake.hit_line(hit))
    settings.TRACKING_BUFFER = False

    assert intake.hits_drain() == 1
    assert Event.objects.filter(message=delivered_message).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_stopped_drainer_thread_is_replaced_at_the_next_hit(drainer_thread: Path, delivered_message: Message):
    client = Client()
    assert client.get(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER).status_code == 200
    wait_until(lambda: intake.hits_pending() == 0 and not segments(drainer_thread), timeout=5, what="the first drain")
    intake._drainer().stop()

    assert client.get(path_of(open_pixel_url(delivered_message.pk)), HTTP_USER_AGENT=BROWSER).status_code == 200

    wait_until(lambda: intake.hits_pending() == 0 and not segments(drainer_thread), timeout=5, what="a new thread")
    assert Event.objects.filter(message=delivered_message, type="open").count() == 2


def test_a_drainer_thread_that_did_not_stop_in_time_does_not_stop_its_successor(settings, tmp_path, monkeypatch):
    settings.TRACKING_SPOOL_DIR = tmp_path / "spool"
    settings.TRACKING_DRAIN_SECONDS = 0.05
    entered, release = threading.Event(), threading.Event()
    drains: list[int] = []

    def slow_drain() -> int:
        drains.append(1)
        entered.set()
        release.wait(5)
        return 0

    monkeypatch.setattr(intake, "hits_drain", slow_drain)
    drainer = intake._Drainer()
    drainer.wake()
    assert entered.wait(5)
    with pytest.raises(RuntimeError):
        drainer.stop(timeout=0.1)  # still in its drain
    release.set()

    drainer.wake()

    wait_until(lambda: len(drains) >= 3, timeout=5, what="the next thread draining on its timer")
    drainer.stop()


def test_a_segment_abandoned_before_it_was_named_is_removed_once_old(spool: Path):
    spool.mkdir(parents=True)
    abandoned = spool / ".1234-abandoned.new"  # its process died between creating and naming it
    abandoned.touch()
    old = time.time() - intake.ABANDONED_AFTER_SECONDS - 1
    os.utime(abandoned, (old, old))
    just_created = spool / ".1235-fresh.new"  # about to be locked by its writer
    just_created.touch()
    held = spool / ".1236-held.new"  # locked, so its writer is alive
    held.touch()
    os.utime(held, (old, old))
    writer = os.open(held, os.O_WRONLY)
    fcntl.flock(writer, fcntl.LOCK_EX)
    try:
        assert intake.hits_drain() == 0
    finally:
        os.close(writer)

    assert not abandoned.exists()
    assert just_created.exists() and held.exists()
