"""Acceptance 8, short: real Celery workers killed with SIGKILL during a send, then Redis and
PostgreSQL restarted during another; counted at the receiving server, no message is lost and a
message arrives twice only when its worker was cut off between the server accepting it and the
send being recorded (at most one per kill). The full drill is bench/crash_drill.py.

The drill restarts its servers, so it runs its own PostgreSQL cluster and redis-server (it
needs their server programs, as CI has) and never touches the ones the rest of the suite uses.
It runs where the suite runs on PostgreSQL + Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash_drill import DrillConfig, run_drill, summary
from conftest import USES_REDIS, requires_postgres

MESSAGES = 600
KILLS = 3
WORKERS = 2


@requires_postgres
@pytest.mark.skipif(not USES_REDIS, reason="needs REDIS_URL (CI sets it): real Celery workers")
@pytest.mark.slow
def test_killed_workers_and_restarted_servers_lose_no_message_and_resend_only_the_one_in_flight(
    tmp_path: Path,
) -> None:
    figures = run_drill(
        DrillConfig(
            messages=MESSAGES,
            kills=KILLS,
            redis_restarts=1,
            postgres_restarts=1,
            workers=WORKERS,
            lease_seconds=10,
            dispatch_grace_seconds=5,
            send_batch_size=50,
            redis_downtime_seconds=1.0,
            settle_seconds=2.0,
            phase_timeout_seconds=240,
            keep_logs=tmp_path / "logs",
        ),
        say=lambda line: None,
    )
    report = summary(figures)
    killed, restarted = figures["phases"]

    assert figures["kills"] == KILLS and not killed["disruptions_missed"], report
    assert restarted["disruptions"] == {"redis_restart": 1, "postgres_restart": 1}, report
    assert figures["lost"] == 0 and figures["unknown_arrivals"] == 0, report
    # Each duplicate is the last message a cut-off session had accepted: one per kill at most.
    assert killed["duplicates_unexplained"] == 0, report
    assert killed["duplicated"] <= KILLS, report
    # Redis is not between acceptance and recording; a PostgreSQL restart cuts off at most the
    # one message each sending worker had in hand.
    assert restarted["duplicates_unexplained"] == 0, report
    assert restarted["duplicated"] <= WORKERS, report
    for phase in (killed, restarted):
        assert phase["statuses"] == {"sent": MESSAGES}, report
        assert phase["enrollments"] == {"completed": MESSAGES}, report
    assert figures["unexpected_exits"] == [], report
