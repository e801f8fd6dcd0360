"""Input fields and URL converters that keep malformed input from ever reaching the database.

PostgreSQL refuses NUL characters in text and JSON, and integers beyond 64 bits: both must be
caught as field errors (400), never surface as a database error (500).
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

MAX_ID = 2**63 - 1


class IdConverter:
    """`<id:name>` in URL patterns: a positive 64-bit integer, anything else is a 404."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


class IdField(serializers.IntegerField):
    """The id of a row: a positive 64-bit integer."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


def check_json(value: Any, depth: int = 0) -> None:
    """Refuse JSON that jsonb cannot store or that is nested past reason."""
    if depth > 20:
        raise serializers.ValidationError("Nested too deeply (at most 20 levels).")
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Text may not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise serializers.ValidationError("Text must be valid Unicode (no lone surrogates).") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json(key, depth + 1)
            check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
        raise serializers.ValidationError("Numbers must fit in 64 bits.")
    elif isinstance(value, float) and value != value:  # NaN
        raise serializers.ValidationError("NaN is not a number JSON allows.")


class JSONObjectField(serializers.JSONField):
    """A JSON object (names to values) of bounded size, storable in PostgreSQL's jsonb."""

    default_error_messages = {"not_object": "Expected a JSON object of names to values."}

    def __init__(self, *, max_bytes: int = 64 * 1024, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        check_json(value)
        try:
            size = len(json.dumps(value, allow_nan=False))
        except ValueError:
            raise serializers.ValidationError("Infinity and NaN are not numbers JSON allows.") from None
        if size > self.max_bytes:
            raise serializers.ValidationError(f"At most {self.max_bytes} bytes of JSON.")
        return value


def jsonb_safe(value: Any) -> Any:
    """`value` with every string made storable in jsonb: NUL and lone surrogates replaced."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {jsonb_safe(key): jsonb_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonb_safe(item) for item in value]
    return value


class ReportingDateTimeField(serializers.DateTimeField):
    """A date and time for reporting spans: between 1970 and 9000, so that spans and windows
    computed from it never overflow (year 1 minus a week is an error, not a report)."""

    default_error_messages = {"out_of_range": "Give a date between 1970 and 9000."}

    def to_internal_value(self, value: Any) -> Any:
        parsed = super().to_internal_value(value)
        if not 1970 <= parsed.year <= 9000:
            self.fail("out_of_range")
        return parsed
