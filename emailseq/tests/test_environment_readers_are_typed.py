"""The typed readers of environment variables: an unset or blank variable means the default;
anything else must be a value of the type, within bounds, or start-up stops naming it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from emailseq.environment import env_bool, env_float, env_int, env_list, env_str

NAME = "EMAILSEQ_TEST_VARIABLE"


@pytest.fixture
def variable(monkeypatch: pytest.MonkeyPatch):
    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(NAME, raising=False)
        else:
            monkeypatch.setenv(NAME, value)

    return set_to


@pytest.mark.parametrize("value", [None, "", "   "])
def test_an_unset_or_blank_variable_gives_the_default(variable, value: str | None) -> None:
    variable(value)

    assert env_str(NAME, "fallback") == "fallback"
    assert env_bool(NAME, True) is True
    assert env_int(NAME, 7, minimum=1) == 7
    assert env_float(NAME, 2.5) == 2.5
    assert env_list(NAME, ["a"]) == ["a"]


def test_a_string_is_trimmed(variable) -> None:
    variable("  value  ")

    assert env_str(NAME, "fallback") == "value"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" On ", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_booleans_accept_the_usual_words_in_any_case(variable, value: str, expected: bool) -> None:
    variable(value)

    assert env_bool(NAME, not expected) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "tru"])
def test_a_boolean_of_another_word_is_refused(variable, value: str) -> None:
    variable(value)

    with pytest.raises(ImproperlyConfigured, match=f"^{NAME}: expected one of"):
        env_bool(NAME, False)


def test_integers_are_read_and_bounded(variable) -> None:
    variable(" 42 ")
    assert env_int(NAME, 1, minimum=1, maximum=100) == 42

    for value, complaint in [
        ("ten", "expected an integer"),
        ("1.5", "expected an integer"),
        ("0", "must be at least 1"),
        ("101", "must be at most 100"),
    ]:
        variable(value)
        with pytest.raises(ImproperlyConfigured, match=f"^{NAME}: {complaint}"):
            env_int(NAME, 1, minimum=1, maximum=100)


def test_numbers_are_read_and_bounded(variable) -> None:
    variable("0.25")
    assert env_float(NAME, 1.0, minimum=0.1) == 0.25

    for value, complaint in [("fast", "expected a number"), ("0.01", "must be at least 0.1")]:
        variable(value)
        with pytest.raises(ImproperlyConfigured, match=f"^{NAME}: {complaint}"):
            env_float(NAME, 1.0, minimum=0.1)


def test_a_list_is_split_on_commas_and_trimmed_with_empty_items_dropped(variable) -> None:
    variable(" mail.example.com, ,www.example.com ,")

    assert env_list(NAME, []) == ["mail.example.com", "www.example.com"]
