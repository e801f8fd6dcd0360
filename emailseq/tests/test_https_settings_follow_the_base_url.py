"""The HTTPS-only settings (redirect, secure cookies, HSTS) follow the scheme of BASE_URL: on
for an https origin, off for plain HTTP on 127.0.0.1, so one configuration works for both."""

from __future__ import annotations

from pathlib import Path

from emailseq.tests.startup import child_env, started_settings

HTTPS_SETTINGS = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
)
ORIGIN_SETTINGS = ("BASE_URL", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_PROXY_SSL_HEADER", "MESSAGE_ID_DOMAIN")


def test_an_https_base_url_turns_every_https_setting_on(tmp_path: Path) -> None:
    started = started_settings(
        child_env(tmp_path / "var", BASE_URL="https://mail.example.com/"), *HTTPS_SETTINGS, *ORIGIN_SETTINGS
    )

    assert {name: started[name] for name in HTTPS_SETTINGS} == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
    }
    assert started["BASE_URL"] == "https://mail.example.com"
    assert started["ALLOWED_HOSTS"] == ["mail.example.com", "127.0.0.1", "localhost"]
    assert started["CSRF_TRUSTED_ORIGINS"] == ["https://mail.example.com"]
    assert started["MESSAGE_ID_DOMAIN"] == "mail.example.com"
    assert started["SECURE_PROXY_SSL_HEADER"] is None


def test_a_plain_http_base_url_on_127_0_0_1_turns_every_https_setting_off(tmp_path: Path) -> None:
    started = started_settings(
        child_env(tmp_path / "var", BASE_URL="http://127.0.0.1:8000"), *HTTPS_SETTINGS, *ORIGIN_SETTINGS
    )

    assert {name: started[name] for name in HTTPS_SETTINGS} == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
    }
    assert started["CSRF_TRUSTED_ORIGINS"] == ["http://127.0.0.1:8000"]


def test_explicit_variables_override_what_the_scheme_implies_and_a_proxy_is_trusted_on_request(tmp_path: Path) -> None:
    env = child_env(
        tmp_path / "var",
        BASE_URL="https://mail.example.com",
        SECURE_SSL_REDIRECT="0",
        SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_PRELOAD="no",
        BEHIND_PROXY="1",
        ALLOWED_HOSTS="mail.example.com, internal.lan",
    )

    started = started_settings(env, *HTTPS_SETTINGS, *ORIGIN_SETTINGS, "USE_X_FORWARDED_HOST")

    assert (started["SECURE_SSL_REDIRECT"], started["SECURE_HSTS_SECONDS"], started["SECURE_HSTS_PRELOAD"]) == (
        False,
        3600,
        False,
    )
    assert started["SESSION_COOKIE_SECURE"] is True
    assert started["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert started["USE_X_FORWARDED_HOST"] is True
    assert started["ALLOWED_HOSTS"] == ["mail.example.com", "internal.lan"]
