"""How long the analytics endpoint takes with 10,000,000 events behind a sequence, and whether
that depends on the volume.

Two sequences of one organization on PostgreSQL, each with three email steps over the same 90
days: one with 100,000 events (`--small`), one with 10,000,000 (`--events`). Contacts,
enrollments, messages and events are generated in SQL (seeding is not timed), every message and
event gets its pending fact, as the product's write paths add them, and the product's flush
(`analytics.services.rollups_flush`) folds them into the rollups (timed: facts per second).

Timed: GET /api/v1/email-sequences/{id}/analytics (the default: all time, day series) through
Django's full request stack in this process (authentication by API key, permissions, selectors,
serializers; no HTTP server, so that the figure is the endpoint's own), `--requests` times per
sequence, alternating between them after a warm-up. Also reported: the hourly series of the
last 7 days.

Targets: p50 under 50 ms and p99 under 200 ms with 10M events, and p50 within 1.5x of the
100k-event sequence's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import create_database, django_env, drop_database, machine, migrate, percentile, setup_django

DATABASE = "emailseq_bench_analytics"
TARGET_P50_MS = 50
TARGET_P99_MS = 200
TARGET_VOLUME_FACTOR = 1.5
DAYS = 90
EVENTS_PER_MESSAGE = 10


def seed(organization_id: int, name: str, events: int) -> tuple[int, int, int]:
    """A sequence with `events` events on events / 10 messages; returns (sequence id, messages,
    facts written)."""
    from django.db import connection

    from sequences.models import EmailTemplate, Sequence, Step

    messages = max(1, events // EVENTS_PER_MESSAGE)
    sequence = Sequence.objects.create(
        organization_id=organization_id, name=name, status=Sequence.Status.ACTIVE, from_email="news@bench.example"
    )
    steps = []
    for position in (1, 2, 3):
        template = EmailTemplate.objects.create(
            organization_id=organization_id, name=f"{name} {position}", subject="Hi", html_body="<p>Hi</p>"
        )
        steps.append(
            Step.objects.create(
                organization_id=organization_id, sequence=sequence, position=position, kind="email", template=template
            ).pk
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers_contact")
        first_contact = cursor.fetchone()[0] + 1
        cursor.execute(
            "INSERT INTO subscribers_contact (organization_id, email, first_name, last_name, status, properties, "
            "timezone, consent_source, created_at, updated_at) "
            "SELECT %s, 'p' || g || '.' || %s || '@bench.example', '', '', 'active', '{}', '', 'bench', now(), now() "
            "FROM generate_series(1, %s) g",
            [organization_id, sequence.pk, messages // 3 + 1],
        )
        cursor.execute(
            "INSERT INTO sequences_enrollment (organization_id, contact_id, sequence_id, status, exit_reason, "
            "enrolled_at, finished_at) SELECT %s, id, %s, 'completed', '', now() - interval '90 days', now() "
            "FROM subscribers_contact WHERE id >= %s RETURNING id",
            [organization_id, sequence.pk, first_contact],
        )
        enrollments = [row[0] for row in cursor.fetchall()]
        # Each enrollment gets one message per step, sent across the 90 days.
        cursor.execute(
            "INSERT INTO delivery_message (organization_id, enrollment_id, step_id, sequence_id, contact_id, status, "
            "attempts, subject, recipient, message_id_header, links, response, created_at, sent_at, "
            "provider_message_id) "
            "SELECT e.organization_id, e.id, s.step, e.sequence_id, e.contact_id, 'sent', 1, 'Hi', '', '', "
            "'[\"https://shop.example/a\", \"https://shop.example/b\"]'::jsonb, '250 ok', t.at, t.at, '' "
            "FROM sequences_enrollment e CROSS JOIN unnest(%s::bigint[]) AS s(step) "
            "CROSS JOIN LATERAL (SELECT now() - interval '90 days' + (random() * interval '89 days') AS at) t "
            "WHERE e.id = ANY(%s) LIMIT %s",
            [steps, enrollments, messages],
        )
        cursor.execute("SELECT MIN(id), COUNT(*) FROM delivery_message WHERE sequence_id = %s", [sequence.pk])
        first_message, message_count = cursor.fetchone()
        # Events: ~10 per message, of every type, some by machines, hours to days after sending.
        cursor.execute(
            "INSERT INTO delivery_event (organization_id, message_id, contact_id, type, occurred_at, user_agent, url, "
            "is_machine, machine_reason, detail, dedupe_key) "
            "SELECT m.organization_id, m.id, m.contact_id, k.type, m.sent_at + (g %% 97) * interval '1 hour', '', "
            "CASE WHEN k.type = 'click' THEN m.links ->> (g %% 2) ELSE '' END, g %% 7 = 0, '', '', '' "
            "FROM generate_series(0, %s - 1) g "
            "JOIN delivery_message m ON m.id = %s + (g %% %s) "
            "CROSS JOIN LATERAL (SELECT (ARRAY['open','open','open','open','click','click','delivered',"
            "'open','unsubscribe','complaint','bounce','soft_bounce'])[1 + (g / %s) %% 12] AS type) k",
            [events, first_message, message_count, message_count],
        )
        cursor.execute(
            "INSERT INTO analytics_pendingfact (organization_id, kind, object_id) "
            "SELECT organization_id, 'message', id FROM delivery_message WHERE sequence_id = %s ORDER BY id",
            [sequence.pk],
        )
        facts = cursor.rowcount
        cursor.execute(
            "INSERT INTO analytics_pendingfact (organization_id, kind, object_id) "
            "SELECT e.organization_id, 'event', e.id FROM delivery_event e "
            "WHERE e.message_id BETWEEN %s AND %s ORDER BY e.id",
            [first_message, first_message + message_count - 1],
        )
        facts += cursor.rowcount
        cursor.execute(
            "INSERT INTO analytics_pendingfact (organization_id, kind, object_id) "
            "SELECT organization_id, 'enrolled', id FROM sequences_enrollment WHERE id = ANY(%s)",
            [enrollments],
        )
        facts += cursor.rowcount
    return sequence.pk, message_count, facts


def reused(label: str) -> dict[str, object]:
    """The figures of a sequence seeded and flushed by an earlier run (--keep-db)."""
    from django.db import connection

    from analytics.models import FunnelRollup, LinkRollup
    from sequences.models import Sequence

    sequence = Sequence.objects.get(name=label)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM delivery_event e "
            "JOIN delivery_message m ON m.id = e.message_id WHERE m.sequence_id = %s",
            [sequence.pk],
        )
        events, messages = cursor.fetchone()
    print(f"{label}: reusing {events:,} events on {messages:,} messages from an earlier run (flush not timed)")
    return {
        "sequence_id": sequence.pk,
        "events": events,
        "messages": messages,
        "reused": True,
        "rollup_rows": FunnelRollup.objects.filter(sequence_id=sequence.pk).count(),
        "link_rollup_rows": LinkRollup.objects.filter(sequence_id=sequence.pk).count(),
    }


def timed_requests(client, paths: list[str], rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(rounds):
        for path in paths:
            started = time.perf_counter()
            response = client.get(path)
            timings[path].append(time.perf_counter() - started)
            assert response.status_code == 200, response.content[:300]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help="Measure again on the database a --keep-db run left (seeding and flushing take ~30 minutes).",
    )
    args = parser.parse_args()

    var_dir = tempfile.mkdtemp(prefix="emailseq-bench-analytics-")
    env = django_env(DATABASE, var_dir, API_RATE_PER_KEY="100000000/min", ALLOWED_HOSTS="testserver")
    if not args.reuse_db:
        create_database(DATABASE)
        migrate(env)
    setup_django(env)
    from django.db import connection
    from django.test import Client

    from analytics import services
    from analytics.models import FunnelRollup, LinkRollup
    from organizations.models import ApiKey
    from organizations.services import api_key_create, organization_create

    if args.reuse_db:
        from organizations.models import Organization

        organization = Organization.objects.get(slug="bench")
    else:
        organization = organization_create(name="Bench", slug="bench")
    _, raw_key = api_key_create(organization=organization, name="bench", scope=ApiKey.Scope.READ)

    volumes = {}
    for label, events in (("small", args.small), ("large", args.events)):
        if args.reuse_db:
            volumes[label] = reused(label)
            continue
        started = time.perf_counter()
        sequence_id, messages, facts = seed(organization.pk, label, events)
        seeded = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        cpu_started, started = time.process_time(), time.perf_counter()
        folded = services.rollups_flush()
        fold_wall, fold_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        assert folded == facts, (folded, facts)
        volumes[label] = {
            "sequence_id": sequence_id,
            "events": events,
            "messages": messages,
            "facts": facts,
            "seed_seconds": round(seeded, 1),
            "flush_seconds": round(fold_wall, 1),
            "flush_facts_per_second": round(facts / fold_wall),
            "flush_cpu_us_per_fact": round(fold_cpu / facts * 1e6, 1),
            "rollup_rows": FunnelRollup.objects.filter(sequence_id=sequence_id).count(),
            "link_rollup_rows": LinkRollup.objects.filter(sequence_id=sequence_id).count(),
        }
        print(
            f"{label}: {events:,} events on {messages:,} messages seeded in {seeded:.0f} s; "
            f"flush folded {facts:,} facts in {fold_wall:.0f} s ({facts / fold_wall:,.0f}/s, "
            f"{fold_cpu / facts * 1e6:.1f} µs CPU each in Python); "
            f"{volumes[label]['rollup_rows']:,} rollup rows"
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE analytics_funnelrollup")
        cursor.execute("VACUUM ANALYZE analytics_linkrollup")

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    paths = {label: f"/api/v1/email-sequences/{v['sequence_id']}/analytics" for label, v in volumes.items()}
    hourly = {label: f"{path}?period=hour" for label, path in paths.items()}
    timed_requests(client, [*paths.values(), *hourly.values()], 10)  # warm-up
    timings = timed_requests(client, [*paths.values(), *hourly.values()], args.requests)

    figures = {}
    for label in volumes:
        day, hour = timings[paths[label]], timings[hourly[label]]
        figures[label] = {
            "p50_ms": round(percentile(day, 0.5) * 1000, 1),
            "p99_ms": round(percentile(day, 0.99) * 1000, 1),
            "hourly_7_days_p50_ms": round(percentile(hour, 0.5) * 1000, 1),
            "hourly_7_days_p99_ms": round(percentile(hour, 0.99) * 1000, 1),
        }
    factor = figures["large"]["p50_ms"] / figures["small"]["p50_ms"]
    print(f"machine: {machine()}")
    print(f"GET {paths['large']} ({args.requests} requests per sequence, alternating, after 10 warm-up rounds)")
    for label in volumes:
        f = figures[label]
        print(
            f"  {volumes[label]['events']:>12,} events: p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms; "
            f"hourly (7 days) p50 {f['hourly_7_days_p50_ms']:.1f} ms, p99 {f['hourly_7_days_p99_ms']:.1f} ms"
        )
    print(f"  p50 with {args.events:,} events / with {args.small:,}: {factor:.2f}x")
    if not args.keep_db:
        connection.close()
        drop_database(DATABASE)
    result = {
        "benchmark": "analytics_latency",
        "volumes": volumes,
        "figures": figures,
        "p50_volume_factor": round(factor, 2),
        "targets": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS, "volume_factor": TARGET_VOLUME_FACTOR},
        "met": {
            "p50_ms": figures["large"]["p50_ms"] < TARGET_P50_MS,
            "p99_ms": figures["large"]["p99_ms"] < TARGET_P99_MS,
            "volume_factor": factor <= TARGET_VOLUME_FACTOR,
        },
    }
    print(json.dumps(result))
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)


if __name__ == "__main__":
    main()
