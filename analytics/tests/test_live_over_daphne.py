"""Acceptance: over a real daphne server with Redis, a dashboard of an organization sees an open
within a second of the pixel being fetched; another organization's dashboard sees nothing of it;
a client without credentials is refused. Runs where the suite runs on PostgreSQL + Redis (CI):
daphne is a process of its own and works on this test's (committed) database."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from conftest import REPO, USES_REDIS, SmtpServer, free_port, process_env, requires_postgres, wait_until
from delivery.models import Message
from delivery.tests.factories import BROWSER, email_sequence, send, write_messages
from organizations.services import api_key_create
from organizations.tests.factories import OrganizationFactory
from subscribers.tests.factories import ContactFactory

pytestmark = [
    requires_postgres,
    pytest.mark.skipif(not USES_REDIS, reason="needs REDIS_URL (CI sets it): the channel layer between processes"),
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

PIXEL = re.compile(r'src="[^"]*(/t/o/[^"]+\.gif)"')


@pytest.fixture
def daphne(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    log = (tmp_path / "daphne.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "emailseq.asgi:application"],
        cwd=REPO,
        env=process_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: answers(port) or process.poll() is not None, timeout=60, what="daphne to listen")
        assert process.poll() is None, Path(log.name).read_text()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def pixel_path_of_a_sent_message(smtp: SmtpServer, organization) -> tuple[Message, str]:
    contact = ContactFactory(organization=organization)
    write_messages(email_sequence(organization, emails=2), contact)
    message = Message.objects.get(contact=contact)
    if message.status == Message.Status.QUEUED:
        send(message)
    [mail] = [mail for mail in smtp.wait_for(1) if mail.recipients == (contact.email,)]
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    return message, PIXEL.search(mail.html()).group(1)


def fetch(url: str) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": BROWSER})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_an_open_reaches_its_organizations_dashboard_within_a_second_and_no_one_else(
    daphne: int, smtp_route: SmtpServer
) -> None:
    ours, theirs, warming = OrganizationFactory(), OrganizationFactory(), OrganizationFactory()
    our_key = api_key_create(organization=ours, name="Dashboard", scope="read")[1]
    their_key = api_key_create(organization=theirs, name="Dashboard", scope="read")[1]
    warming_key = api_key_create(organization=warming, name="Dashboard", scope="read")[1]
    message, pixel = pixel_path_of_a_sent_message(smtp_route, ours)
    _, warming_pixel = pixel_path_of_a_sent_message(smtp_route, warming)
    base = f"127.0.0.1:{daphne}"

    async def scenario() -> dict:
        outcome: dict = {}
        # A fresh server loads its views, and starts its tracking drainer and its connection to
        # the channel layer, on the first hit: one open of a third organization, seen through.
        async with websockets.connect(f"ws://{base}/ws/events/?token={warming_key}") as warm:
            assert await asyncio.to_thread(fetch, f"http://{base}{warming_pixel}") == 200
            await asyncio.wait_for(warm.recv(), timeout=30)
        async with (
            websockets.connect(
                f"ws://{base}/ws/events/", additional_headers={"Authorization": f"Bearer {our_key}"}
            ) as our,
            websockets.connect(f"ws://{base}/ws/events/?token={their_key}") as their,
        ):
            # Both are in their groups: the server joins them before it completes the handshake.
            started = time.monotonic()
            outcome["status"] = await asyncio.to_thread(fetch, f"http://{base}{pixel}")
            outcome["frame"] = json.loads(await asyncio.wait_for(our.recv(), timeout=5))
            outcome["seconds"] = time.monotonic() - started
            try:
                outcome["theirs"] = await asyncio.wait_for(their.recv(), timeout=1.5)
            except TimeoutError:
                outcome["theirs"] = None

        # A browser without a session: its own origin, so it reaches the consumer, which refuses.
        async with websockets.connect(f"ws://{base}/ws/events/", origin=f"http://{base}") as anonymous:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(anonymous.recv(), timeout=5)
            outcome["anonymous_close"] = anonymous.close_code
        return outcome

    outcome = asyncio.run(scenario())

    assert outcome["status"] == 200
    assert outcome["frame"]["type"] == "event"
    event = outcome["frame"]["event"]
    assert (event["type"], event["message_id"], event["organization_id"], event["sequence_id"]) == (
        "open",
        message.pk,
        ours.pk,
        message.sequence_id,
    )
    assert outcome["seconds"] < 1.0, outcome
    assert outcome["theirs"] is None
    assert outcome["anonymous_close"] == 4401
