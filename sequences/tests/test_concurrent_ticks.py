"""Acceptance: ticks running at the same time in separate processes advance each enrollment
once. 1,000 due contacts, three `manage.py tick` processes at once: exactly 1,000 messages and
exactly 1,000 deliveries at a real SMTP server, none twice, none lost. PostgreSQL only (the
claim relies on SELECT ... FOR UPDATE SKIP LOCKED); with Redis the sends go through a real
Celery worker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, SmtpServer, WorkerProcesses, process_env, requires_postgres, wait_until
from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.models import Enrollment
from sequences.tests.helpers import draft_sequence, email_step
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

CONTACTS = 1_000
PROCESSES = 3


@requires_postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_three_ticking_processes_send_each_of_a_thousand_emails_exactly_once(
    tmp_path: Path, smtp_server: SmtpServer, send_workers: WorkerProcesses
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "Just one")
    services.sequence_activate(sequence=sequence)
    contacts = Contact.objects.bulk_create(ContactFactory.build_batch(CONTACTS, organization=organization))
    assert services.enrollments_create(sequence=sequence, contacts=contacts).enrolled_count == CONTACTS

    env = process_env(tmp_path, email_url=smtp_server.url)
    logs = [(tmp_path / f"tick-{index}.log").open("w+") for index in range(PROCESSES)]
    ticks = [
        subprocess.Popen(
            [sys.executable, "manage.py", "tick", "--until-idle", "--batch-size", "50"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        for process in ticks:
            process.wait(timeout=240)
    finally:
        for process in ticks:
            if process.poll() is None:
                process.kill()
        for log in logs:
            log.close()
    outputs = [Path(log.name).read_text() for log in logs]
    assert [process.returncode for process in ticks] == [0] * PROCESSES, outputs

    received = smtp_server.wait_for(CONTACTS, timeout=180)
    sent = Message.objects.filter(status=Message.Status.SENT)
    wait_until(lambda: sent.count() == CONTACTS, timeout=60, what="every send recorded")
    time.sleep(1.0 if send_workers.real else 0)  # room for a late duplicate to show up
    received = smtp_server.received

    assert Message.objects.count() == CONTACTS
    assert len(received) == CONTACTS
    recipients = Counter(mail.recipients[0] for mail in received)
    assert set(recipients) == {contact.email for contact in contacts}
    assert max(recipients.values()) == 1
    assert Enrollment.objects.filter(status=Enrollment.Status.COMPLETED).count() == CONTACTS
    # Between them, the processes claimed each enrollment exactly once.
    claimed = [int(output.split(" enrollments claimed")[0].rsplit(" ", 1)[-1]) for output in outputs]
    assert sum(claimed) == CONTACTS, outputs
