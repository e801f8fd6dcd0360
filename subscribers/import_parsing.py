"""Reading an import's CSV file: the header, the mapping of columns to fields, and the rows,
checked and normalized in blocks of whole records (subscribers.importing drives it)."""

from __future__ import annotations

import csv
import functools
import io
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from typing import IO, Any

from django.core.exceptions import ValidationError

from subscribers.addresses import normalize_email

FIELDS = ("email", "first_name", "last_name", "timezone", "tags")
PROPERTY_PREFIX = "properties."
TEXT_LIMITS = {"first_name": 150, "last_name": 150}
PROPERTY_NAME_MAX_LENGTH = 100
PROPERTY_VALUE_MAX_LENGTH = 1000
TAG_NAME_MAX_LENGTH = 100
HEADER_MAX_BYTES = 64 * 1024
RAW_MAX_LENGTH = 1000
TAG_SEPARATORS = re.compile(r"[,;]")
# A subset of the addresses normalize_email accepts, for which it returns value.lower(): plain
# ASCII dot-atoms at a dotted domain with an alphabetic top-level label (Django's EmailValidator
# with IDNA a no-op). Everything else takes the full path; both agree (tested).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_EMAIL = re.compile(
    rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
    r"(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.(?!-)[A-Za-z-]{2,63}(?<!-)"
).fullmatch

# Columns and mapping --------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnPlan:
    """Where each mapped field sits in a row of the file.

    Rows handed to writers ("staged" rows) hold email, first_name, last_name, timezone, tags,
    then the mapped properties in order; a field that is not mapped is an empty string.
    """

    width: int
    email: int
    optional: dict[str, int]  # first_name, last_name, timezone, tags -> column index
    properties: tuple[tuple[str, int], ...]  # property name, column index

    def picker(self) -> Any:
        # The parser appends an empty cell (at index `width`) to each accepted row.
        fields = [self.optional.get(name, self.width) for name in FIELDS[1:]]
        return itemgetter(self.email, *fields, *(index for _, index in self.properties))


def header_names(head: bytes) -> list[str]:
    end = head.find(b"\n")
    if end < 0 and len(head) >= HEADER_MAX_BYTES:
        raise ValidationError({"file": "The first row is longer than 64 KB: this does not look like a CSV file."})
    line = head if end < 0 else head[:end]
    if b"\x00" in head:
        raise ValidationError({"file": "This is not a CSV file: it contains binary data."})
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError({"file": "The header row is not valid UTF-8: save the file as “CSV UTF-8”."}) from None
    try:
        names = next(csv.reader([text], strict=True), [])
    except csv.Error as error:
        raise ValidationError({"file": f"The header row is not valid CSV ({error})."}) from None
    names = [name.strip() for name in names]
    if not any(names):
        raise ValidationError({"file": "The first row must name the columns (a header row such as “email”)."})
    return names


def _header_length(head: bytes) -> int:
    end = head.find(b"\n")
    return len(head) if end < 0 else end + 1


def default_mapping(header: list[str]) -> dict[str, str]:
    """Columns named like a field (any case), or `properties.<name>`, map to it."""
    mapping = {}
    for name in header:
        lowered = name.lower()
        if lowered in FIELDS or (lowered.startswith(PROPERTY_PREFIX) and len(lowered) > len(PROPERTY_PREFIX)):
            mapping[name] = lowered if lowered in FIELDS else PROPERTY_PREFIX + name[len(PROPERTY_PREFIX) :]
    return mapping


def plan_columns(header: list[str], mapping: dict[str, Any]) -> ColumnPlan:
    errors: list[str] = []
    position: dict[str, int] = {}
    for index, name in enumerate(header):
        position.setdefault(name, index)
    mapped_to: dict[str, str] = {}
    for column, target in mapping.items():
        if not isinstance(target, str):
            errors.append(f"Map column “{column}” to a field name (a string).")
            continue
        is_property = target.startswith(PROPERTY_PREFIX) and len(target) - len(PROPERTY_PREFIX) > 0
        if target not in FIELDS and not is_property:
            errors.append(
                f"“{target}” (for column “{column}”) is not a field: use email, first_name, last_name, "
                "timezone, tags or properties.<name>."
            )
        elif is_property and len(target) - len(PROPERTY_PREFIX) > PROPERTY_NAME_MAX_LENGTH:
            errors.append(f"Property names are at most {PROPERTY_NAME_MAX_LENGTH} characters (column “{column}”).")
        if column not in position:
            errors.append(f"The file has no column “{column}”.")
        elif header.count(column) > 1:
            errors.append(f"The file has several columns named “{column}”: rename them to map one.")
        if target in mapped_to:
            errors.append(f"Columns “{mapped_to[target]}” and “{column}” are both mapped to {target}.")
        mapped_to.setdefault(target, column)
    if "email" not in mapped_to and not errors:
        errors.append("Map a column to email (no column is named “email”).")
    if errors:
        raise ValidationError({"mapping": errors})
    return ColumnPlan(
        width=len(header),
        email=position[mapped_to["email"]],
        optional={name: position[mapped_to[name]] for name in FIELDS[1:] if name in mapped_to},
        properties=tuple(
            (target[len(PROPERTY_PREFIX) :], position[column])
            for target, column in mapped_to.items()
            if target.startswith(PROPERTY_PREFIX)
        ),
    )


# Parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str
    raw: str


@dataclass
class Block:
    """Whole records read from the file: those accepted (staged rows) and those rejected."""

    first_line: int
    next_line: int
    end_offset: int
    rows: list[tuple[str, ...]] = field(default_factory=list)
    row_lines: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def since(self, line: int) -> Block:
        """The part of this block from `line` on (a checkpoint may fall inside a block)."""
        kept = sum(1 for row_line in self.row_lines if row_line >= line)
        start = len(self.rows) - kept
        return Block(
            first_line=max(line, self.first_line),
            next_line=self.next_line,
            end_offset=self.end_offset,
            rows=self.rows[start:],
            row_lines=self.row_lines[start:],
            rejections=[rejection for rejection in self.rejections if rejection.line >= line],
        )


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _quoted(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _line_problems(lines: list[bytes], first_line: int) -> tuple[str, dict[int, str]]:
    """Decode line by line: text with undecodable bytes escaped, and what is wrong with each bad line."""
    problems: dict[int, str] = {}
    parts = []
    for number, raw in enumerate(lines, first_line):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            column = len(raw[: error.start].decode("utf-8", "replace")) + 1
            problems[number] = f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {column})"
            text = raw.decode("utf-8", "surrogateescape")
        else:
            if "\x00" in text:
                problems[number] = f"contains a NUL character (column {text.index(chr(0)) + 1})"
        parts.append(text)
    return "".join(parts), problems


class CsvParser:
    """Reads a stream of CSV rows in blocks of about `block_lines` lines, checking every row.

    `seen` maps a digest of each accepted address to its line: it is what makes the first
    occurrence win, and about 100 bytes per row is its cost.
    """

    def __init__(self, stream: IO[bytes], plan: ColumnPlan, *, block_lines: int) -> None:
        self.stream = stream
        self.plan = plan
        self.block_lines = block_lines
        self.seen: dict[int, int] = {}
        self.pick = plan.picker()
        self.limits = [(index, TEXT_LIMITS[name], name) for name, index in plan.optional.items() if name in TEXT_LIMITS]
        self.limits += [(index, PROPERTY_VALUE_MAX_LENGTH, PROPERTY_PREFIX + name) for name, index in plan.properties]

    def blocks(self) -> Iterator[Block]:
        stream = self.stream
        stream.seek(0)
        offset = _header_length(stream.read(HEADER_MAX_BYTES))
        stream.seek(offset)
        line = 2
        carry: list[bytes] = []
        while True:
            fresh = list(islice(stream, self.block_lines))
            lines = carry + fresh
            if not lines:
                return
            at_end = len(fresh) < self.block_lines
            block = self._parse(lines, line, offset, at_end=at_end)
            consumed = block.next_line - line
            carry = lines[consumed:]
            offset, line = block.end_offset, block.next_line
            if block.rows or block.rejections or consumed:
                yield block
            if at_end and not carry:
                return

    def _parse(self, lines: list[bytes], first_line: int, offset: int, *, at_end: bool) -> Block:
        raw = b"".join(lines)
        problems: dict[int, str] = {}
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text, problems = _line_problems(lines, first_line)
        else:
            if "\x00" in text:
                text, problems = _line_problems(lines, first_line)
        block = Block(first_line=first_line, next_line=first_line + len(lines), end_offset=offset + len(raw))
        rows, row_lines, rejections = block.rows, block.row_lines, block.rejections
        plan, pick, limits, seen = self.plan, self.pick, self.limits, self.seen
        width, email_index = plan.width, plan.email
        timezone_index = plan.optional.get("timezone")
        tags_index = plan.optional.get("tags")
        zones = _time_zones()
        reader = csv.reader(io.StringIO(text, newline="\n"), strict=True)
        done = 0  # lines of this block consumed by whole records

        def reject(reason: str) -> None:
            raw_text = b"".join(lines[done : reader.line_num]).decode("utf-8", "replace")
            raw_text = raw_text.rstrip("\r\n").replace("\x00", "\ufffd")[:RAW_MAX_LENGTH]
            rejections.append(Rejection(first_line + done, reason, raw_text))

        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                if reader.line_num >= len(lines) and not at_end:
                    # The last record goes on past this block (a quoted field with line breaks).
                    block.next_line = first_line + done
                    block.end_offset = offset + sum(len(item) for item in lines[:done])
                    break
                reject(f"not valid CSV ({error})")
                done = reader.line_num
                continue
            line = first_line + done
            if problems and (
                reason := next((problems[n] for n in range(line, first_line + reader.line_num) if n in problems), None)
            ):
                reject(reason)
            elif len(row) != width:
                if row:
                    reject(f"has {len(row)} column{'s' if len(row) != 1 else ''}, the header has {width}")
            elif (reason := _check_row(row, email_index, limits, timezone_index, tags_index, zones)) is not None:
                reject(reason)
            elif (first := seen.setdefault(hash(row[email_index]), line)) != line:
                reject(f"duplicate of line {first}")
            else:
                row.append("")
                rows.append(pick(row))
                row_lines.append(line)
            done = reader.line_num
        return block


def _check_row(
    row: list[str],
    email_index: int,
    limits: list[tuple[int, int, str]],
    timezone_index: int | None,
    tags_index: int | None,
    zones: frozenset[str],
) -> str | None:
    """What is wrong with a row, or None; normalizes the row's email, time zone and tags in place."""
    email = row[email_index]
    if len(email) <= 254 and _SIMPLE_EMAIL(email):
        row[email_index] = email.lower()
    else:
        if not email.strip():
            return "no email address"
        try:
            row[email_index] = normalize_email(email)
        except ValidationError as error:
            return f"invalid email address {_quoted(email.strip())}: {error.messages[0]}"
    for index, limit, name in limits:
        value = row[index] = row[index].strip()
        if len(value) > limit:
            return f"{name} is longer than {limit} characters"
    if timezone_index is not None and (zone_name := row[timezone_index]) and zone_name not in zones:
        zone_name = zone_name.strip()
        if zone_name and zone_name not in zones:
            return f"timezone {_quoted(zone_name)} is not a known IANA time zone (for example Europe/Paris)"
        row[timezone_index] = zone_name
    if tags_index is not None and row[tags_index]:
        names = [name for name in (part.strip() for part in TAG_SEPARATORS.split(row[tags_index])) if name]
        for name in names:
            if len(name) > TAG_NAME_MAX_LENGTH:
                return f"tag {_quoted(name, 40)} is longer than {TAG_NAME_MAX_LENGTH} characters"
        row[tags_index] = ",".join(dict.fromkeys(names))
    return None
