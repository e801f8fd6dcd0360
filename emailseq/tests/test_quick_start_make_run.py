"""Acceptance 9: `make run` on a fresh checkout serves the app, and the demo sequence's mail
appears in the captured mailbox within a minute, with no service running (embedded defaults:
no DATABASE_URL, REDIS_URL or EMAIL_URL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, free_port, wait_until


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


@pytest.mark.slow
def test_make_run_serves_the_app_and_captures_the_demo_mail_within_a_minute(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL")}
    env.update(VAR_DIR=str(tmp_path / "var"), PORT=str(port), BASE_URL=f"http://127.0.0.1:{port}")
    log = (tmp_path / "make-run.log").open("w+")
    started = time.monotonic()
    process = subprocess.Popen(
        ["make", "run"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=60, what="the server")
        status, body = http_get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"emailseq" in body

        mailbox = tmp_path / "var" / "mailbox"
        demo_mail = lambda: list(mailbox.glob("*/*.eml")) if mailbox.exists() else []  # noqa: E731
        wait_until(lambda: len(demo_mail()) >= 25, timeout=60 - (time.monotonic() - started), what="the demo mail")
        first = demo_mail()[0].read_text()
        assert "Subject: Welcome, " in first and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in first

        output = Path(log.name).read_text()
        assert "Log in at" in output and "Captured mail:" in output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
