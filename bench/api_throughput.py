"""Custom-event ingestion over HTTP, in batches of 500, against the production server setup.

The server: gunicorn (WSGI, sync workers; `--workers`, default 2 x CPUs + 1, our recommendation
for a small box: the API's requests spend much of their time waiting on PostgreSQL),
PostgreSQL, and Redis for the cache (API key lookups stay in the database; throttling counts in
Redis). The client: `--connections` threads, each with one keep-alive HTTP/1.1 connection,
posting batches of 500 events of known contacts until `--batches` have been sent.

Baselines measured in the same run, to read the figures on a noisy shared machine:
- `healthz_requests_per_second`: the same server answering its trivial health check (the cost
  of a request through gunicorn and Django with nothing to do);
- `direct_insert_events_per_second`: the same events written straight through the ORM with
  `bulk_create` in one process (the database's floor for this work).
CPU time of the gunicorn workers per 1,000 events is reported: it is the stable figure.

Usage: .venv/bin/python bench/api_throughput.py [--batches 200] [--workers N] [--connections N]
Needs PostgreSQL (BENCH_POSTGRES_URL) and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/13).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PYTHON,
    REPO,
    create_database,
    django_env,
    drop_database,
    free_port,
    gunicorn_start,
    machine,
    migrate,
    percentile,
    server_cpu_seconds,
    setup_django,
)

DATABASE = "emailseq_bench_api"
BATCH = 500
CONTACTS = 5_000
TARGET_P99_MS = 1_000.0
TARGET_EVENTS_PER_SECOND = 2_000.0


def prepare(env: dict[str, str]) -> str:
    """An organization with CONTACTS contacts and a write key; returns the key."""
    setup_django(env)
    from organizations.models import ApiKey
    from organizations.services import api_key_create, organization_create
    from subscribers.models import Contact

    organization = organization_create(name="Bench", slug="bench")
    Contact.objects.bulk_create(
        Contact(organization=organization, email=f"person{number}@bench.example") for number in range(CONTACTS)
    )
    _, raw = api_key_create(organization=organization, name="bench", scope=ApiKey.Scope.WRITE)
    return raw


def batch_body(number: int) -> bytes:
    events = [
        {
            "email": f"person{(number * BATCH + index) % CONTACTS}@bench.example",
            "name": "page_viewed" if index % 3 else "purchase",
            "properties": {"path": f"/pricing/{index}", "amount": index % 100},
            "occurred_at": "2026-11-30T12:00:00Z",
        }
        for index in range(BATCH)
    ]
    return json.dumps({"events": events}).encode()


def start_server(env: dict[str, str], workers: int, port: int) -> subprocess.Popen:
    return gunicorn_start(env, workers=workers, port=port, ready_path="/healthz", options=("--keep-alive", "30"))


def run_load(port: int, requests: list[tuple[str, str, bytes | None]], connections: int, headers: dict) -> tuple:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    queue = list(requests)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                method, path, body = queue.pop()
            started = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, statuses


def direct_insert_baseline(env: dict[str, str], batches: int) -> float:
    """Events per second written with bulk_create in this process, same rows."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(REPO)!r})
import django; django.setup()
from django.utils.dateparse import parse_datetime
from subscribers.models import Contact, ContactEvent
from bench.api_throughput import batch_body
contacts = dict(Contact.objects.values_list("email", "id"))
org = Contact.objects.values_list("organization_id", flat=True).first()
start = time.perf_counter()
for number in range({batches}):
    events = json.loads(batch_body(number))["events"]
    ContactEvent.objects.bulk_create(
        ContactEvent(organization_id=org, contact_id=contacts[item["email"]], name=item["name"],
                     properties=item["properties"], occurred_at=parse_datetime(item["occurred_at"]))
        for item in events
    )
print(({batches} * {BATCH}) / (time.perf_counter() - start))
"""
    output = subprocess.run([PYTHON, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return float(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    connections = args.connections or args.workers

    var_dir = tempfile.mkdtemp(prefix="emailseq-bench-api-")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    env = django_env(DATABASE, var_dir, REDIS_URL=redis_url, API_RATE_PER_KEY="100000000/min")
    create_database(DATABASE)
    migrate(env)
    raw_key = (
        subprocess.run(
            [
                PYTHON,
                "-c",
                f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.api_throughput import prepare; "
                "import os; print(prepare(dict(os.environ)))",
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    port = free_port()
    server = start_server(env, args.workers, port)
    try:
        headers = {"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"}
        # Warm every worker (imports, connections) before timing.
        run_load(
            port, [("POST", "/api/v1/events/", batch_body(n)) for n in range(args.workers * 2)], connections, headers
        )

        health_requests = [("GET", "/healthz", None)] * 2_000
        health_wall, _, _ = run_load(port, health_requests, connections, {})
        healthz_rps = len(health_requests) / health_wall

        bodies = [("POST", "/api/v1/events/", batch_body(n)) for n in range(args.batches)]
        cpu_before = server_cpu_seconds(server)
        wall, latencies, statuses = run_load(port, bodies, connections, headers)
        cpu_used = server_cpu_seconds(server) - cpu_before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    direct = direct_insert_baseline(env, min(args.batches, 100))
    events = args.batches * BATCH
    events_per_second = events / wall
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    ok = statuses.get(201, 0) + statuses.get(200, 0) == args.batches

    print(f"machine: {machine()}")
    print(f"server: gunicorn, {args.workers} sync workers; client: {connections} keep-alive connections")
    print(f"sent {args.batches} batches of {BATCH} events ({events:,} events) in {wall:.2f} s; statuses {statuses}")
    print(f"  events per second           {events_per_second:,.0f}")
    print(f"  batch latency p50 / p99     {p50:.0f} ms / {p99:.0f} ms")
    print(f"  server CPU per 1,000 events {cpu_used / events * 1000 * 1000:.1f} ms")
    print(f"baseline: /healthz            {healthz_rps:,.0f} requests/s on the same server")
    print(f"baseline: direct bulk insert  {direct:,.0f} events/s (ratio HTTP/direct {events_per_second / direct:.2f})")
    if not args.keep_db:
        drop_database(DATABASE)
    result = {
        "benchmark": "api_throughput",
        "workers": args.workers,
        "connections": connections,
        "batch_size": BATCH,
        "events": events,
        "events_per_second": round(events_per_second),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "server_cpu_ms_per_1000_events": round(cpu_used / events * 1_000_000, 1),
        "healthz_requests_per_second": round(healthz_rps),
        "direct_insert_events_per_second": round(direct),
        "ratio_to_direct_insert": round(events_per_second / direct, 3),
        "all_batches_accepted": ok,
        "targets": {"events_per_second": TARGET_EVENTS_PER_SECOND, "p99_ms": TARGET_P99_MS},
        "met": {
            "events_per_second": events_per_second >= TARGET_EVENTS_PER_SECOND,
            "p99_ms": p99 <= TARGET_P99_MS,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
