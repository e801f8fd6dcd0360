"""parse_email_url: where outgoing mail goes. Capture by default; SMTP with its security mode;
email service providers through django-anymail; console."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from emailseq.environment import parse_email_url

MAILBOX = Path("/srv/var/mailbox")


def parse(value: str | None):
    return parse_email_url("EMAIL_URL", value, mailbox_default=MAILBOX)


def test_nothing_set_captures_mail_in_the_default_mailbox() -> None:
    config = parse(None)

    assert (config.kind, config.mailbox_dir) == ("capture", str(MAILBOX))


@pytest.mark.parametrize(
    ("value", "mailbox"), [("capture://", str(MAILBOX)), ("capture:///data/mail box", "/data/mail box")]
)
def test_capture_keeps_mail_in_the_named_or_default_mailbox(value: str, mailbox: str) -> None:
    config = parse(value.replace(" ", "%20"))

    assert (config.kind, config.mailbox_dir) == ("capture", mailbox)


def test_console_prints_mail() -> None:
    assert parse("console://").kind == "console"


@pytest.mark.parametrize(
    ("value", "security", "port"),
    [
        ("smtp://mail.example.com", "none", 25),
        ("smtp+starttls://mail.example.com", "starttls", 587),
        ("submission://mail.example.com", "starttls", 587),
        ("smtps://mail.example.com", "tls", 465),
        ("smtp://mail.example.com?security=starttls", "starttls", 587),
        ("smtps://mail.example.com:2465", "tls", 2465),
    ],
)
def test_the_smtp_scheme_or_option_picks_the_security_and_its_default_port(
    value: str, security: str, port: int
) -> None:
    config = parse(value)

    assert (config.kind, config.host, config.security, config.port) == ("smtp", "mail.example.com", security, port)
    assert config.timeout == 30.0


def test_smtp_credentials_are_percent_decoded_and_the_timeout_read() -> None:
    config = parse("smtp://user%40example.com:p%40ss%2Fw%3Ard@mail.example.com:2525?timeout=7.5")

    assert (config.username, config.password) == ("user@example.com", "p@ss/w:rd")
    assert (config.port, config.timeout) == (2525, 7.5)


@pytest.mark.parametrize(
    ("value", "backend", "anymail_settings"),
    [
        ("sendgrid://SG.key@", "anymail.backends.sendgrid.EmailBackend", {"SENDGRID_API_KEY": "SG.key"}),
        (
            "postmark://server-token@",
            "anymail.backends.postmark.EmailBackend",
            {"POSTMARK_SERVER_TOKEN": "server-token"},
        ),
        (
            "mailgun://key-1@?sender_domain=mg.example.com",
            "anymail.backends.mailgun.EmailBackend",
            {"MAILGUN_API_KEY": "key-1", "MAILGUN_SENDER_DOMAIN": "mg.example.com"},
        ),
        (
            "mailjet://public:secret@",
            "anymail.backends.mailjet.EmailBackend",
            {"MAILJET_API_KEY": "public", "MAILJET_SECRET_KEY": "secret"},
        ),
        ("amazon-ses://", "anymail.backends.amazon_ses.EmailBackend", {}),
        (
            "resend://re_key@?api_url=https://eu.resend.example/",
            "anymail.backends.resend.EmailBackend",
            {"RESEND_API_KEY": "re_key", "RESEND_API_URL": "https://eu.resend.example/"},
        ),
    ],
)
def test_a_provider_url_selects_its_anymail_backend_and_settings(
    value: str, backend: str, anymail_settings: dict
) -> None:
    config = parse(value)

    assert (config.kind, config.anymail_backend, config.anymail_settings) == ("anymail", backend, anymail_settings)


def test_a_provider_url_takes_a_timeout_that_is_not_an_anymail_setting() -> None:
    config = parse("sendgrid://key@?timeout=5")

    assert (config.timeout, config.anymail_settings) == (5.0, {"SENDGRID_API_KEY": "key"})


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("carrier-pigeon://coop", "unsupported scheme 'carrier-pigeon'"),
        ("mail.example.com", "unsupported scheme ''"),
        ("smtp://", "needs a host"),
        ("smtp://user:pass@:587", "needs a host"),
        ("smtp://mail.example.com:smtp", "malformed port"),
        ("smtp://mail.example.com?security=ssl", "security must be"),
        ("smtp://mail.example.com?timeout=soon", "timeout must be a number"),
        ("smtp://mail.example.com?timeout=0", "timeout must be positive"),
        ("smtp://mail.example.com?tls=1", "unknown option(s) tls"),
        ("capture:///tmp/mail?keep=1", "unknown option(s) keep"),
        ("console://?colour=1", "unknown option(s) colour"),
        ("sendgrid://key@?timeout=-3", "timeout must be positive"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_variable(value: str, complaint: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        parse(value)

    assert str(refused.value).startswith("EMAIL_URL:")
    assert complaint in str(refused.value)
