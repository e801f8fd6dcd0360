"""Crash drill: real Celery workers killed with SIGKILL, then Redis and PostgreSQL restarted,
during sends counted at the receiving server.

The drill runs its own PostgreSQL cluster and redis-server (free ports, temporary directories,
started and stopped by it) and its own aiosmtpd server, so it can restart them at will without
disturbing anything else on the machine. Against them: `celery beat` (the scheduler) and
--workers `celery worker -Q default,send --concurrency 1` processes (prefork, as `make worker`).

Phase 1: --messages contacts are enrolled in a one-email sequence. During the send, --kills
times, a worker that holds an open SMTP session with the receiving server is killed with
SIGKILL: alternately the whole worker (its process group; a new worker is started) and only the
pool process running the task (the worker's main process starts a new one). Kills are spread
by progress: kill i comes when i/(kills+1) of the messages have arrived.

Phase 2: the same contacts are enrolled in a second sequence; during that send Redis is killed
and started again (empty: nothing on disk) --redis-restarts times and PostgreSQL is restarted
(`pg_ctl restart -m fast`) --postgres-restarts times, spread the same way.

Counted at the receiving server, by the message id each message carries (X-Emailseq-ID): lost
(a message of the phase that never arrived) and duplicated (arrived more than once). A
duplicate is explained when its first copy was the last message the server accepted in an
SMTP session whose worker was killed (phase 1) or that was open while PostgreSQL restarted
(phase 2): the server had accepted it and the worker could not record it. Targets: nothing
lost; every duplicate explained, so at most one per kill; in phase 2 at most one per worker
per PostgreSQL restart and none from Redis restarts; every message `sent` exactly once in the
database and none left queued or sending.

The last line printed is one JSON object with the figures, the targets and whether each is met.
`run_drill()` is what delivery/tests/test_crash_drill.py runs, smaller.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import SECRET_KEY, machine  # noqa: E402
from bench.drill_support import (  # noqa: E402
    PYTHON,
    Arrival,
    CeleryProcesses,
    PrivatePostgres,
    PrivateRedis,
    ReceivingServer,
    wait_for,
)

DATABASE = "emailseq_drill"
DONE_STATUSES = ("sent", "bounced", "failed", "cancelled")
HTML = """<html><body>
<p>Hi {{ contact.first_name | default: "there" }},</p>
<p>This is message {{ contact.properties.number }} of the crash drill.
<a href="https://example.com/drill?n={{ contact.properties.number }}">A tracked link</a>.</p>
</body></html>"""


@dataclass
class DrillConfig:
    messages: int = 10_000
    kills: int = 20
    redis_restarts: int = 2
    postgres_restarts: int = 1
    workers: int = 2
    # Short, so that what a killed worker held comes back within seconds (product defaults:
    # lease 600 s, dispatch grace 120 s, retry base 60 s).
    lease_seconds: int = 20
    dispatch_grace_seconds: int = 20
    retry_base_seconds: int = 5
    scheduler_interval_seconds: float = 1.0
    send_batch_size: int = 200
    redis_downtime_seconds: float = 2.0
    settle_seconds: float = 3.0
    phase_timeout_seconds: float = 900.0
    seed: int = 4
    keep_logs: Path | None = None  # copy the processes' logs here


@dataclass
class Disruption:
    kind: str  # "kill_worker", "kill_pool_process", "redis_restart", "postgres_restart"
    at_fraction: float
    started: float = 0.0
    finished: float = 0.0
    target: str = ""
    # SMTP sessions the disruption cut: those of the killed process, or those open while the
    # server was down.
    sessions: list[int] = field(default_factory=list)


# The control process: migrations and data, with Django set up once ---------------------------


def setup_data(count: int) -> dict[str, Any]:
    """Organization, contacts and two active one-email sequences (one per phase)."""
    from organizations.services import organization_create
    from sequences import services as sequence_services
    from sequences.models import Step
    from subscribers.models import Contact

    organization = organization_create(name="Drill Company", postal_address="Drill Company\n1 Example Street\nTown")
    sequences = []
    for number in (1, 2):
        template = sequence_services.template_create(
            organization=organization, name=f"Drill {number}", subject=f"Drill {number}, {{{{ contact.first_name }}}}",
            html_body=HTML,
        )  # fmt: skip
        sequence = sequence_services.sequence_create(
            organization=organization, name=f"Drill phase {number}", from_name="Drill", from_email="drill@example.com"
        )
        sequence_services.step_create(sequence=sequence, kind=Step.Kind.EMAIL, template=template, name="Only")
        sequences.append(sequence_services.sequence_activate(sequence=sequence).pk)
    Contact.objects.bulk_create(
        (
            Contact(
                organization=organization,
                email=f"drill{index}@example.net",
                first_name=f"Person{index}",
                properties={"number": index},
                consent_source="crash drill",
            )
            for index in range(count)
        ),
        batch_size=2000,
    )
    return {"organization": organization.pk, "sequences": sequences}


def enroll(sequence_id: int) -> dict[str, Any]:
    """Enroll every contact of the sequence's organization, due now."""
    from sequences import services as sequence_services
    from sequences.models import Sequence
    from subscribers.models import Contact

    sequence = Sequence.objects.get(pk=sequence_id)
    contacts = Contact.objects.filter(organization_id=sequence.organization_id)
    return {"enrolled": sequence_services.enrollments_create(sequence=sequence, contacts=contacts).enrolled_count}


def control() -> None:
    """The child that does the drill's Django work: one JSON command per line on stdin, one
    answer per line on stdout (prefixed, so nothing else printed is taken for one)."""
    import traceback

    from bench.common import setup_django

    setup_django()
    from django.core.management import call_command
    from django.db import connections

    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["do"] == "migrate":
                call_command("migrate", interactive=False, verbosity=0)
                answer: dict[str, Any] = {}
            elif command["do"] == "setup":
                answer = setup_data(command["count"])
            else:
                answer = enroll(command["sequence"])
        except Exception:  # noqa: BLE001 - reported to the drill, which stops
            answer = {"error": traceback.format_exc()}
        connections.close_all()  # the server may be restarted before the next command
        print(CONTROL_ANSWER + json.dumps(answer), flush=True)


CONTROL_ANSWER = "drill-answer "


class Control:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [PYTHON, __file__, "--control"], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=output, text=True, start_new_session=True,
            )  # fmt: skip
        self.log = log

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(CONTROL_ANSWER):
                answer = json.loads(line.removeprefix(CONTROL_ANSWER))
                if "error" in answer:
                    raise RuntimeError(f"{command} failed in the control process:\n{answer['error']}")
                return answer
        raise RuntimeError(f"the control process exited: {self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# The drill ------------------------------------------------------------------------------------


class Drill:
    def __init__(self, config: DrillConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.began = time.monotonic()
        self.say = lambda line: say(f"{time.monotonic() - self.began:6.1f}s {line}")
        self.random = random.Random(config.seed)
        self.var_dir = Path(tempfile.mkdtemp(prefix="emailseq-drill-"))
        self.postgres = PrivatePostgres()
        self.redis = PrivateRedis(self.var_dir)
        self.sink = ReceivingServer()
        self.celery: CeleryProcesses | None = None
        self.control: Control | None = None
        self.database: Any = None
        self.unexpected_exits: list[str] = []

    # Servers and processes ---------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        config = self.config
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL") and not key.startswith("PYTEST_")
        }
        env.update(
            DJANGO_SETTINGS_MODULE="emailseq.settings",
            DATABASE_URL=self.postgres.url(DATABASE),
            REDIS_URL=self.redis.url(0),
            EMAIL_URL=f"smtp://127.0.0.1:{self.sink.port}",
            VAR_DIR=str(self.var_dir),
            SECRET_KEY=SECRET_KEY,
            DEBUG="0",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            SEND_LEASE_SECONDS=str(config.lease_seconds),
            SEND_DISPATCH_GRACE_SECONDS=str(config.dispatch_grace_seconds),
            SEND_RETRY_BASE_SECONDS=str(config.retry_base_seconds),
            SCHEDULER_INTERVAL_SECONDS=str(config.scheduler_interval_seconds),
            SEND_BATCH_SIZE=str(config.send_batch_size),
            # The drill's sender domain is not published in any DNS: no sending domain to verify.
            REQUIRE_VERIFIED_SENDING_DOMAIN="0",
        )
        return env

    def start(self) -> dict[str, Any]:
        self.say(f"Private PostgreSQL on port {self.postgres.port}, Redis on {self.redis.port}, "
                 f"receiving SMTP server on {self.sink.port}; logs in {self.var_dir}")  # fmt: skip
        self.postgres.start()
        self.postgres.create_database(DATABASE)
        self.redis.start()
        self.sink.start()
        env = self.env()
        self.control = Control(env, self.var_dir / "control.log")
        self.say("Migrating ...")
        self.control.call(do="migrate")
        # The processes start while the data is written: nothing is due before it is enrolled.
        self.celery = CeleryProcesses(env, self.var_dir)
        self.celery.start_beat()
        for _ in range(self.config.workers):
            self.celery.start_worker()
        self.say(f"Creating {self.config.messages} contacts and two sequences ...")
        ids = self.control.call(do="setup", count=self.config.messages)
        wait_for(lambda: all(worker.ready() for worker in self.celery.workers), timeout=120, what="the workers")
        return ids

    def stop(self) -> None:
        if self.database is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                self.database.close()
        try:
            if self.control:
                self.control.stop()
            if self.celery:
                self.celery.stop()
        finally:
            try:
                self.sink.stop()
            finally:
                try:
                    self.redis.stop()
                finally:
                    if self.config.keep_logs:
                        self.config.keep_logs.mkdir(parents=True, exist_ok=True)
                        for log in [*self.var_dir.glob("*.log"), self.postgres.log]:
                            if log.exists():
                                shutil.copy(log, self.config.keep_logs / log.name)
                    self.postgres.stop()
                    shutil.rmtree(self.var_dir, ignore_errors=True)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
        """Run a read on the drill's database; None while it is unreachable (restarting)."""
        try:
            if self.database is None or self.database.closed:
                self.database = self.postgres.connect(DATABASE)
            with self.database.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except Exception:  # noqa: BLE001 - psycopg2.Error or OSError while the server restarts
            self.database = None
            return None

    def watch_processes(self) -> None:
        """A worker or beat that exits without being killed is noted and started again."""
        assert self.celery is not None
        for worker in list(self.celery.workers):
            if not worker.alive():
                self.unexpected_exits.append(f"{worker.name} exited with status {worker.process.returncode}")
                self.celery.workers.remove(worker)
                self.celery.start_worker()
        beat = self.celery.beat
        if beat is not None and not beat.alive():
            self.unexpected_exits.append(f"beat exited with status {beat.process.returncode}")
            self.celery.start_beat()

    # Disruptions --------------------------------------------------------------------------------

    def kill(self, disruption: Disruption) -> None:
        assert self.celery is not None
        deadline = time.monotonic() + 30
        while True:
            sending = self.celery.sending(self.sink.open_sessions_by_port())
            if sending:
                break
            if time.monotonic() > deadline:
                disruption.target = "none: no worker was sending for 30 s"
                return
            time.sleep(0.005)
        worker, pid, sessions = self.random.choice(sending)
        disruption.started = time.monotonic()
        if disruption.kind == "kill_worker":
            self.celery.kill_worker(worker)
            disruption.target = f"{worker.name} (pid {worker.pid} and its pool)"
            self.celery.start_worker()
        else:
            self.celery.kill_pool_process(pid)
            disruption.target = f"{worker.name} pool process {pid}"
        disruption.sessions = sessions
        disruption.finished = time.monotonic()

    def restart(self, disruption: Disruption) -> None:
        open_before = self.sink.open_sessions()
        disruption.started = time.monotonic()
        if disruption.kind == "redis_restart":
            self.redis.restart(self.config.redis_downtime_seconds)
        else:
            self.postgres.restart()
        disruption.finished = time.monotonic()
        with self.sink.lock:
            during = {
                session.number
                for session in self.sink.sessions.values()
                if session.opened <= disruption.finished
                and (session.closed is None or session.closed >= disruption.started)
            }
        disruption.sessions = sorted(open_before | during)

    # Phases ---------------------------------------------------------------------------------------

    def phase(self, name: str, sequence_id: int, disruptions: list[Disruption]) -> dict[str, Any]:
        config = self.config
        self.say(f"{name}: enrolling {config.messages} contacts ...")
        first_arrival = self.sink.count()
        started = time.monotonic()
        assert self.control is not None
        self.control.call(do="enroll", sequence=sequence_id)
        seen: set[int] = set()
        read = first_arrival
        pending = list(disruptions)
        complete_at: float | None = None
        last_arrival_at = time.monotonic()
        statuses: dict[str, int] = {}
        polled = 0.0
        while True:
            now = time.monotonic()
            if now - started > config.phase_timeout_seconds:
                self.say(f"{name}: timed out after {config.phase_timeout_seconds:.0f} s")
                break
            arrivals = self.sink.arrivals_since(read)
            if arrivals:
                read += len(arrivals)
                last_arrival_at = now
                seen.update(arrival.message_id for arrival in arrivals if arrival.message_id is not None)
            if pending and len(seen) >= pending[0].at_fraction * config.messages:
                disruption = pending.pop(0)
                (self.kill if disruption.kind.startswith("kill") else self.restart)(disruption)
                self.say(f"  {len(seen):>6} arrived: {disruption.kind} {disruption.target}".rstrip())
                continue
            self.watch_processes()
            if not pending and now - polled >= 0.5:
                polled = now
                rows = self.query(
                    "SELECT status, count(*) FROM delivery_message WHERE sequence_id = %s GROUP BY status",
                    (sequence_id,),
                )
                if rows is not None:
                    statuses = dict(rows)
                    done = sum(statuses.get(status, 0) for status in DONE_STATUSES)
                    if done >= config.messages:
                        complete_at = complete_at or now
                        # Room for a late duplicate to arrive.
                        if now - max(complete_at, last_arrival_at) >= config.settle_seconds:
                            break
                    else:
                        complete_at = None
            time.sleep(0.02)
        seconds = time.monotonic() - started
        rows = self.query("SELECT id FROM delivery_message WHERE sequence_id = %s", (sequence_id,)) or []
        enrollments = dict(
            self.query(
                "SELECT status, count(*) FROM sequences_enrollment WHERE sequence_id = %s GROUP BY status",
                (sequence_id,),
            )
            or []
        )
        return {
            "name": name,
            "seconds": round(seconds, 1),
            "message_ids": {row[0] for row in rows},
            "statuses": statuses,
            "enrollments": enrollments,
            "disruptions": disruptions,
            "first_arrival": first_arrival,
            "timed_out": bool(pending) or complete_at is None,
            "started": started,
            # Sent messages with more than one attempt were released (lease expired) or retried.
            "attempts": dict(
                self.query(
                    "SELECT id, attempts FROM delivery_message WHERE sequence_id = %s AND attempts > 1", (sequence_id,)
                )
                or []
            ),
        }

    def run(self) -> dict[str, Any]:
        config = self.config
        ids = self.start()
        kills = [
            Disruption("kill_worker" if index % 2 == 0 else "kill_pool_process", (index + 1) / (config.kills + 1))
            for index in range(config.kills)
        ]
        kinds = _spread({"redis_restart": config.redis_restarts, "postgres_restart": config.postgres_restarts})
        restarts = [Disruption(kind, (index + 1) / (len(kinds) + 1)) for index, kind in enumerate(kinds)]
        phases = [
            self.phase("Phase 1 (workers killed)", ids["sequences"][0], kills),
            self.phase("Phase 2 (Redis and PostgreSQL restarted)", ids["sequences"][1], restarts),
        ]
        return analyse(config, phases, self.sink, self.unexpected_exits)


def _spread(counts: dict[str, int]) -> list[str]:
    """Each kind's disruptions spread evenly over the send: redis, postgres, redis for 2 and 1."""
    placed = [((index + 1) / (count + 1), kind) for kind, count in counts.items() for index in range(count)]
    return [kind for _, kind in sorted(placed)]


# Counting ---------------------------------------------------------------------------------------


def analyse(
    config: DrillConfig, phases: list[dict[str, Any]], sink: ReceivingServer, unexpected_exits: list[str]
) -> dict[str, Any]:
    with sink.lock:
        arrivals = list(sink.arrivals)
        sessions = {number: (list(s.accepted), s.quit) for number, s in sink.sessions.items()}
    copies = Counter(arrival.message_id for arrival in arrivals)
    first_session: dict[int, int] = {}
    copies_of: dict[int, list[Arrival]] = {}
    for arrival in arrivals:
        if arrival.message_id is not None:
            first_session.setdefault(arrival.message_id, arrival.session)
            copies_of.setdefault(arrival.message_id, []).append(arrival)
    all_ids = set().union(*(phase["message_ids"] for phase in phases))
    results = []
    for phase in phases:
        expected: set[int] = phase["message_ids"]
        disruptions: list[Disruption] = phase["disruptions"]
        duplicated = {message_id: copies[message_id] for message_id in expected if copies[message_id] > 1}
        explained: dict[str, int] = Counter()
        unexplained = []
        for message_id in sorted(duplicated):
            session = first_session[message_id]
            cause = next(
                (
                    d.kind
                    for d in disruptions
                    if session in d.sessions and sessions[session][0] and sessions[session][0][-1] == message_id
                ),
                None,
            )
            if cause is None:
                accepted = sessions[session][0]
                unexplained.append(
                    {
                        "message_id": message_id,
                        "copies": duplicated[message_id],
                        "first_session": session,
                        "position_in_session": accepted.index(message_id) + 1,
                        "session_length": len(accepted),
                        "session_quit": sessions[session][1],
                        "session_cut_by": [d.kind for d in disruptions if session in d.sessions],
                        "copy_sessions": [copy.session for copy in copies_of[message_id]],
                        "copies_at_seconds": [round(copy.at - phase["started"], 2) for copy in copies_of[message_id]],
                        "attempts_in_database": phase["attempts"].get(message_id),
                    }
                )
            else:
                explained[cause] += 1
        statuses = phase["statuses"]
        results.append(
            {
                "name": phase["name"],
                "seconds": phase["seconds"],
                "messages": len(expected),
                "arrived": sum(copies[message_id] for message_id in expected),
                "lost": len(expected - copies.keys()),
                "duplicated": len(duplicated),
                "extra_copies": sum(count - 1 for count in duplicated.values()),
                "duplicates_explained": dict(explained),
                "duplicates_unexplained": len(unexplained),
                "unexplained_examples": unexplained[:10],
                "disruptions": dict(Counter(d.kind for d in disruptions if d.started)),
                "disruptions_missed": [d.kind for d in disruptions if not d.started],
                "sessions_cut": sum(len(d.sessions) for d in disruptions),
                "events": [
                    {
                        "kind": d.kind,
                        "at_fraction": round(d.at_fraction, 3),
                        "target": d.target,
                        "sessions_cut": d.sessions,
                        "seconds": round(d.finished - d.started, 2),
                    }
                    for d in disruptions
                ],
                "statuses": statuses,
                "stuck": statuses.get("queued", 0) + statuses.get("sending", 0),
                "sent_after_more_than_one_attempt": len(phase["attempts"]),
                "enrollments": phase["enrollments"],
                "timed_out": phase["timed_out"],
            }
        )
    foreign = sum(count for message_id, count in copies.items() if message_id not in all_ids)
    one, two = results
    kills = sum(one["disruptions"].values())
    postgres_cuts = config.workers * config.postgres_restarts
    targets = {
        "lost": 0,
        "phase1_duplicated_max": config.kills,
        "phase1_kills": config.kills,
        "phase2_duplicated_max": postgres_cuts,
        "unexplained_duplicates": 0,
        "stuck": 0,
    }
    met = {
        "nothing_lost": one["lost"] == 0 and two["lost"] == 0 and foreign == 0,
        "phase1_at_most_one_duplicate_per_kill": one["duplicated"] <= kills and one["duplicates_unexplained"] == 0,
        "phase1_all_kills_during_send": kills == config.kills and not one["disruptions_missed"],
        "phase2_duplicates_only_from_postgres_restart": (
            two["duplicated"] <= postgres_cuts and two["duplicates_unexplained"] == 0
        ),
        "every_message_sent_once_in_database": all(
            phase["statuses"].get("sent", 0) == config.messages and phase["stuck"] == 0 and not phase["timed_out"]
            for phase in results
        ),
        "no_process_exited_unexpectedly": not unexpected_exits,
    }
    return {
        "benchmark": "crash_drill",
        "messages_per_phase": config.messages,
        "workers": config.workers,
        "kills": kills,
        "redis_restarts": two["disruptions"].get("redis_restart", 0),
        "postgres_restarts": two["disruptions"].get("postgres_restart", 0),
        "lease_seconds": config.lease_seconds,
        "dispatch_grace_seconds": config.dispatch_grace_seconds,
        "send_batch_size": config.send_batch_size,
        "lost": one["lost"] + two["lost"],
        "duplicated": one["duplicated"] + two["duplicated"],
        "unknown_arrivals": foreign,
        "phases": results,
        "unexpected_exits": unexpected_exits,
        **machine(),
        "targets": targets,
        "met": met,
    }


def run_drill(config: DrillConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    drill = Drill(config, say)
    started = time.monotonic()
    try:
        figures = drill.run()
    finally:
        drill.stop()
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


def summary(figures: dict[str, Any]) -> str:
    lines = [
        f"Crash drill: {figures['messages_per_phase']:,} messages per phase, {figures['workers']} workers, "
        f"lease {figures['lease_seconds']} s, dispatch grace {figures['dispatch_grace_seconds']} s, "
        f"{figures['seconds']} s in all"
    ]
    for phase in figures["phases"]:
        disruptions = ", ".join(f"{count} x {kind}" for kind, count in phase["disruptions"].items()) or "none"
        explained = ", ".join(f"{count} after {kind}" for kind, count in phase["duplicates_explained"].items())
        lines += [
            f"  {phase['name']}: {phase['seconds']} s; {disruptions} ({phase['sessions_cut']} SMTP sessions cut)",
            f"    arrived {phase['arrived']:,} for {phase['messages']:,} messages: lost {phase['lost']}, "
            f"duplicated {phase['duplicated']} ({phase['extra_copies']} extra copies)",
            f"    duplicates explained: {explained or 'none'}; unexplained: {phase['duplicates_unexplained']}",
            f"    database: {phase['statuses']}; stuck {phase['stuck']}; enrollments {phase['enrollments']}; "
            f"{phase['sent_after_more_than_one_attempt']} sent after more than one attempt",
        ]
        for example in phase["unexplained_examples"][:5]:
            lines.append(f"    unexplained: {example}")
    if figures["unexpected_exits"]:
        lines.append(f"  processes that exited on their own: {figures['unexpected_exits']}")
    lines.append(f"  lost {figures['lost']}, duplicated {figures['duplicated']}")
    lines.append(f"  targets met: {figures['met']}")
    lines.append(f"  load average {figures['load_average']} on {figures['cpus']} CPUs")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    defaults = DrillConfig()
    parser.add_argument("--messages", type=int, default=defaults.messages, help="messages per phase")
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--redis-restarts", type=int, default=defaults.redis_restarts)
    parser.add_argument("--postgres-restarts", type=int, default=defaults.postgres_restarts)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--lease-seconds", type=int, default=defaults.lease_seconds)
    parser.add_argument("--dispatch-grace-seconds", type=int, default=defaults.dispatch_grace_seconds)
    parser.add_argument("--send-batch-size", type=int, default=defaults.send_batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--keep-logs", type=Path, help="copy the Celery, Redis and PostgreSQL logs here")
    parser.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.control:
        control()
        return
    config = DrillConfig(
        messages=args.messages,
        kills=args.kills,
        redis_restarts=args.redis_restarts,
        postgres_restarts=args.postgres_restarts,
        workers=args.workers,
        lease_seconds=args.lease_seconds,
        dispatch_grace_seconds=args.dispatch_grace_seconds,
        send_batch_size=args.send_batch_size,
        seed=args.seed,
        keep_logs=args.keep_logs,
    )
    figures = run_drill(config, say=lambda line: print(line, flush=True))
    print()
    print(summary(figures))
    print(json.dumps(figures, default=str))
    if not all(figures["met"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
