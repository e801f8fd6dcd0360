"""Start the project in a child process with exactly the environment a test gives it.

The child gets no configuration from the parent (no DATABASE_URL, REDIS_URL, ... of the run
that started the tests): only PATH, HOME, a VAR_DIR of the test's own and what the test sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

# Prints the settings a started process ended up with, and the parts they switched on.
SETTINGS_PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailseq.settings")
import django
django.setup()
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from channels.layers import get_channel_layer
from emailseq.celery import app
names = sys.argv[1:]
values = {name: getattr(settings, name, None) for name in names}
values["_database_vendor"] = connection.vendor
values["_cache_class"] = type(caches["default"]).__name__
values["_channel_layer_class"] = type(get_channel_layer()).__name__
values["_celery_always_eager"] = app.conf.task_always_eager
values["_celery_broker_url"] = app.conf.broker_url
print(json.dumps(values, default=str))
"""


def child_env(var_dir: Path, **variables: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "VAR_DIR": str(var_dir),
    }
    env.update(variables)
    return env


def run(args: list[str], env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", *args], env)


def python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", code, *args], env)


def started_settings(env: dict[str, str], *names: str) -> dict[str, object]:
    """The named settings (and the parts in use) of a process started with `env`."""
    result = python(SETTINGS_PROBE, *names, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
