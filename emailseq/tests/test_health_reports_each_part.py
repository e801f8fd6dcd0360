"""GET /health: the database, the cache and the broker each checked; 200 when all answer, 503
naming the parts that do not, without revealing addresses or errors. Not redirected to HTTPS (load
balancers probe over plain HTTP). /healthz stays as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from conftest import USES_REDIS, free_port
from emailseq.tests.startup import child_env, python

PROBE = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailseq.settings")
import django
django.setup()
from django.test import Client
response = Client(HTTP_HOST="127.0.0.1").get("/health")
print(json.dumps({"status": response.status_code, "body": response.content.decode()}))
"""


def probe_health(env: dict[str, str]) -> dict:
    result = python(PROBE, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_health_answers_ok_with_each_part_checked(client: Client) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok" if USES_REDIS else "in-process"},
    }


@pytest.mark.django_db
def test_health_answers_503_naming_a_cache_and_broker_that_do_not_answer(client: Client, settings) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": dead}}
    settings.CELERY_BROKER_URL = dead

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "cache": "unavailable", "broker": "unavailable"},
    }
    assert "127.0.0.1" not in response.content.decode()


def test_health_answers_503_when_the_database_does_not_answer(tmp_path: Path) -> None:
    unreachable = tmp_path / "no-such-directory" / "emailseq.sqlite3"

    answer = probe_health(child_env(tmp_path / "var", DATABASE_URL=f"sqlite://{unreachable}"))

    assert answer["status"] == 503
    body = json.loads(answer["body"])
    assert body == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "cache": "ok", "broker": "in-process"},
    }
    assert str(unreachable) not in answer["body"]


def test_health_answers_a_plain_http_probe_of_an_https_installation(tmp_path: Path) -> None:
    env = child_env(
        tmp_path / "var", BASE_URL="https://mail.example.com", DATABASE_URL=f"sqlite://{tmp_path / 'db.sqlite3'}"
    )

    answer = probe_health(env)

    assert answer["status"] == 200, f"answered {answer['status']}: a load balancer probing over HTTP drops the node"
    assert json.loads(answer["body"])["status"] == "ok"


@pytest.mark.django_db
def test_healthz_still_answers_as_before(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
