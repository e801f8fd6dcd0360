"""The shape and meaning of step conditions and sequence goals (stored as JSON on the rows).

Condition of a condition step, one of:
    {"type": "opened",   "step": <email step id> | null}   null: any earlier email of the enrollment
    {"type": "clicked",  "step": <email step id> | null}
    {"type": "has_tag",  "tag": <tag id>}
    {"type": "property", "key": "plan", "operator": "equals", "value": "pro"}
    {"type": "event",    "name": "purchased", "within_days": 7}
        true when the contact has a custom event of that name (reported through the events API)
        since its enrollment began, or, with the optional "within_days", in the last N days
        (whether or not before the enrollment). Events dated in the future do not count yet.

Goal of a sequence, one of:
    {"type": "has_tag",  "tag": <tag id>}
    {"type": "property", "key": ..., "operator": ..., "value": ...}
    {"type": "event",    "name": "purchased"}   reached by such an event dated after enrollment

Opens and clicks flagged as automated (scanners, privacy proxies) never satisfy a condition.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

OPERATORS = (
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "greater_than",
    "less_than",
    "is_set",
    "is_not_set",
)
CONDITION_TYPES = ("opened", "clicked", "has_tag", "property", "event")
GOAL_TYPES = ("has_tag", "property", "event")
EVENT_NAME_MAX_LENGTH = 200
WITHIN_DAYS_MAX = 3660


def _require_int(config: dict[str, Any], key: str, *, nullable: bool) -> None:
    value = config.get(key)
    if value is None and nullable:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValidationError(f"{key!r} must be the id of a {'step' if key == 'step' else key}.")


def _validate_property(config: dict[str, Any]) -> None:
    if not isinstance(config.get("key"), str) or not config["key"].strip():
        raise ValidationError("A property comparison needs a non-empty 'key'.")
    if config.get("operator") not in OPERATORS:
        raise ValidationError(f"'operator' must be one of {', '.join(OPERATORS)}.")
    if config["operator"] not in ("is_set", "is_not_set") and "value" not in config:
        raise ValidationError(f"The operator {config['operator']!r} needs a 'value'.")


def _validate_event(config: dict[str, Any], *, window: bool) -> None:
    name = config.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > EVENT_NAME_MAX_LENGTH or "\x00" in name:
        raise ValidationError(f"An event needs a 'name' of 1 to {EVENT_NAME_MAX_LENGTH} characters.")
    if name != name.strip():
        raise ValidationError("An event 'name' has no leading or trailing spaces (events are matched exactly).")
    within_days = config.get("within_days")
    if within_days is None:
        return
    if not window:
        raise ValidationError("An event goal counts events since the enrollment began: it takes no 'within_days'.")
    if not isinstance(within_days, int) or isinstance(within_days, bool) or not 1 <= within_days <= WITHIN_DAYS_MAX:
        raise ValidationError(f"'within_days' must be a whole number of days from 1 to {WITHIN_DAYS_MAX}.")


def validate_condition(config: Any) -> None:
    if not isinstance(config, dict) or config.get("type") not in CONDITION_TYPES:
        raise ValidationError(f"A condition is an object whose 'type' is one of {', '.join(CONDITION_TYPES)}.")
    kind = config["type"]
    if kind in ("opened", "clicked"):
        _require_int(config, "step", nullable=True)
    elif kind == "has_tag":
        _require_int(config, "tag", nullable=False)
    elif kind == "event":
        _validate_event(config, window=True)
    else:
        _validate_property(config)


def validate_goal(config: Any) -> None:
    if config is None:
        return
    if not isinstance(config, dict) or config.get("type") not in GOAL_TYPES:
        raise ValidationError(f"A goal is an object whose 'type' is one of {', '.join(GOAL_TYPES)}.")
    if config["type"] == "has_tag":
        _require_int(config, "tag", nullable=False)
    elif config["type"] == "event":
        _validate_event(config, window=False)
    else:
        _validate_property(config)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def property_matches(properties: dict[str, Any] | None, config: dict[str, Any]) -> bool:
    properties = properties or {}
    key, operator = config["key"], config["operator"]
    present = key in properties and properties[key] not in (None, "")
    if operator == "is_set":
        return present
    if operator == "is_not_set":
        return not present
    actual, expected = properties.get(key), config.get("value")
    actual_number, expected_number = _as_number(actual), _as_number(expected)
    if operator in ("equals", "not_equals"):
        if actual_number is not None and expected_number is not None:
            equal = actual_number == expected_number
        elif isinstance(actual, str) and isinstance(expected, str):
            equal = actual.strip().lower() == expected.strip().lower()
        else:
            equal = actual == expected
        return equal if operator == "equals" else not equal
    if operator in ("contains", "not_contains"):
        if isinstance(actual, str):
            found = str(expected).lower() in actual.lower()
        elif isinstance(actual, list):
            found = expected in actual
        else:
            found = False
        return found if operator == "contains" else not found
    if actual_number is None or expected_number is None:
        return False
    return actual_number > expected_number if operator == "greater_than" else actual_number < expected_number
