"""DATABASE_URL, REDIS_URL and EMAIL_URL switch a started process onto PostgreSQL, Redis (cache,
channel layer, Celery broker) and a real mail route. Starting does not connect to them."""

from __future__ import annotations

from pathlib import Path

from emailseq.tests.startup import child_env, started_settings

NAMES = (
    "DATABASES",
    "CACHES",
    "CHANNEL_LAYERS",
    "CELERY_TASK_ALWAYS_EAGER",
    "EMAIL_BACKEND",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_SSL",
    "EMAIL_USE_TLS",
    "EMAIL_TIMEOUT",
)


def test_the_three_urls_switch_the_database_redis_parts_and_mail_route(tmp_path: Path) -> None:
    env = child_env(
        tmp_path / "var",
        DATABASE_URL="postgres://mailer:s%40cret@db.internal:6432/emailseq?conn_max_age=0&sslmode=require",
        REDIS_URL="redis://cache.internal:6380/3",
        EMAIL_URL="smtps://postmaster%40example.com:p%40ss@smtp.example.com?timeout=12",
    )

    started = started_settings(env, *NAMES)

    database = started["DATABASES"]["default"]
    assert started["_database_vendor"] == "postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == ("db.internal", "6432", "emailseq")
    assert (database["USER"], database["PASSWORD"]) == ("mailer", "s@cret")
    assert (database["CONN_MAX_AGE"], database["OPTIONS"]) == (0, {"sslmode": "require"})
    assert started["_cache_class"] == "RedisCache"
    assert started["CACHES"]["default"]["LOCATION"] == "redis://cache.internal:6380/3"
    assert started["_channel_layer_class"] == "RedisPubSubChannelLayer"
    assert started["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"] == ["redis://cache.internal:6380/3"]
    assert (started["CELERY_TASK_ALWAYS_EAGER"], started["_celery_always_eager"]) == (False, False)
    assert started["_celery_broker_url"] == "redis://cache.internal:6380/3"
    assert started["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (started["EMAIL_HOST"], started["EMAIL_PORT"]) == ("smtp.example.com", 465)
    assert (started["EMAIL_HOST_USER"], started["EMAIL_HOST_PASSWORD"]) == ("postmaster@example.com", "p@ss")
    assert (started["EMAIL_USE_SSL"], started["EMAIL_USE_TLS"], started["EMAIL_TIMEOUT"]) == (True, False, 12.0)


def test_a_sqlite_database_url_and_a_provider_email_url_are_honoured(tmp_path: Path) -> None:
    database_file = tmp_path / "elsewhere" / "mail.sqlite3"
    env = child_env(
        tmp_path / "var",
        DATABASE_URL=f"sqlite://{database_file}",
        EMAIL_URL="postmark://server-token@",
    )

    started = started_settings(env, "DATABASES", "EMAIL_BACKEND", "ANYMAIL")

    assert (started["_database_vendor"], started["DATABASES"]["default"]["NAME"]) == ("sqlite", str(database_file))
    assert started["EMAIL_BACKEND"] == "anymail.backends.postmark.EmailBackend"
    assert started["ANYMAIL"] == {"POSTMARK_SERVER_TOKEN": "server-token"}
    assert started["_cache_class"] == "LocMemCache"
