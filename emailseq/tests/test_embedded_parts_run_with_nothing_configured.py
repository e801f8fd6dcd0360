"""With nothing set, the product starts on embedded parts: SQLite under VAR_DIR, a local-memory
cache, the in-memory channel layer, Celery tasks run in-process, outgoing mail captured under
VAR_DIR, and a secret key kept under VAR_DIR across restarts."""

from __future__ import annotations

import stat
from pathlib import Path

from emailseq.tests.startup import child_env, started_settings

NAMES = ("DATABASES", "EMAIL_BACKEND", "MAILBOX_DIR", "CELERY_TASK_ALWAYS_EAGER", "REDIS_URL", "SECRET_KEY", "DEBUG")


def test_a_process_started_with_nothing_set_runs_on_embedded_parts(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"

    started = started_settings(child_env(var_dir), *NAMES)

    database = started["DATABASES"]["default"]
    assert (started["_database_vendor"], database["NAME"]) == ("sqlite", str(var_dir / "emailseq.sqlite3"))
    assert started["_cache_class"] == "LocMemCache"
    assert started["_channel_layer_class"] == "InMemoryChannelLayer"
    assert (started["CELERY_TASK_ALWAYS_EAGER"], started["_celery_always_eager"]) == (True, True)
    assert started["_celery_broker_url"].startswith("memory://")
    assert started["EMAIL_BACKEND"] == "delivery.mailbox.CaptureEmailBackend"
    assert started["MAILBOX_DIR"] == str(var_dir / "mailbox")
    assert (started["REDIS_URL"], started["DEBUG"]) == ("", False)


def test_the_generated_secret_key_is_private_and_survives_a_restart(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"

    first = started_settings(child_env(var_dir), "SECRET_KEY")["SECRET_KEY"]
    second = started_settings(child_env(var_dir), "SECRET_KEY")["SECRET_KEY"]

    key_file = var_dir / "secret_key"
    assert first == second == key_file.read_text().strip()
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_secret_key_from_the_environment_wins_and_nothing_is_written(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"

    started = started_settings(child_env(var_dir, SECRET_KEY="from-the-environment-" + "k" * 40), "SECRET_KEY")

    assert started["SECRET_KEY"] == "from-the-environment-" + "k" * 40
    assert not (var_dir / "secret_key").exists()
