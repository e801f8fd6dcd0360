"""One normal form per address (trimmed, lower-case, ASCII domain), and the hash that suppression
keeps of it."""

from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import ValidationError

from subscribers.addresses import email_hash, normalize_email


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (" Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        ("\tgrace@navy.mil\n", "grace@navy.mil"),
        ("user@BÜCHER.example", "user@xn--bcher-kva.example"),
        ("user@bücher.example", "user@xn--bcher-kva.example"),
        ("Info@Пример.РФ", "info@xn--e1afmkfd.xn--p1ai"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
    ],
)
def test_an_address_is_trimmed_lower_cased_and_given_an_ascii_domain(given: str, stored: str) -> None:
    assert normalize_email(given) == stored


def test_normalizing_twice_changes_nothing() -> None:
    once = normalize_email("  Someone@BÜCHER.Example ")

    assert normalize_email(once) == once


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   ",
        "no-at-sign",
        "two@@example.com",
        "a@b@example.com",
        "user@",
        "@example.com",
        "user@exa mple.com",
        "user@example",
        "user@ex_ample.com",
        "josé@example.com",  # a non-ASCII local part needs SMTPUTF8, which is not supported
        "ſam@example.com",  # letters Django's case-insensitive validator lets through
        "ı@example.com",
        "user@" + "a" * 64 + ".com",
        "x" * 250 + "@e.com",
        None,
        42,
    ],
)
def test_a_malformed_address_is_refused(given: object) -> None:
    with pytest.raises(ValidationError):
        normalize_email(given)  # type: ignore[arg-type]


def test_the_hash_is_the_sha256_of_the_normalized_address_so_spellings_of_one_address_share_it() -> None:
    spellings = [" Ada@Example.com", "ada@EXAMPLE.COM ", "ada@example.com"]

    hashes = {email_hash(normalize_email(spelling)) for spelling in spellings}

    assert hashes == {hashlib.sha256(b"ada@example.com").hexdigest()}
    assert email_hash("ada@example.com") != email_hash("bob@example.com")
    assert len(next(iter(hashes))) == 64
