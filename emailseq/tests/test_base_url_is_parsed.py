"""parse_base_url: the public origin of the installation, an absolute http(s) URL without a path."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from emailseq.environment import parse_base_url


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("https://mail.example.com", ("https", "mail.example.com", "https://mail.example.com")),
        ("https://mail.example.com/", ("https", "mail.example.com", "https://mail.example.com")),
        ("http://127.0.0.1:8000", ("http", "127.0.0.1", "http://127.0.0.1:8000")),
        ("https://mail.example.com:8443", ("https", "mail.example.com", "https://mail.example.com:8443")),
    ],
)
def test_a_base_url_gives_its_scheme_host_and_origin(value: str, parsed: tuple[str, str, str]) -> None:
    assert parse_base_url("BASE_URL", value) == parsed


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("mail.example.com", "absolute http:// or https:// URL"),
        ("ftp://mail.example.com", "absolute http:// or https:// URL"),
        ("https://", "absolute http:// or https:// URL"),
        ("https://mail.example.com/app", "must not carry a path"),
        ("https://mail.example.com?utm=1", "must not carry a path"),
        ("https://mail.example.com#top", "must not carry a path"),
        ("https://mail.example.com:https", "malformed port"),
    ],
)
def test_a_malformed_base_url_is_refused_naming_the_variable(value: str, complaint: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        parse_base_url("BASE_URL", value)

    assert str(refused.value).startswith("BASE_URL:")
    assert complaint in str(refused.value)
