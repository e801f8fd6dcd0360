"""The management commands: `tick --until-idle` drains everything due now (and nothing that is
not), `seed_demo` is idempotent and leaves contacts enrolled in an active sequence whose first
email goes out at once, and the scheduler that `serve` runs outlives a failed tick."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from conftest import REPO, SmtpServer, WorkerProcesses, process_env, wait_until
from delivery.models import Message
from organizations.models import Membership, Organization
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.management.commands import serve
from sequences.models import EmailTemplate, Enrollment, Sequence, Step
from sequences.tests.helpers import captured_mail, delay_step, draft_sequence, email_step, tick
from subscribers.models import Contact, ContactList
from subscribers.tests.factories import ContactFactory

CONTACTS = 120


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_tick_until_idle_drains_everything_due_now_and_leaves_what_is_due_later(
    tmp_path: Path, smtp_server: SmtpServer, send_workers: WorkerProcesses
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    for subject in ("A", "B", "C"):
        email_step(sequence, subject)
    delay_step(sequence, dt.timedelta(days=1))
    tomorrow = email_step(sequence, "Tomorrow")
    services.sequence_activate(sequence=sequence)
    contacts = Contact.objects.bulk_create(ContactFactory.build_batch(CONTACTS, organization=organization))
    services.enrollments_create(sequence=sequence, contacts=contacts)
    # A tiny time budget cuts every pass short: only repeating passes drains the backlog.
    env = process_env(tmp_path, email_url=smtp_server.url) | {"ENGINE_TICK_BUDGET_SECONDS": "0.1"}

    result = subprocess.run(
        [sys.executable, "manage.py", "tick", "--until-idle", "--batch-size", "50"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{CONTACTS} enrollments claimed" in result.stdout
    assert f"{3 * CONTACTS} messages written" in result.stdout
    received = smtp_server.wait_for(3 * CONTACTS, timeout=120)
    wait_until(
        lambda: Message.objects.filter(status=Message.Status.SENT).count() == 3 * CONTACTS,
        timeout=60,
        what="every send recorded",
    )
    assert len(received) == 3 * CONTACTS
    assert sorted(mail.recipients[0] for mail in received) == sorted(3 * [contact.email for contact in contacts])
    assert not Message.objects.filter(step=tomorrow).exists()
    waiting = Enrollment.objects.filter(status=Enrollment.Status.ACTIVE, current_step=tomorrow)
    assert waiting.count() == CONTACTS


def seed(**options: object) -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def counts() -> dict[str, int]:
    models = [Organization, get_user_model(), Membership, ContactList, Contact, EmailTemplate, Sequence, Step]
    return {model.__name__: model.objects.count() for model in (*models, Enrollment, Message)}


@pytest.mark.django_db
def test_seed_demo_twice_creates_nothing_new(settings, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    first_output = seed(contacts=8)
    after_first = counts()

    second_output = seed(contacts=8)

    assert counts() == after_first
    assert "8 newly enrolled" in first_output
    assert "0 newly enrolled" in second_output
    password_line = [line for line in first_output.splitlines() if "password:" in line]
    assert password_line and password_line[0] in second_output
    assert {name: after_first[name] for name in ("Organization", "Sequence", "Contact", "Enrollment", "Message")} == {
        "Organization": 1,
        "Sequence": 1,
        "Contact": 8,
        "Enrollment": 8,
        "Message": 0,
    }


@pytest.mark.django_db
def test_seed_demo_enrolls_every_contact_in_an_active_sequence_whose_first_email_goes_out_at_once(
    settings, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    settings.VAR_DIR = tmp_path
    seed(contacts=6)
    organization = Organization.objects.get()
    sequence = Sequence.objects.get(organization=organization)
    contacts = Contact.objects.filter(organization=organization)

    tick(django_capture_on_commit_callbacks)

    assert sequence.status == Sequence.Status.ACTIVE
    assert contacts.count() == 6
    assert set(Enrollment.objects.values_list("contact", "status")) == {(c.pk, "active") for c in contacts}
    mail = captured_mail(organization)
    assert sorted(str(message["To"]) for message in mail) == sorted(c.email for c in contacts)
    assert {str(message["Subject"]) for message in mail} == {f"Welcome, {c.first_name}!" for c in contacts}

    # Seeding again (even more contacts) sends nothing twice; only the new contacts join.
    output = seed(contacts=9)
    tick(django_capture_on_commit_callbacks)

    assert "3 newly enrolled" in output
    assert Enrollment.objects.count() == 9
    recipients = [str(message["To"]) for message in captured_mail(organization)]
    assert len(recipients) == 9 == len(set(recipients))


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_that_serve_runs_keeps_ticking_after_a_failed_tick(monkeypatch) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "Scheduled")
    services.sequence_activate(sequence=sequence)
    services.enrollments_create(sequence=sequence, contacts=ContactFactory.create_batch(3, organization=organization))
    real_tick = engine.tick
    calls = []

    def flaky_tick(**kwargs: object) -> engine.TickReport:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real_tick(**kwargs)

    monkeypatch.setattr(engine, "tick", flaky_tick)
    stop = threading.Event()

    def run_scheduler() -> None:
        try:
            serve.run_scheduler(stop, 0.05)
        finally:
            connection.close()

    scheduler = threading.Thread(target=run_scheduler, daemon=True)
    scheduler.start()
    try:
        wait_until(lambda: len(captured_mail(organization)) == 3, timeout=30, what="the scheduled sends")
    finally:
        stop.set()
        scheduler.join(timeout=10)

    assert not scheduler.is_alive()
    assert len(calls) >= 2
    assert Message.objects.filter(status=Message.Status.SENT).count() == 3


@pytest.mark.django_db
def test_tick_reports_each_re_dispatched_message_once(django_capture_on_commit_callbacks) -> None:
    sequence = draft_sequence(OrganizationFactory())
    email_step(sequence, "Lost on the way")
    services.sequence_activate(sequence=sequence)
    services.enrollments_create(sequence=sequence, contacts=[ContactFactory(organization=sequence.organization)])
    engine.advance_due_enrollments()  # outside a commit, so the dispatch is lost
    Message.objects.update(next_attempt_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    output = io.StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("tick", "--until-idle", stdout=output)

    assert "1 re-dispatched" in output.getvalue()
    assert Message.objects.get().status == Message.Status.SENT
