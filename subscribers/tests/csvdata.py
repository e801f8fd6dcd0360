"""CSV files of contacts for import tests and the import benchmark, with what an import must make of them.

Every `bad_every`-th row is malformed, in turn: an invalid email address, bytes that are not
UTF-8, a ragged row, a duplicate of an earlier row's address (in other capitals), an unknown
time zone, a first name that is too long. Valid rows vary in what imports must handle: capitals
and spaces around addresses, quoted fields with commas, quotes and line breaks, tags separated by
commas or semicolons, empty cells.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HEADER = ["email", "first_name", "last_name", "timezone", "tags", "company"]
MAPPING = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "timezone": "timezone",
    "tags": "tags",
    "company": "properties.company",
}
TIME_ZONES = ["", "Europe/Paris", "America/New_York", " Asia/Tokyo "]
TAGS = ["", "vip", "vip; newsletter", "trial,vip"]
BAD_EMAILS = {
    "not-an-email": "Enter a valid email address.",
    "two@@example.com": "Enter a valid email address.",
    "space in@example.com": "Enter a valid email address.",
    "jürgen@example.com": "Enter a valid email address (only ASCII characters before the @).",
}
BAD_KINDS = 6
COPY_REFUSES = (1, 2)  # the kinds of bad row PostgreSQL's COPY cannot load: not UTF-8, ragged


@dataclass
class Expected:
    """What importing the file must produce."""

    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # email -> details
    rejections: dict[int, str] = field(default_factory=dict)  # line -> reason
    rows: int = 0


def _valid_row(number: int) -> tuple[list[str], dict[str, Any]]:
    email = f"person{number}@example{number % 13}.com"
    written = email
    if number % 10 == 3:
        written = f"Person{number}@Example{number % 13}.COM"
    elif number % 10 == 7:
        written = f"  {email} "
    first_name = f"First{number}"
    if number % 50 == 5:
        first_name = f'Anne, "Annie" {number}'
    elif number % 200 == 9:
        first_name = f"Two\nLines {number}"
    last_name = "" if number % 17 == 0 else "Example"
    zone = TIME_ZONES[number % len(TIME_ZONES)]
    tags = TAGS[number % len(TAGS)]
    company = "" if number % 9 == 0 else f"Company {number % 100}"
    expected = {
        "first_name": first_name,
        "last_name": last_name,
        "timezone": zone.strip(),
        "tags": {name.strip() for name in tags.replace(";", ",").split(",") if name.strip()},
        "properties": {"company": company} if company else {},
    }
    return [written, f" {first_name} ", last_name, zone, tags, company], (email, expected)


def _encode(row: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue().encode()


def write_contacts_csv(
    out: IO[bytes], rows: int, *, bad_every: int = 100, expect: bool = True, copyable: IO[bytes] | None = None
) -> Expected:
    """Write a header and `rows` data rows to `out`; with `expect`, collect what importing them must give.

    `copyable` receives the same file without the rows PostgreSQL's COPY refuses (bytes that
    are not UTF-8, ragged rows): the benchmark's baseline.
    """
    expected = Expected(rows=rows)
    out.write(_encode(HEADER))
    if copyable is not None:
        copyable.write(_encode(HEADER))
    line = 2
    last_valid: tuple[str, int] = ("", 0)
    bad_count = 0
    for number in range(rows):
        if bad_every and number % bad_every == bad_every - 1:
            kind = bad_count % BAD_KINDS
            bad_count += 1
            data, reason = _bad_row(kind, number, bad_count, last_valid)
            if expect:
                expected.rejections[line] = reason
            if copyable is not None and kind not in COPY_REFUSES:
                copyable.write(data)
        else:
            row, (email, details) = _valid_row(number)
            data = _encode(row)
            last_valid = (email, line)
            if expect:
                expected.contacts[email] = details
            if copyable is not None:
                copyable.write(data)
        out.write(data)
        line += data.count(b"\n")
    return expected


def _bad_row(kind: int, number: int, bad_count: int, last_valid: tuple[str, int]) -> tuple[bytes, str]:
    if kind == 0:
        email = list(BAD_EMAILS)[bad_count % len(BAD_EMAILS)]
        return _encode([email, "Bad", "Email", "", "", ""]), f"invalid email address {email!r}: {BAD_EMAILS[email]}"
    if kind == 1:
        prefix = f"person{number}@bad-bytes.example,Ren".encode()
        return prefix + b"\xe9,Example,,,\n", f"not valid UTF-8 (byte 0xe9 at column {len(prefix) + 1})"
    if kind == 2:
        columns = 5 if bad_count % 2 else 7
        return _encode([f"person{number}@ragged.example", *["x"] * (columns - 1)]), (
            f"has {columns} columns, the header has 6"
        )
    if kind == 3:
        email, line = last_valid
        return _encode([email.upper(), "Again", "", "", "", ""]), f"duplicate of line {line}"
    if kind == 4:
        return _encode([f"person{number}@zone.example", "Zone", "", "Mars/Olympus_Mons", "", ""]), (
            "timezone 'Mars/Olympus_Mons' is not a known IANA time zone (for example Europe/Paris)"
        )
    return _encode([f"person{number}@long.example", "x" * 151, "", "", "", ""]), (
        "first_name is longer than 150 characters"
    )


def contacts_csv(rows: int, *, bad_every: int = 100) -> tuple[bytes, Expected]:
    buffer = io.BytesIO()
    expected = write_contacts_csv(buffer, rows, bad_every=bad_every)
    return buffer.getvalue(), expected


def contacts_csv_file(path: Path, rows: int, *, bad_every: int = 100, expect: bool = True) -> Expected:
    with path.open("wb") as out:
        return write_contacts_csv(out, rows, bad_every=bad_every, expect=expect)
