"""Live dashboards under load: events published through analytics.live reach connected clients.

The server: daphne (`--servers` processes, default 1) with the Redis channel layer
(BENCH_REDIS_URL, default redis://127.0.0.1:6379/14, flushed at the start) and PostgreSQL (the
consumers look up API keys and sequences when a client connects). `--clients` WebSocket clients
(default 1,000, the `websockets` library in this process) follow `/ws/events/` of
`--organizations` organizations (default 1,000: one dashboard per organization, so 1,000 events
a second are 1,000 deliveries a second; `--organizations 100` puts 10 dashboards on each and
makes it 10,000), each with its organization's API key. A separate process publishes `--rate`
events per second (default 1,000) for `--seconds` (default 10) through
`analytics.live.events_publish`, spread evenly over the organizations, each event with its
sequence (so two groups per event, as in production).
The publisher calls events_publish every `--tick-ms` (default 10) with the events due, as a busy
drainer does (analytics.intake publishes each drained batch with one call); `--tick-ms 0`
publishes each event with a call of its own.

Each event carries the time it was published (`occurred_at`) and a unique number
(`message_id`). A client notes when each frame arrives: latency is arrival minus publication,
on one machine's clock. An event is delivered once to each client of its organization, so
`expected` is events x clients per organization; `lost` is expected minus distinct deliveries,
counted once nothing has arrived for 2 s (a late frame is slow, not lost).
CPU time of daphne, of the publisher and of the clients is reported per 1,000 deliveries.

Usage: .venv/bin/python bench/websocket_fanout.py [--clients 1000] [--organizations 1000]
    [--rate 1000] [--seconds 10] [--tick-ms 10] [--servers 1] [--keep-db] [--profile DIR]
Targets: p99 under 500 ms, no event lost.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PYTHON,
    REPO,
    create_database,
    django_env,
    drop_database,
    free_port,
    machine,
    migrate,
    percentile,
    process_cpu_seconds,
    setup_django,
)

DATABASE = "emailseq_bench_websocket"
TARGET_P99_MS = 500
TARGET_LOST = 0
QUIET_SECONDS = 2.0
DRAIN_LIMIT_SECONDS = 120.0


# Set-up (a process of its own, with Django) --------------------------------------------------


def prepare(env: dict[str, str], organizations: int) -> list[dict[str, Any]]:
    """`organizations` organizations, each with a sequence and a read key."""
    setup_django(env)
    from organizations.models import ApiKey
    from organizations.services import api_key_create, organization_create
    from sequences.models import Sequence

    made = []
    for number in range(organizations):
        organization = organization_create(name=f"Bench {number}", slug=f"bench-{number}")
        sequence = Sequence.objects.create(organization=organization, name=f"Bench {number}")
        _, raw = api_key_create(organization=organization, name="dashboard", scope=ApiKey.Scope.READ)
        made.append({"organization_id": organization.pk, "sequence_id": sequence.pk, "key": raw})
    return made


# The publisher (a process of its own, with Django) -------------------------------------------


def publish(env: dict[str, str], targets: list[dict[str, Any]], rate: int, seconds: float, tick_ms: float) -> None:
    """Publish rate x seconds events on schedule; print one JSON line with what it did."""
    setup_django(env)
    from analytics import live

    total = int(rate * seconds)
    live.events_publish([])  # import and connect outside the measured time
    warm = targets[0]
    live.events_publish([{"organization_id": warm["organization_id"], "type": "warm", "message_id": -1}])
    cpu_before = time.process_time()
    started = time.monotonic()
    calls = 0
    sent = 0
    behind_max = 0.0
    while sent < total:
        now = time.monotonic()
        due = min(total, int((now - started) * rate) + 1)
        if tick_ms > 0:
            batch = []
            while sent < due:
                target = targets[sent % len(targets)]
                batch.append(_event(target, sent))
                sent += 1
            if batch:
                live.events_publish(batch)
                calls += 1
        elif sent < due:
            live.events_publish([_event(targets[sent % len(targets)], sent)])
            calls += 1
            sent += 1
        behind_max = max(behind_max, (now - started) - sent / rate)
        next_due = started + (sent / rate if tick_ms <= 0 else (now - started) + tick_ms / 1000)
        pause = next_due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    print(json.dumps({"events": sent, "calls": calls, "wall_s": wall, "cpu_s": cpu, "behind_max_s": behind_max}))


def _event(target: dict[str, Any], number: int) -> dict[str, Any]:
    return {
        "organization_id": target["organization_id"],
        "sequence_id": target["sequence_id"],
        "step_id": 1,
        "message_id": number,
        "type": "open",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "is_machine": False,
        "url": "",
    }


# The clients (this process) ------------------------------------------------------------------


class Client:
    def __init__(self, organization_id: int) -> None:
        self.organization_id = organization_id
        self.received: set[int] = set()
        self.duplicates = 0
        self.foreign = 0
        self.latencies: list[float] = []


async def client_run(client: Client, url: str, key: str, ready: asyncio.Event, stop: asyncio.Event) -> None:
    import websockets

    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=60, max_queue=None
    ) as connection:
        ready.set()
        closer = asyncio.create_task(_close_when(stop, connection))
        try:
            async for text in connection:
                arrived = time.time()
                event = json.loads(text)["event"]
                if event["type"] == "warm":
                    continue
                if event["organization_id"] != client.organization_id:
                    client.foreign += 1
                number = event["message_id"]
                if number in client.received:
                    client.duplicates += 1
                    continue
                client.received.add(number)
                client.latencies.append(arrived - dt.datetime.fromisoformat(event["occurred_at"]).timestamp())
        finally:
            closer.cancel()


async def _close_when(stop: asyncio.Event, connection: Any) -> None:
    await stop.wait()
    await connection.close()


async def clients_run(
    args: argparse.Namespace, env: dict[str, str], targets: list[dict[str, Any]], servers: dict[int, int]
) -> dict:
    """Connect the clients to the servers (port -> pid), publish, and collect what arrived."""
    ports = list(servers)
    clients = [Client(targets[n % len(targets)]["organization_id"]) for n in range(args.clients)]
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in clients]
    tasks = []
    connect_started = time.monotonic()
    # Connect in waves: a thousand handshakes at once would time out on a small machine.
    for number, client in enumerate(clients):
        target = targets[number % len(targets)]
        url = f"ws://127.0.0.1:{ports[number % len(ports)]}/ws/events/"
        tasks.append(asyncio.create_task(client_run(client, url, target["key"], readies[number], stop)))
        if number % 50 == 49:
            await asyncio.gather(*(ready.wait() for ready in readies[: number + 1]))
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), timeout=120)
    connect_seconds = time.monotonic() - connect_started

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu_before = sum(process_cpu_seconds(pid) for pid in servers.values())
    publisher = await asyncio.create_subprocess_exec(
        PYTHON,
        __file__,
        "--publisher",
        json.dumps({"targets": targets, "rate": args.rate, "seconds": args.seconds, "tick_ms": args.tick_ms}),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await publisher.communicate()
    # Late is not lost: wait until nothing has arrived for QUIET_SECONDS (or DRAIN_LIMIT_SECONDS).
    drain_started = time.monotonic()
    previous = -1
    while time.monotonic() - drain_started < DRAIN_LIMIT_SECONDS:
        count = sum(len(client.received) for client in clients)
        if count == previous:
            break
        previous = count
        await asyncio.sleep(QUIET_SECONDS)
    server_cpu = sum(process_cpu_seconds(pid) for pid in servers.values()) - server_cpu_before
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    publisher_figures = json.loads(output.decode().strip().splitlines()[-1])
    client_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "clients": clients,
        "connect_seconds": connect_seconds,
        "publisher": publisher_figures,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
    }


def start_daphne(env: dict[str, str], port: int, profile: str | None) -> subprocess.Popen:
    profiler = ["-m", "cProfile", "-o", str(Path(profile) / f"daphne-{port}.prof")] if profile else []
    server = subprocess.Popen(
        [PYTHON, *profiler, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "emailseq.asgi:application"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("daphne exited") from None
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("daphne did not start")


def raise_open_files_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--organizations", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tick-ms", type=float, default=10.0)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--profile", metavar="DIR", help="run daphne under cProfile, writing DIR/daphne-PORT.prof")
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        job = json.loads(args.publisher)
        publish(dict(os.environ), job["targets"], job["rate"], job["seconds"], job["tick_ms"])
        return

    open_files = raise_open_files_limit(args.clients * 2 + 1_000)  # daphne inherits it
    var_dir = tempfile.mkdtemp(prefix="emailseq-bench-websocket-")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    env = django_env(DATABASE, var_dir, REDIS_URL=redis_url)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    create_database(DATABASE)
    migrate(env)
    prepared = subprocess.run(
        [
            PYTHON,
            "-c",
            f"import sys, json; sys.path.insert(0, {str(REPO)!r}); from bench.websocket_fanout import prepare; "
            f"import os; print(json.dumps(prepare(dict(os.environ), {args.organizations})))",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    targets = json.loads(prepared.stdout.strip().splitlines()[-1])

    ports = [free_port() for _ in range(args.servers)]
    servers = [start_daphne(env, port, args.profile) for port in ports]
    try:
        outcome = asyncio.run(clients_run(args, env, targets, dict(zip(ports, [s.pid for s in servers], strict=True))))
        server_cpu = outcome["server_cpu_s"]
    finally:
        for server in servers:
            # SIGINT stops the reactor and lets a profiler write its file.
            os.killpg(server.pid, signal.SIGINT if args.profile else signal.SIGTERM)
        for server in servers:
            server.wait(timeout=30)
    if not args.keep_db:
        drop_database(DATABASE)

    clients: list[Client] = outcome["clients"]
    publisher = outcome["publisher"]
    per_organization: dict[int, int] = defaultdict(int)
    for client in clients:
        per_organization[client.organization_id] += 1
    events = publisher["events"]
    expected = sum(per_organization[targets[n % len(targets)]["organization_id"]] for n in range(events))
    received = sum(len(client.received) for client in clients)
    lost = expected - received
    duplicates = sum(client.duplicates for client in clients)
    foreign = sum(client.foreign for client in clients)
    latencies = [latency for client in clients for latency in client.latencies]
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    worst = max(latencies, default=float("nan")) * 1000
    deliveries_per_second = received / publisher["wall_s"]
    per_thousand = 1000 / max(received, 1)

    print(f"machine: {machine()}; open files limit {open_files}")
    print(
        f"daphne x{args.servers}, Redis channel layer; {args.clients} clients over {args.organizations} organizations "
        f"(connected in {outcome['connect_seconds']:.1f} s)"
    )
    print(
        f"published {events:,} events in {publisher['wall_s']:.2f} s with {publisher['calls']:,} calls "
        f"(at most {publisher['behind_max_s'] * 1000:.0f} ms behind schedule)"
    )
    print(f"  deliveries expected / received   {expected:,} / {received:,} ({deliveries_per_second:,.0f} per second)")
    print(f"  lost / duplicated / foreign      {lost:,} / {duplicates:,} / {foreign:,}")
    print(f"  latency p50 / p99 / max          {p50:.0f} ms / {p99:.0f} ms / {worst:.0f} ms")
    print(f"  daphne CPU per 1,000 deliveries  {server_cpu * per_thousand * 1000:.1f} ms ({server_cpu:.1f} s in all)")
    print(f"  publisher CPU per 1,000 events   {publisher['cpu_s'] / max(events, 1) * 1_000_000:.1f} ms")
    print(f"  clients CPU per 1,000 deliveries {outcome['client_cpu_s'] * per_thousand * 1000:.1f} ms")
    result = {
        "benchmark": "websocket_fanout",
        "servers": args.servers,
        "clients": args.clients,
        "organizations": args.organizations,
        "rate": args.rate,
        "seconds": args.seconds,
        "tick_ms": args.tick_ms,
        "events": events,
        "publish_calls": publisher["calls"],
        "publisher_behind_max_ms": round(publisher["behind_max_s"] * 1000, 1),
        "deliveries_expected": expected,
        "deliveries_received": received,
        "deliveries_per_second": round(deliveries_per_second),
        "lost": lost,
        "duplicated": duplicates,
        "foreign": foreign,
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(worst, 1),
        "daphne_cpu_ms_per_1000_deliveries": round(server_cpu * per_thousand * 1000, 1),
        "publisher_cpu_ms_per_1000_events": round(publisher["cpu_s"] / max(events, 1) * 1_000_000, 1),
        "clients_cpu_ms_per_1000_deliveries": round(outcome["client_cpu_s"] * per_thousand * 1000, 1),
        "load_average": machine()["load_average"],
        "targets": {"p99_ms": TARGET_P99_MS, "lost": TARGET_LOST},
        "met": {"p99_ms": p99 < TARGET_P99_MS, "lost": lost <= TARGET_LOST and foreign == 0},
    }
    print(json.dumps(result))
    if not all(result["met"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
