"""Writing one chunk of an import: its contacts, their list and tag memberships and the consent
records of the contacts it creates.

On PostgreSQL a chunk is COPYed into a temporary table and written with two statements (the
tags it names, then everything else); elsewhere (SQLite) with executemany. Both write the same
rows and count them the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import connection

from subscribers.addresses import email_hash
from subscribers.import_parsing import FIELDS
from subscribers.models import ConsentRecord, Contact, Suppression, Tag

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
    import_id: int
    list_id: int | None
    update: bool
    consent_source: str
    actor_id: int | None  # who uploaded the file, recorded on the consent records
    properties: tuple[str, ...]  # names of the staged properties, in order
    tags: bool  # whether a column is mapped to tags


class ChunkWriter(Protocol):
    def __init__(self, target: ChunkTarget) -> None: ...

    def prepare(self, rows: list[tuple[str, ...]]) -> Any:
        """What `write` takes for these staged rows: made by the thread that reads the file, and
        all that is kept of them until they are written."""

    def write(self, prepared: list[Any], *, rows: int, now: dt.datetime, contended: bool = False) -> ChunkCounts:
        """Write `rows` rows, prepared in parts. `contended`: an address of the file may exist
        already, or another writer may be creating it now; slower, never refused."""


def _has_suppressions(organization_id: int) -> bool:
    return Suppression.objects.filter(organization_id=organization_id).exists()


def consent_detail(*, import_id: int, status: str) -> dict[str, Any]:
    return {"import_id": import_id, "status": str(status)}


class PostgresChunkWriter:
    """COPY into a temporary table, then one statement that inserts (or updates) the contacts and
    writes their list and tag memberships and consent records.

    The contacts are inserted without ON CONFLICT, whose speculative insertion made a whole
    import about 15% slower (the unique index checks each address either way): an import into
    a fresh organization meets no existing address. One that does (or one another transaction creates
    meanwhile) makes the insert fail on the unique index; the caller then writes the chunk
    again `contended`, with ON CONFLICT DO NOTHING. The update mode looks up the existing
    contacts first and inserts the others.
    """

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

    def prepare(self, rows: list[tuple[str, ...]]) -> bytes:
        """The rows as COPY reads them (CSV, UTF-8): a sixth of the memory of the rows themselves."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue().encode()

    def write(self, prepared: list[bytes], *, rows: int, now: dt.datetime, contended: bool = False) -> ChunkCounts:
        target = self.target
        with connection.cursor() as cursor:
            cursor.execute(self.create_stage)
            cursor.copy_expert(self.copy, io.BytesIO(b"".join(prepared)))
            statement, params = self._statement(now, contended=contended)
            if target.tags:
                # The tags first, in their own statement: the memberships' join must see them.
                statement = (
                    f"INSERT INTO {Tag._meta.db_table} (organization_id, name, created_at) "
                    "SELECT DISTINCT %s, n.name, %s FROM import_stage s "
                    "CROSS JOIN unnest(string_to_array(NULLIF(s.tags, ''), ',')) AS n(name) "
                    f"ORDER BY 2 ON CONFLICT (organization_id, name) DO NOTHING; {statement}"
                )
                params = [target.organization_id, now, *params]
            cursor.execute(statement, params)
            created, matched, matched_ids = cursor.fetchone()
        counts = ChunkCounts(created=created)
        if target.update:
            counts.updated, counts.updated_ids = matched, list(matched_ids)
        counts.skipped = rows - counts.created - counts.updated
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

    def _statement(self, now: dt.datetime, *, contended: bool) -> tuple[str, list[Any]]:
        target, org = self.target, self.target.organization_id
        contacts = Contact._meta.db_table
        properties, params = self._properties_sql()
        parts = [
            "staged AS (SELECT s.email, s.first_name, s.last_name, s.timezone, s.tags, "
            f"{properties} AS properties FROM import_stage s)"
        ]
        fresh = "staged"
        if target.update:
            # The statement's snapshot predates its own inserts: these are the contacts that existed.
            parts.append(
                f"matched AS (SELECT c.id, c.email FROM {contacts} c JOIN staged s "
                "ON c.organization_id = %s AND c.email = s.email)"
            )
            parts.append(
                "fresh AS (SELECT * FROM staged s WHERE NOT EXISTS (SELECT FROM matched m WHERE m.email = s.email))"
            )
            params.append(org)
            fresh = "fresh"
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
        on_conflict = "ON CONFLICT (organization_id, email) DO NOTHING " if contended else ""
        # Sorted inserts cannot deadlock with another import's sorted inserts.
        parts.append(
            f"created AS (INSERT INTO {contacts} (organization_id, email, first_name, last_name, properties, "
            "timezone, status, status_changed_at, consent_source, consented_at, created_at, updated_at) "
            f"SELECT %s, s.email, s.first_name, s.last_name, s.properties, s.timezone, {status}, {changed_at}, "
            f"%s, %s, %s, %s FROM {fresh} s {join} ORDER BY s.email {on_conflict}RETURNING id, email, status)"
        )
        params += [org, *status_params, target.consent_source, now, now, now, *join_params]
        parts.append(
            f"consented AS (INSERT INTO {ConsentRecord._meta.db_table} (organization_id, contact_id, email_hash, "
            "action, source, user_agent, wording, detail, actor_id, occurred_at) "
            "SELECT %s, c.id, encode(sha256(convert_to(c.email, 'UTF8')), 'hex'), %s, %s, '', '', "
            "jsonb_build_object('import_id', %s::bigint, 'status', c.status), %s::integer, %s FROM created c)"
        )
        params += [
            org,
            str(ConsentRecord.Action.SUBSCRIBE),
            target.consent_source,
            target.import_id,
            target.actor_id,
            now,
        ]
        touched = "SELECT id, email FROM created"
        # Memberships of the contacts created here cannot exist yet; those of matched ones may.
        memberships_conflict = ""
        if target.update:
            kept = ("first_name", "last_name", "timezone")
            assign = ", ".join(f"{name} = CASE WHEN s.{name} <> '' THEN s.{name} ELSE c.{name} END" for name in kept)
            differs = " OR ".join(f"(s.{name} <> '' AND s.{name} <> c.{name})" for name in kept)
            # By primary key: a join on the address may read all of the organization's contacts when
            # its statistics, stale while an import fills it, say it has few.
            parts.append(
                f"updated AS (UPDATE {contacts} c SET {assign}, properties = c.properties || s.properties, "
                "updated_at = %s FROM matched m JOIN staged s ON s.email = m.email "
                "WHERE c.id = ANY(ARRAY(SELECT id FROM matched)) AND c.id = m.id "
                f"AND ({differs} OR NOT c.properties @> s.properties) RETURNING c.id)"
            )
            params.append(now)
            touched += " UNION ALL SELECT id, email FROM matched"
            memberships_conflict = " ON CONFLICT DO NOTHING"
        parts.append(f"touched AS ({touched})")
        if target.list_id is not None:
            parts.append(
                f"listed AS (INSERT INTO {Contact.lists.through._meta.db_table} (contact_id, contactlist_id) "
                f"SELECT id, %s FROM touched ORDER BY id{memberships_conflict})"
            )
            params.append(target.list_id)
        if target.tags:
            parts.append(
                f"tagged AS (INSERT INTO {Contact.tags.through._meta.db_table} (contact_id, tag_id) "
                "SELECT t.id, g.id FROM touched t JOIN staged s ON s.email = t.email "
                "CROSS JOIN unnest(string_to_array(NULLIF(s.tags, ''), ',')) AS n(name) "
                f"JOIN {Tag._meta.db_table} g ON g.organization_id = %s AND g.name = n.name "
                f"ORDER BY 1, 2{memberships_conflict})"
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

    def prepare(self, rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        return rows

    def write(
        self, prepared: list[list[tuple[str, ...]]], *, rows: int, now: dt.datetime, contended: bool = False
    ) -> ChunkCounts:
        target, staged = self.target, [row for part in prepared for row in part]
        contacts = Contact.objects.for_org(target.organization_id)
        fields = ("email", "id", "first_name", "last_name", "timezone", "properties")
        existing = {
            found[0]: found
            for emails in _batches([row[EMAIL] for row in staged])
            for found in contacts.filter(email__in=emails).values_list(*fields)
        }
        new_rows = sorted(row for row in staged if row[EMAIL] not in existing)
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
        self._record_consent(new_rows, touched, statuses, now)
        counts = ChunkCounts(created=len(new_rows))
        if target.update and existing:
            counts.updated = len(existing)
            counts.updated_ids = [found[1] for found in existing.values()]
            self._update(staged, existing, stamp)
            touched.update((email, found[1]) for email, found in existing.items())
        counts.skipped = rows - counts.created - counts.updated
        self._attach(staged, touched)
        return counts

    def _record_consent(
        self, new_rows: list[tuple[str, ...]], created: dict[str, int], statuses: dict[str, str], now: dt.datetime
    ) -> None:
        target = self.target
        ConsentRecord.objects.bulk_create(
            ConsentRecord(
                organization_id=target.organization_id,
                contact_id=created[row[EMAIL]],
                email_hash=email_hash(row[EMAIL]),
                action=ConsentRecord.Action.SUBSCRIBE,
                source=target.consent_source,
                detail=consent_detail(
                    import_id=target.import_id, status=statuses.get(row[EMAIL], Contact.Status.ACTIVE)
                ),
                actor_id=target.actor_id,
                occurred_at=now,
            )
            for row in new_rows
        )

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
