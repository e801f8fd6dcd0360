"""GET /healthz, for load balancers and uptime checks: 200 {"status": "ok"} while the database
answers, 503 when it does not, and never a redirect (a load balancer probes over plain HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from emailseq.tests.startup import child_env, python

# Asks /healthz of a process started with the test's environment, as a load balancer would.
PROBE = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailseq.settings")
import django
django.setup()
from django.test import Client
response = Client(HTTP_HOST="127.0.0.1").get("/healthz")
print(json.dumps({"status": response.status_code, "body": response.content.decode()}))
"""


def probe_healthz(env: dict[str, str]) -> dict:
    result = python(PROBE, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_healthz_answers_ok_while_the_database_answers(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_healthz_answers_503_without_revealing_the_database_error(tmp_path: Path) -> None:
    unreachable = tmp_path / "no-such-directory" / "emailseq.sqlite3"

    answer = probe_healthz(child_env(tmp_path / "var", DATABASE_URL=f"sqlite://{unreachable}"))

    assert answer["status"] == 503
    body = json.loads(answer["body"])
    assert body["status"] == "error"
    assert body["database"] == "unavailable"
    assert str(unreachable) not in answer["body"]


def test_healthz_answers_a_plain_http_probe_of_an_https_installation(tmp_path: Path) -> None:
    env = child_env(
        tmp_path / "var", BASE_URL="https://mail.example.com", DATABASE_URL=f"sqlite://{tmp_path / 'db.sqlite3'}"
    )

    answer = probe_healthz(env)

    assert answer["status"] == 200, f"answered {answer['status']}: a load balancer probing over HTTP drops the node"
    assert json.loads(answer["body"]) == {"status": "ok"}
