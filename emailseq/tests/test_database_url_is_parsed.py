"""parse_database_url: PostgreSQL and SQLite URLs become Django database settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from emailseq.environment import parse_database_url

DEFAULT = Path("/srv/var/emailseq.sqlite3")


def parse(value: str) -> dict:
    return parse_database_url("DATABASE_URL", value, sqlite_default_path=DEFAULT)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql"])
def test_a_postgres_url_gives_every_connection_setting(scheme: str) -> None:
    database = parse(f"{scheme}://mail%2Buser:p%40ss%3Aword@db.example.com:6432/email%20seq?sslmode=require")

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == ("email seq", "mail+user", "p@ss:word")
    assert (database["HOST"], database["PORT"]) == ("db.example.com", "6432")
    assert database["OPTIONS"] == {"sslmode": "require"}
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (60, True)


def test_conn_max_age_is_read_from_the_query_and_not_passed_to_the_driver() -> None:
    database = parse("postgres://db/mail?conn_max_age=0")

    assert database["CONN_MAX_AGE"] == 0
    assert database["OPTIONS"] == {}
    assert (database["HOST"], database["PORT"], database["USER"]) == ("db", "", "")


def test_a_sqlite_url_names_its_file_and_the_test_database_lies_beside_it() -> None:
    database = parse("sqlite:///data/mail/emailseq.sqlite3")

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == "/data/mail/emailseq.sqlite3"
    assert database["TEST"]["NAME"] == "/data/mail/test_emailseq.sqlite3"
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]


@pytest.mark.parametrize("value", ["sqlite://", "sqlite:///"])
def test_a_sqlite_url_without_a_path_uses_the_default_file(value: str) -> None:
    assert parse(value)["NAME"] == str(DEFAULT)


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("mysql://user@db/mail", "unsupported scheme 'mysql'"),
        ("db.example.com/mail", "unsupported scheme ''"),
        ("postgres://user@db.example.com:5432/", "must name a database"),
        ("postgres://user@db.example.com:port/mail", "malformed port"),
        ("postgres://user@db.example.com:99999/mail", "malformed port"),
        ("postgres://db/mail?conn_max_age=soon", "conn_max_age"),
        ("postgres://db/mail?conn_max_age=-1", "conn_max_age"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_variable(value: str, complaint: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        parse(value)

    assert str(refused.value).startswith("DATABASE_URL:")
    assert complaint in str(refused.value)
