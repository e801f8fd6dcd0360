"""The import's quick check of ordinary addresses accepts and normalizes exactly as
normalize_email, which contact_create uses, would."""

from __future__ import annotations

import io

from django.core.exceptions import ValidationError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from subscribers import importing
from subscribers.addresses import normalize_email

TRICKY = [
    "Ada@Example.COM",
    " ada@example.com ",
    "a.b+c@example.co.uk",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@-example.com",
    "a@example-.com",
    "a@example.c",
    "a@example.c0m",
    "a@example.xn--p1ai",
    "a@localhost",
    "a@[127.0.0.1]",
    "a@exam_ple.com",
    "a@example..com",
    "a@example.com.",
    "\u212a@example.com",
    "a@\u212aexample.com",
    "a@münchen.de",
    '"quoted"@example.com',
    "a@" + "x" * 63 + ".com",
    "a@" + "x" * 64 + ".com",
    "a" * 245 + "@example.com",
    "two@@example.com",
    "",
]


def imported_as(address: str) -> str | None:
    """The address the import stores for a one-column file holding `address`, or None if rejected."""
    plan = importing.plan_columns(["email"], {"email": "email"})
    parser = importing.CsvParser(io.BytesIO(b"email\n" + _csv_cell(address)), plan, block_lines=10)
    rows = [row for block in parser.blocks() for row in block.rows]
    return rows[0][0] if rows else None


def _csv_cell(address: str) -> bytes:
    return ('"' + address.replace('"', '""') + '"\n').encode()


def normalized(address: str) -> str | None:
    try:
        return normalize_email(address)
    except ValidationError:
        return None


def test_tricky_addresses_are_judged_as_normalize_email_judges_them():
    assert {address: imported_as(address) for address in TRICKY} == {address: normalized(address) for address in TRICKY}


ATOM = st.text(alphabet="abcXYZ09.-_+'@ ", min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(local=ATOM, domain=st.lists(ATOM, min_size=1, max_size=4))
@example(local="a", domain=["b-", "com"])
def test_generated_addresses_are_judged_as_normalize_email_judges_them(local: str, domain: list[str]):
    address = f"{local}@{'.'.join(domain)}"
    if not address.strip():
        return
    assert imported_as(address) == normalized(address)
