"""A malformed value of any configuration variable stops start-up with a message naming the
variable, instead of silently falling back to a default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emailseq.tests.startup import child_env, manage, python

# One malformed value per variable kind, each through a real `manage.py check`.
STARTUPS = [
    ("DATABASE_URL", "mysql://mail@db.example.com/mail"),
    ("REDIS_URL", "http://cache.example.com:6379/0"),
    ("EMAIL_URL", "smtp://"),
    ("BASE_URL", "mail.example.com"),
    ("DEBUG", "maybe"),
    ("SEND_BATCH_SIZE", "two hundred"),
]


@pytest.mark.parametrize(("name", "value"), STARTUPS, ids=[name for name, _ in STARTUPS])
def test_manage_py_refuses_to_start_and_names_the_variable(tmp_path: Path, name: str, value: str) -> None:
    result = manage("check", env=child_env(tmp_path / "var", **{name: value}))

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name}: " in result.stderr
    assert "System check identified" not in result.stdout


def test_manage_py_starts_with_well_formed_values_of_the_same_variables(tmp_path: Path) -> None:
    result = manage(
        "check",
        env=child_env(
            tmp_path / "var",
            DATABASE_URL=f"sqlite://{tmp_path / 'db.sqlite3'}",
            REDIS_URL="redis://127.0.0.1:6379/15",
            EMAIL_URL="smtp://127.0.0.1:2525",
            BASE_URL="http://127.0.0.1:8000",
            DEBUG="0",
            SEND_BATCH_SIZE="50",
        ),
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


# Many more malformed values, each read by a fresh import of the settings in one child process.
IMPORT_SETTINGS_WITH_EACH = """
import importlib, json, os, sys
from django.core.exceptions import ImproperlyConfigured
outcomes = []
for name, value in json.loads(sys.argv[1]):
    os.environ[name] = value
    sys.modules.pop("emailseq.settings", None)
    try:
        importlib.import_module("emailseq.settings")
        outcomes.append("started")
    except ImproperlyConfigured as error:
        outcomes.append(str(error))
    del os.environ[name]
print(json.dumps(outcomes))
"""

MALFORMED = {
    "DATABASE_URL": [
        "db.example.com/mail",
        "postgres://db.example.com/",
        "postgres://db:port/mail",
        "postgres://db/mail?conn_max_age=x",
    ],
    "REDIS_URL": ["localhost:6379", "redis://", "redis://cache:port/0", "memcached://cache:11211"],
    "EMAIL_URL": [
        "carrier-pigeon://coop",
        "smtp://mail:port",
        "smtp://mail?security=ssl",
        "smtp://mail?timeout=0",
        "smtp://mail?tls=1",
    ],
    "BASE_URL": [
        "ftp://mail.example.com",
        "https://mail.example.com/app",
        "https://mail.example.com?x=1",
        "https://:443",
    ],
    "DEBUG": ["2", "enabled", "yes please"],
    "BEHIND_PROXY": ["perhaps"],
    "SECURE_SSL_REDIRECT": ["always"],
    "SEND_BATCH_SIZE": ["0", "-5", "1.5", "lots"],
    "SEND_LEASE_SECONDS": ["9"],
    "SEND_MAX_ATTEMPTS": ["0"],
    "ENGINE_CLAIM_BATCH_SIZE": ["many"],
    "SCHEDULER_INTERVAL_SECONDS": ["fast", "0.01"],
    "ENGINE_TICK_BUDGET_SECONDS": ["0"],
    "SECURE_HSTS_SECONDS": ["-1", "a year"],
    "TEMPLATE_OUTPUT_LIMIT_BYTES": ["100"],
    "TEMPLATE_LOOP_LIMIT": ["0"],
    "AXES_FAILURE_LIMIT": ["0"],
}
WELL_FORMED = {
    "DATABASE_URL": "postgres://db.example.com/mail",
    "REDIS_URL": "rediss://cache.example.com:6380/1",
    "EMAIL_URL": "submission://user:pass@mail.example.com",
    "BASE_URL": "https://mail.example.com/",
    "DEBUG": "off",
    "SEND_BATCH_SIZE": "1",
    "SCHEDULER_INTERVAL_SECONDS": "0.5",
    "SECURE_HSTS_SECONDS": "0",
}


def test_every_malformed_value_is_refused_naming_its_variable_and_well_formed_ones_start(tmp_path: Path) -> None:
    cases = [(name, value) for name, values in MALFORMED.items() for value in values]
    controls = list(WELL_FORMED.items())

    result = python(IMPORT_SETTINGS_WITH_EACH, json.dumps(cases + controls), env=child_env(tmp_path / "var"))

    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    refused = dict(zip(cases, outcomes[: len(cases)], strict=True))
    not_naming = {case: outcome for case, outcome in refused.items() if not outcome.startswith(f"{case[0]}: ")}
    assert not_naming == {}
    assert outcomes[len(cases) :] == ["started"] * len(controls)
