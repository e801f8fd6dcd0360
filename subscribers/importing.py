"""CSV imports of contacts: checked when uploaded, then loaded in the background in checkpointed chunks.

The upload is checked at once (a header row, an email column, a mapping of columns to known
fields) and stored; a worker claims the import with a lease and works through the file in
chunks of IMPORT_CHUNK_ROWS lines. Each chunk's contacts, list and tag memberships, rejected
rows, counters and the checkpoint (line and byte offset reached) are written in one
transaction, so a worker killed at any moment is replaced by one that resumes from the last
checkpoint and writes nothing twice. Duplicates within the file are found with one small
digest per accepted address; a worker that resumes re-reads the part of the file already done
to rebuild them, so that the first occurrence wins exactly as in an uninterrupted run.

On PostgreSQL a chunk is COPYed into a temporary table and written with a few set-based
statements; elsewhere (SQLite) with executemany. A thread parses the next chunks while the
database writes the current one.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import enum
import functools
import io
import json
import logging
import queue
import re
import secrets
import threading
import time
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from typing import IO, Any, Protocol

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from organizations.models import Organization
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.addresses import email_hash, normalize_email
from subscribers.models import Contact, ContactImport, ContactList, ImportRejection, Suppression, Tag

logger = logging.getLogger(__name__)

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


class Outcome(enum.Enum):
    FINISHED = "finished"  # completed or failed, or already final
    PAUSED = "paused"  # the time budget ran out; the lease is released for the next task
    NOT_CLAIMED = "not claimed"  # another worker holds the lease


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


def _header_names(head: bytes) -> list[str]:
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


# Creating an import ---------------------------------------------------------------------------


@transaction.atomic
def contact_import_create(
    *,
    organization: Organization,
    upload: File,
    mapping: dict[str, Any] | None = None,
    list_id: int | None = None,
    existing: str = ContactImport.Existing.SKIP,
    consent_source: str = "",
    created_by: Any = None,
    run_in_background: bool = True,
) -> ContactImport:
    """Check the file's header and the mapping, store the file and queue the import.

    `run_in_background=False` leaves the import queued for the caller to run (the
    import_contacts command runs it in its own process).
    """
    if not upload.size:
        raise ValidationError({"file": "The file is empty."})
    if upload.size > settings.IMPORT_MAX_FILE_BYTES:
        raise ValidationError(
            {"file": f"The file is larger than the limit of {_size(settings.IMPORT_MAX_FILE_BYTES)}."}
        )
    upload.seek(0)
    header = _header_names(upload.read(HEADER_MAX_BYTES))
    resolved = default_mapping(header) if mapping is None else mapping
    plan_columns(header, resolved)
    contact_list = None
    if list_id is not None:
        contact_list = ContactList.objects.for_org(organization).filter(pk=list_id).first()
        if contact_list is None:
            raise Http404("There is no list with this list_id in your organization.")
    filename = (upload.name or "contacts.csv").rsplit("/", 1)[-1][:255]
    contact_import = ContactImport(
        organization=organization,
        token=secrets.token_hex(16),
        filename=filename,
        file_size=upload.size,
        mapping=resolved,
        contact_list=contact_list,
        existing=existing,
        consent_source=consent_source.strip(),
        # An API key calls as no person.
        created_by=created_by if isinstance(created_by, get_user_model()) else None,
        # Until a worker claims it: the time after which imports_resume dispatches it again.
        lease_expires_at=timezone.now() + dt.timedelta(seconds=settings.IMPORT_LEASE_SECONDS),
    )
    upload.seek(0)
    contact_import.file.save(filename, upload, save=False)
    contact_import.save()
    if run_in_background:
        transaction.on_commit(functools.partial(_dispatch, contact_import.pk), robust=True)
    return contact_import


def _size(count: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def _dispatch(import_id: int) -> None:
    from subscribers.tasks import import_run

    import_run.delay(import_id)


# Reading ------------------------------------------------------------------------------------


def contact_import_list(*, organization: Organization) -> QuerySet[ContactImport]:
    return ContactImport.objects.for_org(organization)


def contact_import_get(*, organization: Organization, import_id: int) -> ContactImport:
    contact_import = contact_import_list(organization=organization).filter(pk=import_id).first()
    if contact_import is None:
        raise Http404("There is no import with this id in your organization.")
    return contact_import


def import_rejection_list(*, contact_import: ContactImport) -> QuerySet[ImportRejection]:
    return ImportRejection.objects.filter(contact_import=contact_import)


def contact_imports_due(*, now: dt.datetime | None = None, limit: int = 100) -> list[int]:
    """Unfinished imports that no worker holds: never claimed, or whose worker's lease ran out."""
    now = now or timezone.now()
    pending = ContactImport.objects.filter(status__in=[ContactImport.Status.QUEUED, ContactImport.Status.RUNNING])
    due = pending.filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
    return list(due.order_by("lease_expires_at").values_list("pk", flat=True)[:limit])


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


# Writing --------------------------------------------------------------------------------------

STAGED = FIELDS  # then p0, p1, ... for the properties
EMAIL, FIRST_NAME, LAST_NAME, TIMEZONE, TAGS = range(len(STAGED))


@dataclass
class ChunkCounts:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    # Existing contacts the file's values were applied to (for sequence goal checks).
    updated_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ChunkTarget:
    """What every chunk of one import writes to."""

    organization_id: int
    list_id: int | None
    update: bool
    consent_source: str
    properties: tuple[str, ...]  # names of the staged properties, in order
    tags: bool  # whether a column is mapped to tags


class ChunkWriter(Protocol):
    def __init__(self, target: ChunkTarget) -> None: ...

    def write(self, rows: list[tuple[str, ...]], *, now: dt.datetime) -> ChunkCounts: ...


def _has_suppressions(organization_id: int) -> bool:
    return Suppression.objects.filter(organization_id=organization_id).exists()


class PostgresChunkWriter:
    """COPY into a temporary table, then one statement that inserts (or updates) the contacts and
    their list and tag memberships."""

    def __init__(self, target: ChunkTarget) -> None:
        self.target = target
        names = [*STAGED, *(f"p{number}" for number in range(len(target.properties)))]
        columns = ", ".join(f"{name} text" for name in names)
        # Dropped first: inside an outer transaction a chunk's commit is a savepoint's release.
        self.create_stage = (
            f"DROP TABLE IF EXISTS pg_temp.import_stage; CREATE TEMP TABLE import_stage ({columns}) ON COMMIT DROP"
        )
        listed = ", ".join(names)
        self.copy = f"COPY import_stage ({listed}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL ({listed}))"

    def write(self, rows: list[tuple[str, ...]], *, now: dt.datetime) -> ChunkCounts:
        target = self.target
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.execute(self.create_stage)
            cursor.copy_expert(self.copy, buffer)
            if target.tags:
                cursor.execute(
                    f"INSERT INTO {Tag._meta.db_table} (organization_id, name, created_at) "
                    "SELECT DISTINCT %s, n.name, %s FROM import_stage s "
                    "CROSS JOIN unnest(string_to_array(NULLIF(s.tags, ''), ',')) AS n(name) "
                    "ORDER BY 2 ON CONFLICT (organization_id, name) DO NOTHING",
                    [target.organization_id, now],
                )
            cursor.execute(*self._statement(now))
            created, matched, matched_ids = cursor.fetchone()
        counts = ChunkCounts(created=created)
        if target.update:
            counts.updated, counts.updated_ids = matched, list(matched_ids)
        counts.skipped = len(rows) - counts.created - counts.updated
        return counts

    def _properties_sql(self) -> tuple[str, list[str]]:
        if not self.target.properties:
            return "'{}'::jsonb", []
        parts, params = [], []
        names = list(enumerate(self.target.properties))
        for start in range(0, len(names), 50):  # jsonb_build_object takes at most 100 arguments
            parts.append(
                "jsonb_build_object("
                + ", ".join(f"%s::text, NULLIF(s.p{number}, '')" for number, _ in names[start : start + 50])
                + ")"
            )
            params += [name for _, name in names[start : start + 50]]
        return f"jsonb_strip_nulls({' || '.join(parts)})", params

    def _statement(self, now: dt.datetime) -> tuple[str, list[Any]]:
        target, org = self.target, self.target.organization_id
        contacts = Contact._meta.db_table
        properties, params = self._properties_sql()
        parts = [
            "staged AS (SELECT s.email, s.first_name, s.last_name, s.timezone, s.tags, "
            f"{properties} AS properties FROM import_stage s)"
        ]
        status, changed_at, join, join_params = "'active'", "NULL::timestamptz", "", []
        status_params: list[Any] = []
        if _has_suppressions(org):
            cases = " ".join("WHEN %s THEN %s" for _ in Suppression.CONTACT_STATUS_BY_REASON)
            status = f"CASE p.reason {cases} ELSE 'active' END"
            status_params = [str(value) for pair in Suppression.CONTACT_STATUS_BY_REASON.items() for value in pair]
            changed_at = "CASE WHEN p.reason IS NULL THEN NULL ELSE %s::timestamptz END"
            status_params.append(now)
            join = (
                f"LEFT JOIN {Suppression._meta.db_table} p ON p.organization_id = %s "
                "AND p.email_hash = encode(sha256(convert_to(s.email, 'UTF8')), 'hex')"
            )
            join_params = [org]
        # Sorted inserts cannot deadlock with another import's sorted inserts.
        parts.append(
            f"created AS (INSERT INTO {contacts} (organization_id, email, first_name, last_name, properties, "
            "timezone, status, status_changed_at, consent_source, consented_at, created_at, updated_at) "
            f"SELECT %s, s.email, s.first_name, s.last_name, s.properties, s.timezone, {status}, {changed_at}, "
            f"%s, %s, %s, %s FROM staged s {join} ORDER BY s.email "
            "ON CONFLICT (organization_id, email) DO NOTHING RETURNING id, email)"
        )
        params += [org, *status_params, target.consent_source, now, now, now, *join_params]
        touched = "SELECT id, email FROM created"
        if target.update:
            kept = ("first_name", "last_name", "timezone")
            assign = ", ".join(f"{name} = CASE WHEN s.{name} <> '' THEN s.{name} ELSE c.{name} END" for name in kept)
            differs = " OR ".join(f"(s.{name} <> '' AND s.{name} <> c.{name})" for name in kept)
            parts.append(
                f"updated AS (UPDATE {contacts} c SET {assign}, properties = c.properties || s.properties, "
                "updated_at = %s FROM staged s WHERE c.organization_id = %s AND c.email = s.email "
                f"AND ({differs} OR NOT c.properties @> s.properties) RETURNING c.id)"
            )
            # The statement's snapshot predates its own inserts: these are the contacts that existed.
            parts.append(
                f"matched AS (SELECT c.id, c.email FROM {contacts} c JOIN staged s "
                "ON c.organization_id = %s AND c.email = s.email)"
            )
            params += [now, org, org]
            touched += " UNION ALL SELECT id, email FROM matched"
        parts.append(f"touched AS ({touched})")
        if target.list_id is not None:
            parts.append(
                f"listed AS (INSERT INTO {Contact.lists.through._meta.db_table} (contact_id, contactlist_id) "
                "SELECT id, %s FROM touched ORDER BY id ON CONFLICT DO NOTHING)"
            )
            params.append(target.list_id)
        if target.tags:
            parts.append(
                f"tagged AS (INSERT INTO {Contact.tags.through._meta.db_table} (contact_id, tag_id) "
                "SELECT t.id, g.id FROM touched t JOIN staged s ON s.email = t.email "
                "CROSS JOIN unnest(string_to_array(NULLIF(s.tags, ''), ',')) AS n(name) "
                f"JOIN {Tag._meta.db_table} g ON g.organization_id = %s AND g.name = n.name "
                "ORDER BY 1, 2 ON CONFLICT DO NOTHING)"
            )
            params.append(org)
        matched = "(SELECT count(*) FROM matched), ARRAY(SELECT id FROM matched)" if target.update else "0, NULL"
        return f"WITH {', '.join(parts)} SELECT (SELECT count(*) FROM created), {matched}", params


def _batches(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class PortableChunkWriter:
    """The same writes as PostgresChunkWriter, with executemany (SQLite).

    SQLite transactions here take the write lock when they begin, so the existing contacts read
    at the start of a chunk are still all there are when the chunk inserts.
    """

    def __init__(self, target: ChunkTarget) -> None:
        self.target = target

    def _properties(self, row: tuple[str, ...]) -> dict[str, str]:
        return {name: value for name, value in zip(self.target.properties, row[len(STAGED) :], strict=True) if value}

    def write(self, rows: list[tuple[str, ...]], *, now: dt.datetime) -> ChunkCounts:
        target = self.target
        contacts = Contact.objects.for_org(target.organization_id)
        fields = ("email", "id", "first_name", "last_name", "timezone", "properties")
        existing = {
            found[0]: found
            for emails in _batches([row[EMAIL] for row in rows])
            for found in contacts.filter(email__in=emails).values_list(*fields)
        }
        new_rows = sorted(row for row in rows if row[EMAIL] not in existing)
        statuses = self._suppressed_statuses([row[EMAIL] for row in new_rows])
        stamp = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {Contact._meta.db_table} (organization_id, email, first_name, last_name, properties, "
                "timezone, status, status_changed_at, consent_source, consented_at, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (organization_id, email) DO NOTHING",
                [
                    (
                        target.organization_id,
                        row[EMAIL],
                        row[FIRST_NAME],
                        row[LAST_NAME],
                        json.dumps(self._properties(row)),
                        row[TIMEZONE],
                        statuses.get(row[EMAIL], Contact.Status.ACTIVE),
                        stamp if row[EMAIL] in statuses else None,
                        target.consent_source,
                        stamp,
                        stamp,
                        stamp,
                    )
                    for row in new_rows
                ],
            )
        touched = {
            email: contact_id
            for emails in _batches([row[EMAIL] for row in new_rows])
            for email, contact_id in contacts.filter(email__in=emails).values_list("email", "id")
        }
        counts = ChunkCounts(created=len(new_rows))
        if target.update and existing:
            counts.updated = len(existing)
            counts.updated_ids = [found[1] for found in existing.values()]
            self._update(rows, existing, stamp)
            touched.update((email, found[1]) for email, found in existing.items())
        counts.skipped = len(rows) - counts.created - counts.updated
        self._attach(rows, touched)
        return counts

    def _suppressed_statuses(self, emails: list[str]) -> dict[str, str]:
        if not emails or not _has_suppressions(self.target.organization_id):
            return {}
        by_hash = {email_hash(email): email for email in emails}
        suppressions = Suppression.objects.for_org(self.target.organization_id)
        return {
            by_hash[digest]: Suppression.CONTACT_STATUS_BY_REASON[reason]
            for hashes in _batches(list(by_hash))
            for digest, reason in suppressions.filter(email_hash__in=hashes).values_list("email_hash", "reason")
        }

    def _update(self, rows: list[tuple[str, ...]], existing: dict[str, tuple[Any, ...]], stamp: Any) -> None:
        changes = []
        for row in rows:
            if (found := existing.get(row[EMAIL])) is None:
                continue
            _, contact_id, *current, properties = found
            wanted = [new or old for new, old in zip(row[FIRST_NAME : TIMEZONE + 1], current, strict=True)]
            merged = {**properties, **self._properties(row)}
            if wanted != current or merged != properties:
                changes.append((*wanted, json.dumps(merged), stamp, contact_id))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {Contact._meta.db_table} SET first_name = %s, last_name = %s, timezone = %s, properties = %s, "
                "updated_at = %s WHERE id = %s",
                changes,
            )

    def _attach(self, rows: list[tuple[str, ...]], touched: dict[str, int]) -> None:
        target = self.target
        names_by_email = {row[EMAIL]: row[TAGS].split(",") for row in rows if row[TAGS]}
        names = sorted({name for names in names_by_email.values() for name in names})
        if names:
            Tag.objects.bulk_create(
                [Tag(organization_id=target.organization_id, name=name) for name in names], ignore_conflicts=True
            )
        tags = Tag.objects.for_org(target.organization_id)
        tag_ids = dict(
            pair for batch in _batches(names) for pair in tags.filter(name__in=batch).values_list("name", "id")
        )
        with connection.cursor() as cursor:
            if target.list_id is not None:
                cursor.executemany(
                    f"INSERT INTO {Contact.lists.through._meta.db_table} (contact_id, contactlist_id) "
                    "VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    [(contact_id, target.list_id) for contact_id in sorted(touched.values())],
                )
            cursor.executemany(
                f"INSERT INTO {Contact.tags.through._meta.db_table} (contact_id, tag_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                sorted(
                    (touched[email], tag_ids[name])
                    for email, names in names_by_email.items()
                    if email in touched
                    for name in names
                ),
            )


# Processing -----------------------------------------------------------------------------------


class _LeaseLost(Exception):
    """Another worker moved the import on (or it was finished): this one stops."""


def _claim(import_id: int) -> bool:
    now = timezone.now()
    claimable = Q(status=ContactImport.Status.QUEUED) | Q(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now), status=ContactImport.Status.RUNNING
    )
    claimed = (
        ContactImport.objects.filter(pk=import_id)
        .filter(claimable)
        .update(
            status=ContactImport.Status.RUNNING,
            lease_expires_at=now + dt.timedelta(seconds=settings.IMPORT_LEASE_SECONDS),
            started_at=Coalesce("started_at", now),
        )
    )
    return claimed == 1


def _still_ours(contact_import: ContactImport, offset: int) -> QuerySet[ContactImport]:
    """The import row, if no other worker moved it past the checkpoint this worker last wrote."""
    return ContactImport.objects.filter(pk=contact_import.pk, status=ContactImport.Status.RUNNING, byte_offset=offset)


def _writer_for(contact_import: ContactImport, plan: ColumnPlan) -> ChunkWriter:
    target = ChunkTarget(
        organization_id=contact_import.organization_id,
        list_id=contact_import.contact_list_id,
        update=contact_import.existing == ContactImport.Existing.UPDATE,
        consent_source=(contact_import.consent_source or f"import:{contact_import.filename}")[:200],
        properties=tuple(name for name, _ in plan.properties),
        tags="tags" in plan.optional,
    )
    return PostgresChunkWriter(target) if connection.vendor == "postgresql" else PortableChunkWriter(target)


def _check_goals(contact_ids: Iterable[int]) -> None:
    """Updated properties and tags may meet a sequence goal, as contact_update would find."""
    enrolled = Enrollment.objects.filter(
        contact_id__in=list(contact_ids), status=Enrollment.Status.ACTIVE, sequence__goal__isnull=False
    )
    for contact in Contact.objects.filter(pk__in=enrolled.values("contact_id")):
        sequence_services.goals_check_for_contact(contact=contact)


def _write_chunk(contact_import: ContactImport, writer: ChunkWriter, block: Block, *, offset: int) -> None:
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A commit lost in a server crash loses its checkpoint with it: the chunk is redone.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        # The row lock makes a second worker on the same import wait here, then stop.
        if not list(_still_ours(contact_import, offset).select_for_update().values_list("pk", flat=True)):
            raise _LeaseLost
        counts = writer.write(block.rows, now=now) if block.rows else ChunkCounts()
        if counts.updated_ids:
            _check_goals(counts.updated_ids)
        ImportRejection.objects.bulk_create(
            ImportRejection(
                organization_id=contact_import.organization_id,
                contact_import_id=contact_import.pk,
                line=rejection.line,
                reason=rejection.reason[:500],
                raw=rejection.raw,
            )
            for rejection in block.rejections
        )
        ContactImport.objects.filter(pk=contact_import.pk).update(
            line_number=block.next_line,
            byte_offset=block.end_offset,
            rows_processed=F("rows_processed") + len(block.rows) + len(block.rejections),
            created_count=F("created_count") + counts.created,
            updated_count=F("updated_count") + counts.updated,
            skipped_count=F("skipped_count") + counts.skipped,
            rejected_count=F("rejected_count") + len(block.rejections),
            lease_expires_at=now + dt.timedelta(seconds=settings.IMPORT_LEASE_SECONDS),
        )


_END = object()


def _read_ahead(blocks: Iterator[Block], depth: int = 2) -> Iterator[Block]:
    """`blocks`, parsed in a thread while the caller writes the previous ones: psycopg2 and
    sqlite3 release the GIL while the database works, so parsing costs no wall time."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not hand(block):
                    return
            hand(_END)
        except BaseException as error:  # noqa: BLE001 - handed over and raised in the caller
            hand(error)

    reader = threading.Thread(target=produce, name="import-reader", daemon=True)
    reader.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _work(contact_import: ContactImport, *, deadline: float | None) -> Outcome:
    storage, name = contact_import.file.storage, contact_import.file.name
    with storage.open(name, "rb") as stored:
        stream = getattr(stored, "file", stored)
        header = _header_names(stream.read(HEADER_MAX_BYTES))
        plan = plan_columns(header, contact_import.mapping)
        writer = _writer_for(contact_import, plan)
        parser = CsvParser(stream, plan, block_lines=settings.IMPORT_CHUNK_ROWS)
        done_line, offset = contact_import.line_number, contact_import.byte_offset
        # Blocks before the checkpoint are read again only to rebuild the digests of addresses seen.
        with contextlib.closing(_read_ahead(parser.blocks())) as blocks:
            for block in blocks:
                if block.next_line <= done_line:
                    continue
                if block.first_line < done_line:
                    block = block.since(done_line)
                _write_chunk(contact_import, writer, block, offset=offset)
                done_line, offset = block.next_line, block.end_offset
                if deadline is not None and time.monotonic() > deadline:
                    _still_ours(contact_import, offset).update(lease_expires_at=timezone.now())
                    return Outcome.PAUSED
    finished = _still_ours(contact_import, offset).update(
        status=ContactImport.Status.COMPLETED, finished_at=timezone.now(), lease_expires_at=None
    )
    if not finished:
        raise _LeaseLost
    return Outcome.FINISHED


def _fail(contact_import: ContactImport, message: str) -> None:
    ContactImport.objects.filter(
        pk=contact_import.pk, status__in=[ContactImport.Status.QUEUED, ContactImport.Status.RUNNING]
    ).update(status=ContactImport.Status.FAILED, error=message, finished_at=timezone.now(), lease_expires_at=None)


def contact_import_process(*, import_id: int, time_budget: float | None = None) -> Outcome:
    """Claim the import and work through it from its checkpoint; with `time_budget`, stop after the
    chunk during which that many seconds ran out (Outcome.PAUSED, the lease released).

    Safe to call any number of times, concurrently too: only the worker holding the lease
    works, and a worker whose lease ran out and was taken over stops at its next chunk.
    """
    deadline = None if time_budget is None else time.monotonic() + time_budget
    if not _claim(import_id):
        return Outcome.NOT_CLAIMED
    contact_import = ContactImport.objects.get(pk=import_id)
    try:
        return _work(contact_import, deadline=deadline)
    except _LeaseLost:
        return Outcome.NOT_CLAIMED
    except FileNotFoundError:
        _fail(contact_import, "The uploaded file is no longer available: upload it again.")
    except ValidationError as error:
        _fail(contact_import, f"The file changed since it was uploaded: {'; '.join(error.messages)}")
    except DatabaseError as error:
        if isinstance(error, (InterfaceError, OperationalError)):
            raise  # the database is away: the lease runs out and imports_resume tries again
        logger.exception("import %s failed", import_id)
        _fail(contact_import, f"The import stopped on a database error ({type(error).__name__}); it is logged.")
    except Exception:
        logger.exception("import %s failed", import_id)
        _fail(contact_import, "The import stopped on an unexpected error; it is logged.")
    return Outcome.FINISHED
