"""The engine's claim ("active and due, oldest first") is planned on the partial index
enrollment_due_idx, so the finished enrollments that pile up over time cost it nothing.

The SQL examined is the statement the engine itself sends (captured while it claims), not a
re-creation of it. Not timed: the plan is what matters."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment
from sequences.tests.helpers import delay_step, draft_sequence, email_step
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

FINISHED_ROWS = 20_000
ACTIVE_ROWS = 400


def populate() -> None:
    """Many finished enrollments, some active ones waiting for later, a few due now."""
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "Hello")
    delay_step(sequence, dt.timedelta(days=1))
    services.sequence_activate(sequence=sequence)
    first_step = sequence.steps.order_by("position").first()
    contacts = Contact.objects.bulk_create(ContactFactory.build_batch(ACTIVE_ROWS, organization=organization))
    now = timezone.now()
    finished = [
        Enrollment(
            organization=organization,
            sequence=sequence,
            contact=contacts[index % len(contacts)],
            status=Enrollment.Status.COMPLETED,
            enrolled_at=now - dt.timedelta(days=30),
            finished_at=now - dt.timedelta(days=29),
        )
        for index in range(FINISHED_ROWS)
    ]
    active = [
        Enrollment(
            organization=organization,
            sequence=sequence,
            contact=contact,
            current_step=first_step,
            # One in ten is due; the others wait for days to come.
            next_run_at=now - dt.timedelta(minutes=1) if index % 10 == 0 else now + dt.timedelta(days=index % 7 + 1),
            enrolled_at=now - dt.timedelta(days=1),
        )
        for index, contact in enumerate(contacts)
    ]
    Enrollment.objects.bulk_create(finished + active, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def claim_statement() -> str:
    """The SELECT the engine runs to claim due enrollments, as it was sent to the database."""
    with CaptureQueriesContext(connection) as queries:
        report = engine.advance_due_enrollments(limit=10)
    assert report.claimed == 10
    table = Enrollment._meta.db_table
    claims = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].lstrip().upper().startswith("SELECT")
        and f'FROM "{table}"' in query["sql"]
        and '"next_run_at" <=' in query["sql"]
    ]
    assert len(claims) == 1, queries.captured_queries
    return claims[0]


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN {sql}")
            return "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


def test_the_claim_of_due_enrollments_is_planned_on_the_partial_due_index() -> None:
    populate()
    sql = claim_statement()
    if connection.vendor == "postgresql":
        assert "FOR UPDATE SKIP LOCKED" in sql

    plan = explain(sql)

    assert "enrollment_due_idx" in plan, plan
    # The index already returns rows in next_run_at order: no sort step on top of it.
    assert "TEMP B-TREE" not in plan.upper() and "Sort" not in plan, plan
    assert "Seq Scan" not in plan, plan
