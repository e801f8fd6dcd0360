"""Acceptance: `manage.py check --deploy` is clean under a production-like configuration, and
warns about what would make a deployment quietly useless (mail not delivered, links to
127.0.0.1)."""

from __future__ import annotations

import secrets
from pathlib import Path

from emailseq.checks import base_url_is_public, mail_route_delivers
from emailseq.environment import EmailConfig
from emailseq.tests.startup import child_env, manage


def production(tmp_path: Path, **changes: str) -> dict[str, str]:
    variables = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "DEBUG": "0",
        "BASE_URL": "https://mail.example.com",
        "ALLOWED_HOSTS": "mail.example.com",
        "EMAIL_URL": "smtps://mailer:secret@smtp.example.com",
    }
    variables.update(changes)
    return child_env(tmp_path / "var", **variables)


def test_the_deploy_check_is_clean_for_a_production_configuration(tmp_path: Path) -> None:
    result = manage("check", "--deploy", env=production(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_the_deploy_check_warns_about_plain_http_debug_and_mail_that_is_never_delivered(tmp_path: Path) -> None:
    result = manage(
        "check", "--deploy", env=production(tmp_path, BASE_URL="http://127.0.0.1:8000", DEBUG="1", EMAIL_URL="")
    )

    assert result.returncode == 0
    warned = result.stderr + result.stdout
    for check in ("security.W004", "security.W008", "security.W012", "security.W016", "security.W018"):
        assert check in warned
    assert "emailseq.W001" in warned and "EMAIL_URL" in warned
    assert "emailseq.W002" in warned and "BASE_URL" in warned


def test_only_a_capture_or_console_mail_route_is_warned_about(settings) -> None:
    warned = {}
    for kind in ("capture", "console", "smtp", "anymail"):
        settings.EMAIL = EmailConfig(kind=kind)
        warned[kind] = [warning.id for warning in mail_route_delivers(None)]

    assert warned == {"capture": ["emailseq.W001"], "console": ["emailseq.W001"], "smtp": [], "anymail": []}


def test_only_a_loopback_base_url_is_warned_about(settings) -> None:
    warned = {}
    for host in ("127.0.0.1", "localhost", "::1", "mail.example.com"):
        settings.BASE_URL_HOST = host
        warned[host] = [warning.id for warning in base_url_is_public(None)]

    assert warned == {
        "127.0.0.1": ["emailseq.W002"],
        "localhost": ["emailseq.W002"],
        "::1": ["emailseq.W002"],
        "mail.example.com": [],
    }
