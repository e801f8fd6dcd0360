"""CSV imports of contacts: checked when uploaded, then loaded in the background in checkpointed chunks.

The upload is checked at once (a header row, an email column, a mapping of columns to known
fields) and stored; a worker claims the import with a lease and works through the file in
chunks of IMPORT_CHUNK_ROWS lines. Each chunk's contacts, list and tag memberships, consent
records, rejected rows, counters and the checkpoint (line and byte offset reached) are written
in one transaction, so a worker killed at any moment is replaced by one that resumes from the
last checkpoint and writes nothing twice. Duplicates within the file are found with one small
digest per accepted address; a worker that resumes re-reads the part of the file already done
to rebuild them, so that the first occurrence wins exactly as in an uninterrupted run.

Reading and checking rows: subscribers/import_parsing.py; writing a chunk (PostgreSQL: COPY
and set-based statements; SQLite: executemany): subscribers/import_writers.py. A thread parses
the next chunks while the database writes the current one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from organizations.models import Organization
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.import_parsing import (
    HEADER_MAX_BYTES,
    Block,
    ColumnPlan,
    CsvParser,
    Rejection,
    default_mapping,
    header_names,
    plan_columns,
)
from subscribers.import_writers import ChunkCounts, ChunkTarget, ChunkWriter, PortableChunkWriter, PostgresChunkWriter
from subscribers.models import Contact, ContactImport, ContactList, ImportRejection

logger = logging.getLogger(__name__)

PARSE_BLOCK_LINES = 5_000


class Outcome(enum.Enum):
    FINISHED = "finished"  # completed or failed, or already final
    PAUSED = "paused"  # the time budget ran out; the lease is released for the next task
    NOT_CLAIMED = "not claimed"  # another worker holds the lease


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
    header = header_names(upload.read(HEADER_MAX_BYTES))
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
        import_id=contact_import.pk,
        list_id=contact_import.contact_list_id,
        update=contact_import.existing == ContactImport.Existing.UPDATE,
        consent_source=(contact_import.consent_source or f"import:{contact_import.filename}")[:200],
        actor_id=contact_import.created_by_id,
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


_UNIQUE_ADDRESS = "contact_email_unique_per_org"


def _address_exists(error: IntegrityError) -> bool:
    diagnostics = getattr(error.__cause__, "diag", None)
    return getattr(diagnostics, "constraint_name", None) == _UNIQUE_ADDRESS


@dataclass
class _Chunk:
    """Consecutive blocks of the file, written in one transaction: their rows as the writer
    prepared them (one part per block), their rejections, and the checkpoint after them."""

    rows: int = 0
    prepared: list[Any] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    lines: int = 0
    next_line: int = 0
    end_offset: int = 0

    def add(self, block: Block, prepared: Any) -> None:
        self.rows += len(block.rows)
        self.prepared.append(prepared)
        self.rejections += block.rejections
        self.lines += block.next_line - block.first_line
        self.next_line, self.end_offset = block.next_line, block.end_offset


def _write_chunk(
    contact_import: ContactImport, writer: ChunkWriter, chunk: _Chunk, *, offset: int, contended: bool
) -> bool:
    """Write the chunk in one transaction; True when it had to be written `contended` (see
    PostgresChunkWriter), as the caller then writes the chunks after it."""
    if not contended:
        try:
            _write_chunk_once(contact_import, writer, chunk, offset=offset, contended=False)
            return False
        except IntegrityError as error:
            if not _address_exists(error):
                raise
    _write_chunk_once(contact_import, writer, chunk, offset=offset, contended=True)
    return True


def _write_chunk_once(
    contact_import: ContactImport, writer: ChunkWriter, chunk: _Chunk, *, offset: int, contended: bool
) -> None:
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A commit lost in a server crash loses its checkpoint with it: the chunk is redone.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        # The row lock makes a second worker on the same import wait here, then stop.
        if not list(_still_ours(contact_import, offset).select_for_update().values_list("pk", flat=True)):
            raise _LeaseLost
        counts = (
            writer.write(chunk.prepared, rows=chunk.rows, now=now, contended=contended) if chunk.rows else ChunkCounts()
        )
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
            for rejection in chunk.rejections
        )
        ContactImport.objects.filter(pk=contact_import.pk).update(
            line_number=chunk.next_line,
            byte_offset=chunk.end_offset,
            rows_processed=F("rows_processed") + chunk.rows + len(chunk.rejections),
            created_count=F("created_count") + counts.created,
            updated_count=F("updated_count") + counts.updated,
            skipped_count=F("skipped_count") + counts.skipped,
            rejected_count=F("rejected_count") + len(chunk.rejections),
            lease_expires_at=now + dt.timedelta(seconds=settings.IMPORT_LEASE_SECONDS),
        )


def _chunks_to_write(parser: CsvParser, writer: ChunkWriter, *, done_line: int, chunk_lines: int) -> Iterator[_Chunk]:
    """The file from the checkpoint on, in chunks of at least `chunk_lines` lines (the last one
    may be shorter), prepared for the writer.

    Blocks before the checkpoint are read again only to rebuild the digests of addresses seen.
    """
    chunk = _Chunk()
    for block in parser.blocks():
        if block.next_line <= done_line:
            continue
        if block.first_line < done_line:
            block = block.since(done_line)
        chunk.add(block, writer.prepare(block.rows))
        if chunk.lines >= chunk_lines:
            yield chunk
            chunk = _Chunk()
    if chunk.lines:
        yield chunk


_END = object()


def _read_ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """`items`, made in a thread while the caller writes the previous ones: psycopg2 and
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
            for item in items:
                if not hand(item):
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
        header = header_names(stream.read(HEADER_MAX_BYTES))
        plan = plan_columns(header, contact_import.mapping)
        writer = _writer_for(contact_import, plan)
        # Parsed in blocks smaller than a chunk: the memory a block takes while it is parsed is
        # a few times that of its rows as the writer prepares them.
        chunk_lines = settings.IMPORT_CHUNK_ROWS
        parser = CsvParser(stream, plan, block_lines=min(chunk_lines, PARSE_BLOCK_LINES))
        offset = contact_import.byte_offset
        ready = _chunks_to_write(parser, writer, done_line=contact_import.line_number, chunk_lines=chunk_lines)
        # Until an address of the file turns out to exist already.
        contended = False
        with contextlib.closing(_read_ahead(ready)) as chunks:
            for chunk in chunks:
                contended = _write_chunk(contact_import, writer, chunk, offset=offset, contended=contended)
                offset = chunk.end_offset
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
