"""Helpers shared by the benchmarks: throw-away databases, the Django environment, CPU accounting."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The PostgreSQL server the benchmarks create their databases on (a superuser, trust auth).
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
# Every process of a run signs links with the same key.
SECRET_KEY = "bench-only-secret-key-not-for-production-0123456789abcdef"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# Databases -----------------------------------------------------------------------------------


def database_url(name: str) -> str:
    return f"{SERVER_URL}/{name}"


def _admin_connection() -> Any:
    import psycopg2

    connection = psycopg2.connect(database_url("postgres"))
    connection.autocommit = True
    return connection


def drop_database(name: str) -> None:
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def create_database(name: str, *, template: str | None = None) -> None:
    """A fresh, empty database (or a copy of `template`), replacing any left by an earlier run."""
    drop_database(name)
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        connection.close()


# Django --------------------------------------------------------------------------------------


def django_env(database: str, var_dir: str | Path, **extra: str) -> dict[str, str]:
    """The environment of a benchmark process: this database, no broker (Celery runs tasks in
    the calling process), DEBUG off (it would record every query), a shared signing key."""
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="emailseq.settings",
        DATABASE_URL=database_url(database),
        VAR_DIR=str(var_dir),
        SECRET_KEY=SECRET_KEY,
        DEBUG="0",
        LOG_LEVEL="WARNING",
        # The benchmark organizations send from example domains nobody can verify in DNS.
        REQUIRE_VERIFIED_SENDING_DOMAIN="0",
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL
    )


def setup_django(env: dict[str, str] | None = None) -> None:
    """Configure Django in this process (with exactly `env` as the environment, when given);
    call before importing any model."""
    if env is not None:
        for name in set(os.environ) - set(env):
            del os.environ[name]
        os.environ.update(env)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (for a server the benchmark starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_start(
    env: dict[str, str], *, workers: int, port: int, ready_path: str, options: tuple[str, ...] = ()
) -> Any:
    """gunicorn serving emailseq.wsgi with sync workers, once `ready_path` answers 200."""
    import http.client
    import time

    command = [
        str(Path(PYTHON).parent / "gunicorn"),
        "emailseq.wsgi",
        *options,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", ready_path)
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("gunicorn did not start")


def server_cpu_seconds(server: Any) -> float:
    """CPU of a server process and its worker processes so far."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return sum(process_cpu_seconds(pid) for pid in [server.pid, *map(int, children)])


# CPU accounting ------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on; the command name may contain spaces."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (any user's: /proc/PID/stat is world-readable)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_server_cpu_seconds() -> float | None:
    """CPU used so far by the whole PostgreSQL server: the postmaster, its live children and
    the children it has reaped. Includes every database and client on the server, so it is
    information only on a shared machine. None when the postmaster cannot be found."""
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW data_directory")
            data_directory = cursor.fetchone()[0]
        postmaster = int(Path(data_directory, "postmaster.pid").read_text().split()[0])
        fields = _stat_fields(postmaster)
    except (OSError, ValueError, IndexError):
        return None
    finally:
        connection.close()
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _stat_fields(int(entry.name))
        except OSError:
            continue
        if child[1] == str(postmaster):
            ticks += int(child[11]) + int(child[12])
    return ticks / CLOCK_TICKS


# Reporting -----------------------------------------------------------------------------------


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction 0.95 for p95)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average": load_average()}
