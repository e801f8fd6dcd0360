"""`manage.py bounce_server` as operators run it: a process of its own that takes a DSN over SMTP
and applies it to the database, and answers 451 (try again later) while the database is down."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, SmtpServer, free_port, process_env, wait_until
from deliverability.tests.bounce_mail import BOUNCE_DOMAIN, corpus_report, crlf, send_one
from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def bounce_server(tmp_path: Path, **env: str) -> Iterator[int]:
    port = free_port()
    log = (tmp_path / "bounce_server.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "bounce_server", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=REPO,
        env=process_env(tmp_path, redis=False) | {"BOUNCE_DOMAIN": BOUNCE_DOMAIN} | env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: "listening on" in Path(log.name).read_text() or process.poll() is not None,
            timeout=60,
            what="bounce_server to listen",
        )
        assert process.poll() is None, Path(log.name).read_text()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def data_reply(port: int, raw: bytes, *, to: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("")
        assert client.rcpt(to)[0] == 250
        return client.data(crlf(raw))


@pytest.fixture(autouse=True)
def _bounce_domain(settings) -> None:
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN


def test_bounce_server_runs_as_a_process_and_applies_a_dsn(tmp_path: Path, smtp_route: SmtpServer) -> None:
    sent = send_one(OrganizationFactory(), smtp_route)

    with bounce_server(tmp_path) as port:
        code, text = data_reply(port, corpus_report("lhost-postfix-04.eml", sent), to=sent.return_path)

    assert (code, text) == (250, b"2.0.0 Ok: 1 applied, 0 duplicate, 0 unmatched")
    assert Contact.objects.get(pk=sent.contact.pk).status == Contact.Status.BOUNCED


def test_bounce_server_answers_try_again_later_while_the_database_is_down(
    tmp_path: Path, smtp_route: SmtpServer
) -> None:
    sent = send_one(OrganizationFactory(), smtp_route)
    nowhere = f"postgres://emailseq:secret@127.0.0.1:{free_port()}/emailseq"

    with bounce_server(tmp_path, DATABASE_URL=nowhere) as port:
        code, text = data_reply(port, corpus_report("lhost-postfix-04.eml", sent), to=sent.return_path)

    # The reporting MTA keeps the report and delivers it again later: nothing is lost.
    assert code == 451 and text.startswith(b"4.3.0")
    assert Contact.objects.get(pk=sent.contact.pk).status == Contact.Status.ACTIVE
