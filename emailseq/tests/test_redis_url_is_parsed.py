"""parse_redis_url: redis://, rediss:// and unix:// URLs pass; anything else stops start-up."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from emailseq.environment import parse_redis_url


@pytest.mark.parametrize(
    "value",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:secret@cache.example.com:6380/2",
        "rediss://cache.example.com",
        "unix:///run/redis.sock",
    ],
)
def test_a_redis_url_is_accepted_unchanged(value: str) -> None:
    assert parse_redis_url("REDIS_URL", value) == value


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("http://cache.example.com:6379/0", "expected redis://"),
        ("localhost:6379", "expected redis://"),
        ("redis://", "expected redis://"),
        ("redis://cache.example.com:sixthousand/0", "malformed port"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_variable(value: str, complaint: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        parse_redis_url("REDIS_URL", value)

    assert str(refused.value).startswith("REDIS_URL:")
    assert complaint in str(refused.value)
