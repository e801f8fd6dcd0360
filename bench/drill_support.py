"""The parts of the crash drill (bench/crash_drill.py): private servers it may restart, a
receiving SMTP server that remembers every session, and real Celery processes it may kill.

Everything here is started by the drill and only ever stopped by it: its own PostgreSQL
(initdb in a temporary directory, a free port), its own redis-server (a free port, nothing on
disk), its own aiosmtpd server, its own `celery worker` and `celery beat` processes, each in a
process group of its own. Nothing touches a server or process that someone else started.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _stop_group(process: subprocess.Popen, *, grace: float = 10.0) -> None:
    """SIGTERM to the process group the drill started, SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


# PostgreSQL ----------------------------------------------------------------------------------


def _postgres_bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    return Path(candidates[-1]).parent


class PrivatePostgres:
    """A PostgreSQL cluster of the drill's own. PostgreSQL refuses to run as root, so as root
    the cluster belongs to the `postgres` user and its programs run through runuser."""

    def __init__(self) -> None:
        self.bin = _postgres_bin_dir()
        self.port = free_port()
        self.directory = Path(tempfile.gettempdir()) / f"emailseq-drill-pg-{os.getpid()}-{self.port}"
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=timeout, cwd=self.directory
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}{result.stderr}")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, *extra,
        )  # fmt: skip

    def start(self) -> None:
        self.directory.mkdir(mode=0o700)
        if self.as_user:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self._pg_ctl("start")

    def restart(self) -> None:
        """Stop (fast: every connection is cut, open transactions roll back) and start again."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._pg_ctl("stop", "-m", "fast")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg2

        connection = psycopg2.connect(self.url(database), connect_timeout=5)
        connection.autocommit = True
        return connection

    def create_database(self, name: str) -> None:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()


# Redis ---------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the drill's own that keeps nothing on disk: a restart loses every
    queued task, as a crashed broker without persistence does."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(self.binary).exists():
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_for(self.answers, timeout=30, what="redis-server to answer")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self, downtime: float) -> None:
        """kill -9, stay down for `downtime` seconds, start again on the same port (empty)."""
        self.kill()
        time.sleep(downtime)
        self.start()

    def stop(self) -> None:
        if self.process:
            _stop_group(self.process, grace=5)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


# The receiving SMTP server -------------------------------------------------------------------


def message_id_of(data: bytes) -> int | None:
    """The message id carried by X-Emailseq-ID (delivery.composer): the signed token's payload
    is the id, packed big-endian in its first eight bytes. The drill reads it without the key."""
    start = data.find(b"\nX-Emailseq-ID:")
    if start < 0:
        return None
    end = data.find(b"\n", start + 1)
    token = data[start + len(b"\nX-Emailseq-ID:") : end].strip().decode("ascii")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return struct.unpack(">Q", raw[:8])[0]
    except (ValueError, struct.error):
        return None


@dataclass
class SmtpSession:
    number: int
    peer_port: int
    opened: float
    closed: float | None = None
    quit: bool = False
    accepted: list[int] = field(default_factory=list)  # message ids, in the order accepted


@dataclass(frozen=True)
class Arrival:
    message_id: int | None
    at: float
    session: int


class _Handler:
    def __init__(self, server: ReceivingServer) -> None:
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        self.server.accepted(server.drill_session, envelope.content)
        return "250 2.0.0 Ok: queued"

    async def handle_QUIT(self, server, session, envelope) -> Any:
        self.server.ended(server.drill_session, quit=True)
        return MISSING


class _SessionTrackingSMTP(SMTP):
    """aiosmtpd's server, numbering its connections and noting how each one ends (aiosmtpd has
    no handler hook for a client that vanishes without QUIT)."""

    def __init__(self, receiver: ReceivingServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receiver = receiver
        self.drill_session = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.drill_session = self.receiver.opened(self.session.peer[1])

    def connection_lost(self, error: Exception | None) -> None:
        self.receiver.ended(self.drill_session, quit=False)
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, receiver: ReceivingServer, **kwargs: Any) -> None:
        self.receiver = receiver
        super().__init__(_Handler(receiver), **kwargs)

    def factory(self) -> SMTP:
        return _SessionTrackingSMTP(self.receiver, self.handler, **self.SMTP_kwargs)


class ReceivingServer:
    """aiosmtpd on 127.0.0.1 that accepts everything and remembers, per SMTP session, which
    messages it accepted, in order, when the session ended and whether the client said QUIT."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.sessions: dict[int, SmtpSession] = {}
        self.arrivals: list[Arrival] = []
        self.controller = _Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=30)
        self.running = False

    def opened(self, peer_port: int) -> int:
        with self.lock:
            number = len(self.sessions) + 1
            self.sessions[number] = SmtpSession(number, peer_port, time.monotonic())
            return number

    def accepted(self, number: int, data: bytes) -> None:
        message_id = message_id_of(data)
        with self.lock:
            if message_id is not None:
                self.sessions[number].accepted.append(message_id)
            self.arrivals.append(Arrival(message_id, time.monotonic(), number))

    def ended(self, number: int, *, quit: bool) -> None:
        with self.lock:
            session = self.sessions.get(number)
            if session is None:
                return
            session.quit = session.quit or quit
            if session.closed is None:
                session.closed = time.monotonic()

    def open_sessions_by_port(self) -> dict[int, int]:
        """Peer port -> session number, for every session still open."""
        with self.lock:
            return {s.peer_port: s.number for s in self.sessions.values() if s.closed is None}

    def open_sessions(self) -> set[int]:
        with self.lock:
            return {s.number for s in self.sessions.values() if s.closed is None}

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def arrivals_since(self, index: int) -> list[Arrival]:
        with self.lock:
            return self.arrivals[index:]

    def start(self) -> None:
        self.controller.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False


# Celery processes ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    except OSError:
        pass
    return inodes


def _local_ports_by_inode() -> dict[int, int]:
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            ports[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports


@dataclass
class CeleryProcess:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        return "ready." in self.log.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The main process and its pool processes."""
        return [self.pid, *_children(self.pid)]


class CeleryProcesses:
    """`celery worker` (prefork, as `make worker` runs it) and `celery beat` processes, each in
    a process group of its own so that killing one takes exactly what the drill started."""

    def __init__(self, env: dict[str, str], directory: Path, *, concurrency: int = 1) -> None:
        self.env = env
        self.directory = directory
        self.concurrency = concurrency
        self.workers: list[CeleryProcess] = []
        self.beat: CeleryProcess | None = None
        self.started = 0

    def _spawn(self, name: str, arguments: list[str]) -> CeleryProcess:
        log = self.directory / f"{name}.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "emailseq", *arguments],
                cwd=REPO, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return CeleryProcess(name, process, log)

    def start_worker(self) -> CeleryProcess:
        self.started += 1
        name = f"worker-{self.started}"
        worker = self._spawn(
            name,
            ["worker", "-Q", "default,send", "--concurrency", str(self.concurrency), "-n", f"{name}@drill",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def start_beat(self) -> CeleryProcess:
        self.beat = self._spawn(
            "beat",
            ["beat", "--loglevel", "INFO", "--pidfile", str(self.directory / "beat.pid"),
             "-s", str(self.directory / "beat-schedule")],
        )  # fmt: skip
        return self.beat

    def sending(self, open_sessions_by_port: dict[int, int]) -> list[tuple[CeleryProcess, int, list[int]]]:
        """(worker, pid, session numbers) for each live process that holds an open SMTP session
        with the receiving server right now."""
        ports = _local_ports_by_inode()
        found = []
        for worker in self.workers:
            if not worker.alive():
                continue
            for pid in worker.pids():
                sessions = [
                    open_sessions_by_port[ports[inode]]
                    for inode in _socket_inodes(pid)
                    if ports.get(inode) in open_sessions_by_port
                ]
                if sessions:
                    found.append((worker, pid, sessions))
        return found

    def kill_worker(self, worker: CeleryProcess) -> None:
        """kill -9 of the whole worker: the main process and its pool processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.process.wait()
        self.workers.remove(worker)

    @staticmethod
    def kill_pool_process(pid: int) -> None:
        """kill -9 of the pool process running the task; the worker's main process lives on
        and starts a new one (the broker message comes back: reject_on_worker_lost)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for process in [*self.workers, *([self.beat] if self.beat else [])]:
            _stop_group(process.process)
        self.workers.clear()
        self.beat = None
