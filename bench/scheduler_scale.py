"""Scheduler scale: the engine's tick and claim against 100,000 and 1,000,000 active enrollments.

Two fresh PostgreSQL databases are filled with SQL (not timed): 100,000 contacts and ten active
sequences of two delay steps. The "100k" database enrolls every contact in the first sequence
(100,000 active enrollments); the "1M" database enrolls every contact in all ten (1,000,000).
Rows go in in random order, so due rows are spread over the table as in real use. The 100,000
enrollments of the first sequence are the ones made due; everything else waits days ahead.

Measured in each database, by a fresh process per round (--rounds, default 3, the databases
alternating so that noise on the shared machine hits both alike; the best round counts):
- empty tick: `sequences.engine.tick()` when nothing is due (p95 of --ticks calls);
- claim: `advance_due_enrollments(limit=1000)` with 100,000 due (p95 of --claims calls);
- drain: steps advanced per second while `advance_due_enrollments()` (ENGINE_CLAIM_BATCH_SIZE
  per transaction, one process) drains 100,000 due delay steps;
- bare SQL: the same drain done by one statement alone, repeated until nothing is due:
  UPDATE ... SET current_step_id = <next step>, next_run_at = now() + 1 day WHERE id IN
  (SELECT id ... WHERE status = 'active' AND next_run_at <= now() ORDER BY next_run_at
  LIMIT <batch> FOR UPDATE SKIP LOCKED), one transaction per statement as ours.
Due rows are reset (and the table vacuumed, analyzed and checkpointed) before each phase, so
both drains work on the same 100,000 rows. CPU seconds of this process and of its PostgreSQL
backend are reported beside the wall times.

Targets: our drain at least half the bare SQL rate; the 1M figures within 1.3 times the 100k
ones; empty tick p95 under 5 ms. The last line printed is one JSON object with the figures,
the targets and whether each is met.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    PYTHON,
    create_database,
    django_env,
    drop_database,
    machine,
    migrate,
    percentile,
    process_cpu_seconds,
    setup_django,
)

SCALES = {"100k": ("emailseq_bench_sched_100k", 1), "1M": ("emailseq_bench_sched_1m", 10)}  # db, sequences
CONTACTS = 100_000
DUE_SEQUENCE = "Sequence 1"
TARGET_DRAIN_VS_BARE_MIN = 0.5
TARGET_SCALE_RATIO_MAX = 1.3
TARGET_EMPTY_TICK_P95_MS_MAX = 5.0

BARE_DRAIN_SQL = """
UPDATE sequences_enrollment SET current_step_id = %s, next_run_at = now() + interval '1 day'
WHERE id IN (
    SELECT id FROM sequences_enrollment WHERE status = 'active' AND next_run_at <= now()
    ORDER BY next_run_at LIMIT %s FOR UPDATE SKIP LOCKED
)
"""


# Setup (not timed) ---------------------------------------------------------------------------


def build(database: str, sequences: int, contacts: int, var_dir: Path) -> None:
    """A database of `contacts` contacts, each enrolled in `sequences` sequences."""
    create_database(database)
    env = django_env(database, var_dir)
    migrate(env)
    command = [PYTHON, __file__, "--build", database, "--sequences", str(sequences), "--contacts", str(contacts)]
    subprocess.run(command, env=env, check=True)


def build_in_process(sequences: int, contacts: int) -> None:
    import datetime as dt

    from django.db import connection, transaction

    from organizations.services import organization_create
    from sequences import services as sequence_services
    from sequences.models import Step

    with transaction.atomic():
        organization = organization_create(name="Bench Company")
        plans = []
        for number in range(1, sequences + 1):
            sequence = sequence_services.sequence_create(
                organization=organization, name=f"Sequence {number}", from_email="hello@bench.example.com"
            )
            first = sequence_services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(days=1))
            sequence_services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(days=1))
            sequence_services.sequence_activate(sequence=sequence)
            plans.append((sequence.pk, first.pk))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO subscribers_contact (organization_id, email, first_name, last_name, properties, timezone,"
            " status, consent_source, created_at, updated_at)"
            " SELECT %s, 'contact' || g || '@bench.example.net', 'First', 'Last' || g, '{}'::jsonb, '', 'active',"
            " 'bench', now(), now() FROM generate_series(1, %s) g",
            [organization.pk, contacts],
        )
        cursor.execute("CREATE TEMPORARY TABLE plans (sequence_id bigint, step_id bigint)")
        cursor.executemany("INSERT INTO plans VALUES (%s, %s)", plans)
        cursor.execute(
            "INSERT INTO sequences_enrollment (next_run_at, status, exit_reason, enrolled_at, contact_id,"
            " organization_id, sequence_id, current_step_id)"
            " SELECT now() + interval '1 day' + random() * interval '29 days', 'active', '', now(), c.id,"
            " c.organization_id, p.sequence_id, p.step_id"
            " FROM subscribers_contact c CROSS JOIN plans p ORDER BY random()"
        )
        cursor.execute("VACUUM ANALYZE")


# Measuring (a fresh process per database and round) -----------------------------------------


class Database:
    """Raw statements on Django's connection, and its backend's CPU."""

    def __init__(self) -> None:
        from django.db import connection

        self.connection = connection
        self.due_sequence, self.first_step, self.second_step = self.one(
            "SELECT s.id, min(t.id), max(t.id) FROM sequences_sequence s JOIN sequences_step t ON t.sequence_id = s.id"
            " WHERE s.name = %s GROUP BY s.id",
            [DUE_SEQUENCE],
        )
        self.backend = self.one("SELECT pg_backend_pid()")[0]

    def one(self, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    def execute(self, sql: str, params: list[Any] | None = None) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def backend_cpu(self) -> float:
        return process_cpu_seconds(self.backend)

    def reset(self, *, due: bool) -> None:
        """Put the due sequence's enrollments back on their first step: due within the last
        hour, or waiting 1 to 30 days. Then clean up the dead rows, refresh statistics and
        write a checkpoint, so that neither lands in the middle of a measurement."""
        when = (
            "now() - random() * interval '1 hour'"
            if due
            else "now() + interval '1 day' + random() * interval '29 days'"
        )
        self.execute(
            f"UPDATE sequences_enrollment SET current_step_id = %s, next_run_at = {when}"
            " WHERE sequence_id = %s AND status = 'active'",
            [self.first_step, self.due_sequence],
        )
        self.execute("VACUUM ANALYZE sequences_enrollment")
        self.execute("CHECKPOINT")

    def due_count(self) -> int:
        return self.one("SELECT count(*) FROM sequences_enrollment WHERE status = 'active' AND next_run_at <= now()")[0]


def timed_drain(database: Database, drain: Any) -> dict[str, float]:
    cpu, backend, started = time.process_time(), database.backend_cpu(), time.perf_counter()
    steps, batches = drain()
    seconds = time.perf_counter() - started
    return {
        "steps": steps,
        "batches": batches,
        "seconds": seconds,
        "steps_per_second": steps / seconds,
        "python_cpu_seconds": time.process_time() - cpu,
        "backend_cpu_seconds": database.backend_cpu() - backend,
    }


def measure(contacts: int, ticks: int, claims: int, batch: int, bare_first: bool) -> dict[str, Any]:
    from sequences import engine

    database = Database()
    active = database.one("SELECT count(*) FROM sequences_enrollment WHERE status = 'active'")[0]
    result: dict[str, Any] = {"active_enrollments": active}

    database.reset(due=False)
    assert database.due_count() == 0
    for _ in range(10):
        engine.tick()
    durations = []
    for _ in range(ticks):
        started = time.perf_counter()
        report = engine.tick()
        durations.append(time.perf_counter() - started)
        assert report.claimed == 0, report
    result["empty_tick_p95_ms"] = percentile(durations, 0.95) * 1000
    result["empty_tick_median_ms"] = percentile(durations, 0.5) * 1000

    database.reset(due=True)
    due = database.due_count()
    assert due == contacts, due
    durations = []
    for _ in range(claims):
        started = time.perf_counter()
        report = engine.advance_due_enrollments(limit=1000)
        durations.append(time.perf_counter() - started)
        assert report.claimed == 1000, report
    result["claim_1000_p95_ms"] = percentile(durations, 0.95) * 1000
    result["claim_1000_median_ms"] = percentile(durations, 0.5) * 1000

    def ours() -> tuple[int, int]:
        steps = batches = 0
        while True:
            report = engine.advance_due_enrollments(limit=batch)
            if not report.claimed:
                return steps, batches
            steps += report.advanced_steps
            batches += 1

    def bare() -> tuple[int, int]:
        steps = batches = 0
        while True:
            rows = database.execute(BARE_DRAIN_SQL, [database.second_step, batch])
            if not rows:
                return steps, batches
            steps += rows
            batches += 1

    for name, drain in (("bare", bare), ("ours", ours)) if bare_first else (("ours", ours), ("bare", bare)):
        database.reset(due=True)
        result[f"drain_{name}"] = timed_drain(database, drain)
        assert result[f"drain_{name}"]["steps"] == contacts, result[f"drain_{name}"]
        assert database.due_count() == 0
    result["drain_vs_bare"] = result["drain_ours"]["steps_per_second"] / result["drain_bare"]["steps_per_second"]
    database.reset(due=False)
    return result


def run_round(database: str, var_dir: Path, args: argparse.Namespace, bare_first: bool) -> dict[str, Any]:
    command = [PYTHON, __file__, "--measure", database, "--contacts", str(args.contacts)]
    command += ["--ticks", str(args.ticks), "--claims", str(args.claims)]
    if bare_first:
        command.append("--bare-first")
    output = subprocess.run(
        command, env=django_env(database, var_dir), check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


# Reporting -----------------------------------------------------------------------------------


def best(rounds: list[dict[str, Any]], contacts: int) -> dict[str, Any]:
    """The best round of each figure: lowest p95s, highest drain rates (and their ratio)."""
    chosen = max(rounds, key=lambda result: result["drain_vs_bare"])
    return {
        "active_enrollments": rounds[0]["active_enrollments"],
        "empty_tick_p95_ms": round(min(result["empty_tick_p95_ms"] for result in rounds), 3),
        "claim_1000_p95_ms": round(min(result["claim_1000_p95_ms"] for result in rounds), 3),
        "empty_tick_median_ms": round(min(result["empty_tick_median_ms"] for result in rounds), 3),
        "claim_1000_median_ms": round(min(result["claim_1000_median_ms"] for result in rounds), 3),
        "drain_steps_per_second": round(max(result["drain_ours"]["steps_per_second"] for result in rounds), 1),
        "bare_sql_steps_per_second": round(max(result["drain_bare"]["steps_per_second"] for result in rounds), 1),
        "drain_vs_bare": round(chosen["drain_vs_bare"], 3),
        "drain_cpu_us_per_step": {
            "python": round(chosen["drain_ours"]["python_cpu_seconds"] * 1e6 / contacts, 2),
            "postgres": round(chosen["drain_ours"]["backend_cpu_seconds"] * 1e6 / contacts, 2),
        },
        "bare_sql_cpu_us_per_step": {
            "python": round(chosen["drain_bare"]["python_cpu_seconds"] * 1e6 / contacts, 2),
            "postgres": round(chosen["drain_bare"]["backend_cpu_seconds"] * 1e6 / contacts, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="measurements per database (default 3)")
    parser.add_argument("--ticks", type=int, default=300, help="empty ticks timed per round")
    parser.add_argument("--claims", type=int, default=60, help="claims of 1,000 timed per round")
    parser.add_argument("--contacts", type=int, default=CONTACTS, help="contacts, and due enrollments")
    parser.add_argument("--keep-db", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--reuse-db", action="store_true", help="measure databases kept by an earlier --keep-db run")
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--sequences", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--bare-first", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        setup_django()
        build_in_process(args.sequences, args.contacts)
        return
    if args.measure:
        setup_django()
        from django.conf import settings

        batch = settings.ENGINE_CLAIM_BATCH_SIZE
        print(json.dumps({"batch": batch, **measure(args.contacts, args.ticks, args.claims, batch, args.bare_first)}))
        return

    var_dir = Path(tempfile.mkdtemp(prefix="emailseq-bench-scheduler-"))
    results: dict[str, list[dict[str, Any]]] = {scale: [] for scale in SCALES}
    try:
        if not args.reuse_db:
            for database, sequences in SCALES.values():
                print(f"Building {database}: {args.contacts * sequences:,} active enrollments ...", flush=True)
                started = time.monotonic()
                build(database, sequences, args.contacts, var_dir)
                print(f"  built in {time.monotonic() - started:.0f} s", flush=True)
        for number in range(args.rounds):
            order = list(SCALES) if number % 2 == 0 else list(reversed(SCALES))
            for scale in order:
                print(f"Round {number + 1}, {scale} ...", flush=True)
                result = run_round(SCALES[scale][0], var_dir, args, bare_first=number % 2 == 1)
                results[scale].append(result)
                print(
                    f"  empty tick p95 {result['empty_tick_p95_ms']:.2f} ms (median {result['empty_tick_median_ms']:.2f}),"
                    f" claim 1,000 p95 {result['claim_1000_p95_ms']:.1f} ms (median {result['claim_1000_median_ms']:.1f}),"
                    f" drain {result['drain_ours']['steps_per_second']:,.0f} "
                    f"steps/s, bare SQL {result['drain_bare']['steps_per_second']:,.0f} steps/s",
                    flush=True,
                )
    finally:
        if not args.keep_db:
            for database, _ in SCALES.values():
                drop_database(database)
        shutil.rmtree(var_dir, ignore_errors=True)

    small, large = best(results["100k"], args.contacts), best(results["1M"], args.contacts)
    scale_ratios = {
        "empty_tick_p95": round(large["empty_tick_p95_ms"] / small["empty_tick_p95_ms"], 3),
        "claim_1000_p95": round(large["claim_1000_p95_ms"] / small["claim_1000_p95_ms"], 3),
        # A rate: how many times slower the 1M drain is.
        "drain_steps_per_second": round(small["drain_steps_per_second"] / large["drain_steps_per_second"], 3),
    }
    # Information: medians move less than p95s on a shared machine.
    median_ratios = {
        "empty_tick_median": round(large["empty_tick_median_ms"] / small["empty_tick_median_ms"], 3),
        "claim_1000_median": round(large["claim_1000_median_ms"] / small["claim_1000_median_ms"], 3),
    }
    met = {
        "drain_vs_bare": min(small["drain_vs_bare"], large["drain_vs_bare"]) >= TARGET_DRAIN_VS_BARE_MIN,
        "scale_ratio": max(scale_ratios.values()) <= TARGET_SCALE_RATIO_MAX,
        "empty_tick_p95": max(small["empty_tick_p95_ms"], large["empty_tick_p95_ms"]) < TARGET_EMPTY_TICK_P95_MS_MAX,
    }
    figures = {
        "benchmark": "scheduler_scale",
        "due": args.contacts,
        "claim_batch_size": results["100k"][0]["batch"],
        "rounds": args.rounds,
        "100k": small,
        "1M": large,
        "scale_ratios_1M_over_100k": scale_ratios,
        "median_ratios_1M_over_100k": median_ratios,
        "rounds_detail": {
            scale: [
                {
                    "empty_tick_p95_ms": round(result["empty_tick_p95_ms"], 3),
                    "claim_1000_p95_ms": round(result["claim_1000_p95_ms"], 3),
                    "drain_steps_per_second": round(result["drain_ours"]["steps_per_second"], 1),
                    "bare_sql_steps_per_second": round(result["drain_bare"]["steps_per_second"], 1),
                }
                for result in rounds
            ]
            for scale, rounds in results.items()
        },
        **machine(),
        "targets": {
            "drain_vs_bare_min": TARGET_DRAIN_VS_BARE_MIN,
            "scale_ratio_max": TARGET_SCALE_RATIO_MAX,
            "empty_tick_p95_ms_max": TARGET_EMPTY_TICK_P95_MS_MAX,
        },
        "met": met,
    }

    print()
    print(
        f"Scheduler scale: {args.contacts:,} due delay steps, claim batch {figures['claim_batch_size']}, best of {args.rounds}"
    )
    print(f"  {'':28}{'100k':>14}{'1M':>14}{'1M / 100k':>12}")
    rows = (
        ("empty tick p95 (ms)", "empty_tick_p95_ms", "empty_tick_p95", ".2f"),
        ("claim 1,000 p95 (ms)", "claim_1000_p95_ms", "claim_1000_p95", ".1f"),
        ("  median (ms)", "claim_1000_median_ms", "claim_1000_median", ".1f"),
        ("drain, ours (steps/s)", "drain_steps_per_second", "drain_steps_per_second", ",.0f"),
        ("drain, bare SQL (steps/s)", "bare_sql_steps_per_second", None, ",.0f"),
        ("ours / bare SQL", "drain_vs_bare", None, ".3f"),
    )
    for label, key, ratio_key, spec in rows:
        ratio = f"{({**scale_ratios, **median_ratios})[ratio_key]:>12.3f}" if ratio_key else ""
        print(f"  {label:28}{small[key]:>14{spec}}{large[key]:>14{spec}}{ratio}")
    for scale, figures_ in (("100k", small), ("1M", large)):
        print(
            f"  CPU per step, {scale:4}: ours {figures_['drain_cpu_us_per_step']['python']} us Python + "
            f"{figures_['drain_cpu_us_per_step']['postgres']} us PostgreSQL; bare SQL "
            f"{figures_['bare_sql_cpu_us_per_step']['postgres']} us PostgreSQL"
        )
    print(
        f"  targets: ours / bare >= {TARGET_DRAIN_VS_BARE_MIN} {met['drain_vs_bare']}; 1M / 100k <= "
        f"{TARGET_SCALE_RATIO_MAX} {met['scale_ratio']}; empty tick p95 < {TARGET_EMPTY_TICK_P95_MS_MAX} ms "
        f"{met['empty_tick_p95']}"
    )
    print(f"  load average {figures['load_average']} on {figures['cpus']} CPUs")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
