"""Typed readers for configuration taken from the environment.

Every reader fails loudly with ImproperlyConfigured naming the variable, so a typo in a
deployment stops start-up instead of silently falling back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}: expected one of 1/0, true/false, yes/no, on/off; got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}: must be at most {maximum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_base_url(name: str, value: str) -> tuple[str, str, str]:
    """Return (scheme, host, origin) of an absolute http(s) URL without a path."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"{name}: expected an absolute http:// or https:// URL, got {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name}: must not carry a path, query or fragment, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ImproperlyConfigured(f"{name}: malformed port in {value!r}") from None
    return parts.scheme, parts.hostname, f"{parts.scheme}://{parts.netloc}"


def parse_database_url(name: str, value: str, *, sqlite_default_path: Path) -> dict:
    parts = urlsplit(value)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "pgsql"):
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ImproperlyConfigured(f"{name}: a PostgreSQL URL must name a database, got {value!r}")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name}: malformed port in {value!r}") from None
        options = dict(parse_qsl(parts.query))
        conn_max_age = options.pop("conn_max_age", "60")
        if not conn_max_age.isdigit():
            raise ImproperlyConfigured(f"{name}: conn_max_age must be a whole number of seconds")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": int(conn_max_age),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    if scheme == "sqlite":
        path = unquote(parts.path) if parts.path not in ("", "/") else str(sqlite_default_path)
        return sqlite_settings(path)
    raise ImproperlyConfigured(
        f"{name}: unsupported scheme {scheme!r}; use postgres://user:pass@host:port/db or sqlite:///path"
    )


def sqlite_settings(path: str) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        # The web server and the in-process scheduler write from different threads: WAL lets
        # readers run beside a writer, IMMEDIATE transactions take the write lock up front so
        # two writers queue on the busy timeout instead of failing with "database is locked".
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # A file, not memory: tests start processes (tick, serve, workers) that share it.
        "TEST": {"NAME": str(Path(path).with_name(f"test_{Path(path).name}"))},
    }


# Providers reachable through django-anymail, by URL scheme: (anymail backend module, the
# setting that the URL's user part fills, the setting that the URL's password part fills).
ANYMAIL_PROVIDERS: dict[str, tuple[str, str | None, str | None]] = {
    "amazon-ses": ("amazon_ses", None, None),
    "brevo": ("brevo", "API_KEY", None),
    "mailersend": ("mailersend", "API_TOKEN", None),
    "mailgun": ("mailgun", "API_KEY", None),
    "mailjet": ("mailjet", "API_KEY", "SECRET_KEY"),
    "mandrill": ("mandrill", "API_KEY", None),
    "postal": ("postal", "API_KEY", None),
    "postmark": ("postmark", "SERVER_TOKEN", None),
    "resend": ("resend", "API_KEY", None),
    "sendgrid": ("sendgrid", "API_KEY", None),
    "sparkpost": ("sparkpost", "API_KEY", None),
}

SMTP_SECURITY_BY_SCHEME = {"smtp": "none", "smtp+starttls": "starttls", "submission": "starttls", "smtps": "tls"}


@dataclass(frozen=True)
class EmailConfig:
    """Where outgoing mail goes, parsed from EMAIL_URL."""

    kind: str  # "capture", "smtp", "anymail" or "console"
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = ""
    security: str = "none"  # "none", "starttls" or "tls"
    timeout: float = 30.0
    mailbox_dir: str = ""
    anymail_backend: str = ""
    anymail_settings: dict = field(default_factory=dict)
    # An organization's route (delivery.routing): the transport connects only to public addresses.
    public_hosts_only: bool = False


def parse_email_url(name: str, value: str | None, *, mailbox_default: Path) -> EmailConfig:
    if value is None:
        return EmailConfig(kind="capture", mailbox_dir=str(mailbox_default))
    parts = urlsplit(value)
    scheme = parts.scheme
    options = dict(parse_qsl(parts.query))

    def timeout_option() -> float:
        raw = options.pop("timeout", "30")
        try:
            timeout = float(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: timeout must be a number of seconds, got {raw!r}") from None
        if timeout <= 0:
            raise ImproperlyConfigured(f"{name}: timeout must be positive")
        return timeout

    def reject_leftovers() -> None:
        if options:
            raise ImproperlyConfigured(f"{name}: unknown option(s) {', '.join(sorted(options))} in {value!r}")

    if scheme == "capture":
        path = unquote(parts.path) if parts.path not in ("", "/") else str(mailbox_default)
        reject_leftovers()
        return EmailConfig(kind="capture", mailbox_dir=path)
    if scheme == "console":
        reject_leftovers()
        return EmailConfig(kind="console")
    if scheme in SMTP_SECURITY_BY_SCHEME:
        if not parts.hostname:
            raise ImproperlyConfigured(f"{name}: an SMTP URL needs a host, e.g. smtp://user:pass@mail.example.com:587")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name}: malformed port in {value!r}") from None
        security = options.pop("security", SMTP_SECURITY_BY_SCHEME[scheme])
        if security not in ("none", "starttls", "tls"):
            raise ImproperlyConfigured(f"{name}: security must be none, starttls or tls, got {security!r}")
        default_port = {"none": 25, "starttls": 587, "tls": 465}[security]
        timeout = timeout_option()
        reject_leftovers()
        return EmailConfig(
            kind="smtp",
            host=parts.hostname,
            port=port or default_port,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            security=security,
            timeout=timeout,
        )
    if scheme in ANYMAIL_PROVIDERS:
        module, user_setting, password_setting = ANYMAIL_PROVIDERS[scheme]
        prefix = module.upper()
        anymail_settings: dict[str, str] = {}
        if user_setting and parts.username:
            anymail_settings[f"{prefix}_{user_setting}"] = unquote(parts.username)
        if password_setting and parts.password:
            anymail_settings[f"{prefix}_{password_setting}"] = unquote(parts.password)
        timeout = timeout_option()
        for key, option in options.items():
            anymail_settings[f"{prefix}_{key.upper()}"] = option
        return EmailConfig(
            kind="anymail",
            timeout=timeout,
            anymail_backend=f"anymail.backends.{module}.EmailBackend",
            anymail_settings=anymail_settings,
        )
    known = ", ".join(["capture", "console", *SMTP_SECURITY_BY_SCHEME, *ANYMAIL_PROVIDERS])
    raise ImproperlyConfigured(f"{name}: unsupported scheme {scheme!r}; known schemes: {known}")


def parse_redis_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ImproperlyConfigured(f"{name}: expected redis://host:port/db, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ImproperlyConfigured(f"{name}: malformed port in {value!r}") from None
    return value
