"""Shared fixtures: a real SMTP server, real processes, and the switches between the embedded
defaults and PostgreSQL + Redis (the suite runs unchanged on both; CI runs it on both)."""

from __future__ import annotations

import email
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection

from emailseq.celery import app as celery_app
from emailseq.environment import EmailConfig

REPO = Path(__file__).resolve().parent
USES_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
USES_REDIS = bool(settings.REDIS_URL)

requires_postgres = pytest.mark.skipif(not USES_POSTGRES, reason="needs DATABASE_URL=postgres://... (CI sets it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


# A real SMTP server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]

    def html(self) -> str:
        return self.parsed().get_body(preferencelist=("html",)).get_content()

    def text(self) -> str:
        return self.parsed().get_body(preferencelist=("plain",)).get_content()


class RecordingHandler:
    """Accepts everything, except the replies queued for a recipient with `reply_to_rcpt`.
    Offers PIPELINING like Postfix and most MTAs (aiosmtpd reads pipelined commands in order)."""

    def __init__(self, *, pipelining: bool = True) -> None:
        self.lock = threading.Lock()
        self.received: list[ReceivedMail] = []
        self.replies: dict[str, list[str]] = {}
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        with self.lock:
            queued = self.replies.get(address)
            reply = queued.pop(0) if queued else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.received.append(ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: queued"


class SmtpServer:
    def __init__(self, *, pipelining: bool = True) -> None:
        self.handler = RecordingHandler(pipelining=pipelining)
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def received(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.received)

    def reply_to_rcpt(self, address: str, *replies: str) -> None:
        """Answer RCPT TO for `address` with these replies, in order, before accepting it."""
        with self.handler.lock:
            self.handler.replies.setdefault(address, []).extend(replies)

    def wait_for(self, count: int, *, timeout: float = 60) -> list[ReceivedMail]:
        wait_until(lambda: len(self.received) >= count, timeout=timeout, what=f"{count} messages at the SMTP server")
        return self.received

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


@pytest.fixture
def smtp_route(settings, smtp_server: SmtpServer) -> SmtpServer:
    """Route this process's outgoing mail to the test SMTP server."""
    settings.EMAIL = EmailConfig(kind="smtp", host="127.0.0.1", port=smtp_server.port, timeout=10)
    return smtp_server


# Settings every test gets -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path: Path) -> Iterator[None]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MAILBOX_DIR = tmp_path / "mailbox"
    # Sequences start without a verified sending domain (tests of that check turn it on), and a
    # DNS check asks a local port where nothing answers, briefly: tests never reach real DNS.
    settings.REQUIRE_VERIFIED_SENDING_DOMAIN = False
    # Tracking hits are written in the request; tests of the Redis buffer turn it on.
    settings.TRACKING_BUFFER = False
    settings.DNS_NAMESERVERS = ["127.0.0.1"]
    settings.DNS_PORT = 9
    settings.DNS_TIMEOUT_SECONDS = 0.3
    # Routes lead to the test servers on 127.0.0.1 (tests of the address check turn it off).
    settings.ROUTE_ALLOW_PRIVATE_HOSTS = True
    # Sends run in the calling process unless a test starts real workers (send_workers).
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


# Real processes -----------------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database this test runs on (the test database), for child processes."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.postgresql":
        return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite://{Path(db['NAME']).resolve()}"


def process_env(tmp_path: Path, *, email_url: str | None = None, redis: bool = USES_REDIS) -> dict[str, str]:
    """Environment for a child process that works on this test's database."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL")}
    env.update(
        DATABASE_URL=database_url(),
        SECRET_KEY=settings.SECRET_KEY,
        VAR_DIR=str(tmp_path / "var"),
        BASE_URL=settings.BASE_URL,
        PYTHONUNBUFFERED="1",
        ROUTE_ALLOW_PRIVATE_HOSTS="1",
    )
    if redis and USES_REDIS:
        env["REDIS_URL"] = settings.REDIS_URL
    if email_url:
        env["EMAIL_URL"] = email_url
    return env


class WorkerProcesses:
    """Real Celery workers (PostgreSQL + Redis runs), or nothing on embedded defaults, where
    sends happen in the process that ticks."""

    def __init__(self, process: subprocess.Popen | None) -> None:
        self.process = process

    @property
    def real(self) -> bool:
        return self.process is not None


@pytest.fixture
def send_workers(tmp_path: Path, smtp_route: SmtpServer) -> Iterator[WorkerProcesses]:
    if not USES_REDIS:
        yield WorkerProcesses(None)
        return
    log = (tmp_path / "worker.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "emailseq", "worker", "-Q", "default,send", "-c", "2",
         "--loglevel", "INFO", "--purge", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=REPO,
        env=process_env(tmp_path, email_url=smtp_route.url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    celery_app.conf.task_always_eager = False
    try:
        wait_until(lambda: "ready." in Path(log.name).read_text(), timeout=60, what="the Celery worker to start")
        yield WorkerProcesses(process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# SMTP servers that can refuse, for delivery routes ---------------------------------------------


class SwitchableHandler(RecordingHandler):
    """Records like RecordingHandler, with the time each message's DATA ended (`arrivals`), and
    answers every MAIL FROM with `refusal` while it is set: a server that refuses everything."""

    def __init__(self) -> None:
        super().__init__()
        self.refusal: str | None = None
        self.refuse_after: int | None = None  # refuse once this many messages have arrived
        self.arrivals: list[float] = []
        self.mail_commands = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        with self.lock:
            self.mail_commands += 1
            full = self.refuse_after is not None and len(self.received) >= self.refuse_after
        if self.refusal is not None or full:
            return self.refusal or "421 4.3.2 Service not available, closing channel"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.arrivals.append(time.time())
            queue_id = f"Q{len(self.arrivals):06d}"
        await super().handle_DATA(server, session, envelope)
        return f"250 2.0.0 Ok: queued as {queue_id}"


class SwitchableSmtpServer(SmtpServer):
    def __init__(self) -> None:
        self.handler = SwitchableHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def refuse(self, reply: str | None = "421 4.3.2 Service not available, closing channel") -> None:
        """Answer every MAIL FROM with `reply` from now on; None accepts again."""
        self.handler.refusal = reply

    @property
    def arrivals(self) -> list[float]:
        with self.handler.lock:
            return list(self.handler.arrivals)


@pytest.fixture
def smtp_servers() -> Iterator[Callable[[], SwitchableSmtpServer]]:
    """Starts SMTP servers on demand (each a route's far end), and stops them afterwards."""
    started: list[SwitchableSmtpServer] = []

    def start() -> SwitchableSmtpServer:
        server = SwitchableSmtpServer()
        server.controller.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.controller.stop()
