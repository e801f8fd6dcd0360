"""CSV import speed: a 1,000,000-row file into PostgreSQL, against a plain COPY of the same file.

In a fresh PostgreSQL database, the script writes a CSV of contacts (--rows, default 1,000,000;
six columns: email, first_name, last_name, timezone, tags, company) in which one row in a
hundred is malformed (subscribers/tests/csvdata.py: invalid addresses, bytes that are not UTF-8,
ragged rows, duplicates, unknown time zones, names too long), and a twin without the rows COPY
cannot load at all (not UTF-8, ragged: a third of the bad ones).

Timed, in this order, in this process:
1. the baseline: `COPY` of the twin into a bare table of six text columns, no index, no key;
2. ours: a fresh organization's import of the file, every column mapped (company to a
   property, tags to tags; `--without-tags` leaves tags out), through
   `subscribers.importing.contact_import_process` as the Celery task calls it, chunk after
   chunk until the import is completed: contacts, tag memberships (`--list`: also list
   memberships) and one consent record per contact created;
3. the floor: the rows the import wrote (validated, deduplicated, ids assigned), copied aside
   and written again with one `INSERT ... SELECT` per table into empty twins of the tables
   (`CREATE TABLE ... LIKE ... INCLUDING ALL` plus the same foreign keys), in one transaction.
   An import into this schema can hardly write these rows for less; the time per table shows
   what each kind of row costs (consent records included).

Printed: rows per second, the three times, our ratio to COPY (target: at most 3), the floor's
ratio to COPY and ours to the floor, the peak memory of this process (ru_maxrss: the import
holds one digest per accepted address; target: under 300 MB), our CPU time and that of our
PostgreSQL backend (and the floor's), and the import's counts, checked against what the
generator says the file holds. The last line printed is one JSON object with the figures, the
targets and whether each is met.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    create_database,
    django_env,
    drop_database,
    machine,
    migrate,
    process_cpu_seconds,
    setup_django,
)

DATABASE = "emailseq_bench_import"
TARGET_RATIO_MAX = 3.0
TARGET_PEAK_MB_MAX = 300.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def copy_baseline(copyable: Path) -> dict[str, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_baseline")
        cursor.execute(
            "CREATE TABLE bench_copy_baseline "
            "(email text, first_name text, last_name text, timezone text, tags text, company text)"
        )
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
        backend_cpu = process_cpu_seconds(backend)
        started = time.perf_counter()
        with copyable.open("rb") as source:
            cursor.copy_expert("COPY bench_copy_baseline FROM STDIN WITH (FORMAT csv, HEADER true)", source)
        seconds = time.perf_counter() - started
        backend_cpu = process_cpu_seconds(backend) - backend_cpu
        cursor.execute("SELECT count(*) FROM bench_copy_baseline")
        rows = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_copy_baseline")
    return {"seconds": seconds, "rows": rows, "backend_cpu": backend_cpu}


FLOOR_TABLES = (
    # (table copied LIKE ... INCLUDING ALL, its stage, foreign keys Django gives the original)
    (
        "subscribers_contact",
        "SELECT * FROM subscribers_contact WHERE organization_id = %(org)s ORDER BY id",
        ["(organization_id) REFERENCES organizations_organization (id)"],
    ),
    (
        "subscribers_contact_tags",
        "SELECT t.* FROM subscribers_contact_tags t JOIN subscribers_contact c ON c.id = t.contact_id "
        "WHERE c.organization_id = %(org)s ORDER BY t.id",
        ["(contact_id) REFERENCES bench_floor_subscribers_contact (id)", "(tag_id) REFERENCES subscribers_tag (id)"],
    ),
    (
        "subscribers_contact_lists",
        "SELECT t.* FROM subscribers_contact_lists t JOIN subscribers_contact c ON c.id = t.contact_id "
        "WHERE c.organization_id = %(org)s ORDER BY t.id",
        [
            "(contact_id) REFERENCES bench_floor_subscribers_contact (id)",
            "(contactlist_id) REFERENCES subscribers_contactlist (id)",
        ],
    ),
    (
        "subscribers_consentrecord",
        "SELECT * FROM subscribers_consentrecord WHERE organization_id = %(org)s ORDER BY id",
        [
            "(organization_id) REFERENCES organizations_organization (id)",
            "(contact_id) REFERENCES bench_floor_subscribers_contact (id)",
            "(actor_id) REFERENCES auth_user (id)",
        ],
    ),
)


def floor_baseline(organization_id: int) -> dict[str, Any]:
    """The rows our import wrote, written again by one INSERT ... SELECT per table from a copy
    of them (validated, deduplicated, ids assigned) into empty twins of the tables: every
    index, check and foreign key of the originals (CREATE TABLE ... LIKE ... INCLUDING ALL and
    the same foreign keys), each table's foreign keys checked after its statement, one
    transaction. What any import of these rows into this schema costs at least."""
    from django.db import connection

    figures: dict[str, Any] = {"tables": {}}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
        for table, stage_query, _ in FLOOR_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS bench_floor_stage_{table}")
            cursor.execute(f"CREATE TABLE bench_floor_stage_{table} AS {stage_query}", {"org": organization_id})
            cursor.execute(f"VACUUM ANALYZE bench_floor_stage_{table}")
        with connection.cursor() as setup:
            for table, _, foreign_keys in FLOOR_TABLES:
                setup.execute(f"DROP TABLE IF EXISTS bench_floor_{table} CASCADE")
                setup.execute(f"CREATE TABLE bench_floor_{table} (LIKE {table} INCLUDING ALL)")
                for foreign_key in foreign_keys:
                    setup.execute(
                        f"ALTER TABLE bench_floor_{table} ADD FOREIGN KEY {foreign_key} DEFERRABLE INITIALLY DEFERRED"
                    )
        total_seconds, total_cpu = 0.0, 0.0
        cursor.execute("BEGIN")
        for table, _, _ in FLOOR_TABLES:
            cpu = process_cpu_seconds(backend)
            started = time.perf_counter()
            cursor.execute(f"INSERT INTO bench_floor_{table} SELECT * FROM bench_floor_stage_{table}")
            rows = cursor.rowcount
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            seconds = time.perf_counter() - started
            cpu = process_cpu_seconds(backend) - cpu
            figures["tables"][table] = {"rows": rows, "seconds": round(seconds, 3), "backend_cpu": round(cpu, 3)}
            total_seconds, total_cpu = total_seconds + seconds, total_cpu + cpu
        started = time.perf_counter()
        cursor.execute("COMMIT")
        total_seconds += time.perf_counter() - started
        figures["seconds"], figures["backend_cpu"] = total_seconds, total_cpu
        for table, _, _ in FLOOR_TABLES:
            cursor.execute(f"DROP TABLE bench_floor_stage_{table}")
        for table, _, _ in reversed(FLOOR_TABLES):
            cursor.execute(f"DROP TABLE bench_floor_{table}")
    return figures


def run_import(path: Path, *, with_list: bool, with_tags: bool, profile: str | None) -> dict[str, Any]:
    from django.core.files import File
    from django.db import connection

    from organizations.models import Organization
    from subscribers import importing
    from subscribers.models import ConsentRecord, ContactImport, ContactList
    from subscribers.tests.csvdata import MAPPING

    organization = Organization.objects.create(name="Import bench", slug=f"import-bench-{time.time_ns()}")
    contact_list = ContactList.objects.create(organization=organization, name="Imported") if with_list else None
    with path.open("rb") as handle:
        contact_import = importing.contact_import_create(
            organization=organization,
            upload=File(handle, name=path.name),
            mapping=MAPPING if with_tags else {column: field for column, field in MAPPING.items() if field != "tags"},
            list_id=contact_list.pk if contact_list else None,
            run_in_background=False,
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    backend_cpu = process_cpu_seconds(backend)
    cpu = cpu_seconds()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    outcome = importing.contact_import_process(import_id=contact_import.pk)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "cpu": cpu_seconds() - cpu,
        "backend_cpu": process_cpu_seconds(backend) - backend_cpu,
        "outcome": outcome.value,
    }
    contact_import = ContactImport.objects.get(pk=contact_import.pk)
    result["import"] = {
        "status": contact_import.status,
        "error": contact_import.error,
        "rows_processed": contact_import.rows_processed,
        "created": contact_import.created_count,
        "updated": contact_import.updated_count,
        "skipped": contact_import.skipped_count,
        "rejected": contact_import.rejected_count,
    }
    result["listed"] = contact_list.contacts.count() if contact_list else None
    result["consent_records"] = ConsentRecord.objects.filter(organization=organization).count()
    result["organization_id"] = organization.pk
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--list", action="store_true", help="Also add every imported contact to a list.")
    parser.add_argument("--without-tags", action="store_true", help="Leave the tags column unmapped.")
    parser.add_argument("--chunk-rows", type=int, default=None, help="IMPORT_CHUNK_ROWS (default: the setting's).")
    parser.add_argument("--keep-db", action="store_true", help=f"Keep the database {DATABASE} afterwards.")
    parser.add_argument("--profile", metavar="FILE", help="Run the import under cProfile and write the stats here.")
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="emailseq-bench-import-"))
    extra = {"IMPORT_CHUNK_ROWS": str(args.chunk_rows)} if args.chunk_rows else {}
    env = django_env(DATABASE, var_dir, **extra)
    create_database(DATABASE)
    try:
        migrate(env)
        setup_django(env)
        from django.conf import settings
        from django.db import connections

        from subscribers.tests.csvdata import write_contacts_csv

        path, copyable = var_dir / "contacts.csv", var_dir / "contacts-copyable.csv"
        print(f"Writing {args.rows:,} rows ...", flush=True)
        with path.open("wb") as out, copyable.open("wb") as twin:
            expected = write_contacts_csv(out, args.rows, expect=False, copyable=twin)
        del expected
        file_bytes = path.stat().st_size
        rss_before = peak_rss_mb()
        print("Baseline: COPY into a bare table ...", flush=True)
        baseline = copy_baseline(copyable)
        print("Our import ...", flush=True)
        ours = run_import(path, with_list=args.list, with_tags=not args.without_tags, profile=args.profile)
        peak_mb = peak_rss_mb()
        print("Floor: the same rows by one INSERT ... SELECT per table ...", flush=True)
        floor = floor_baseline(ours["organization_id"])
        chunk_rows = settings.IMPORT_CHUNK_ROWS
        connections.close_all()
    finally:
        if not args.keep_db:
            drop_database(DATABASE)
        shutil.rmtree(var_dir, ignore_errors=True)

    rows = args.rows
    bad_rows = rows // 100
    counts = ours["import"]
    correct = (
        counts["status"] == "completed"
        and counts["rows_processed"] == rows
        and counts["rejected"] == bad_rows
        and counts["created"] == rows - bad_rows
        and (ours["listed"] is None or ours["listed"] == rows - bad_rows)
        and ours["consent_records"] == rows - bad_rows
    )
    ratio = ours["seconds"] / baseline["seconds"]
    floor_ratio = floor["seconds"] / baseline["seconds"]
    ratio_to_floor = ours["seconds"] / floor["seconds"]
    figures = {
        "benchmark": "import_speed",
        "rows": rows,
        "file_bytes": file_bytes,
        "chunk_rows": chunk_rows,
        "with_list": args.list,
        "with_tags": not args.without_tags,
        "seconds": round(ours["seconds"], 3),
        "rows_per_second": round(rows / ours["seconds"], 1),
        "cpu_seconds": round(ours["cpu"], 3),
        "postgres_backend_cpu_seconds": round(ours["backend_cpu"], 3),
        "copy_seconds": round(baseline["seconds"], 3),
        "copy_rows": baseline["rows"],
        "copy_postgres_backend_cpu_seconds": round(baseline["backend_cpu"], 3),
        "ratio": round(ratio, 3),
        "floor_seconds": round(floor["seconds"], 3),
        "floor_postgres_backend_cpu_seconds": round(floor["backend_cpu"], 3),
        "floor_tables": floor["tables"],
        "floor_ratio": round(floor_ratio, 3),
        "ratio_to_floor": round(ratio_to_floor, 3),
        "consent_records": ours["consent_records"],
        "peak_rss_mb": round(peak_mb, 1),
        "rss_mb_before_import": round(rss_before, 1),
        "import": counts,
        "correct": correct,
        "profiled": bool(args.profile),
        **machine(),
        "targets": {"ratio_max": TARGET_RATIO_MAX, "peak_rss_mb_max": TARGET_PEAK_MB_MAX},
        "met": {"ratio": ratio <= TARGET_RATIO_MAX, "peak_rss_mb": peak_mb < TARGET_PEAK_MB_MAX},
    }

    print()
    print(f"Import speed: {rows:,} rows, {file_bytes / 1e6:.1f} MB, chunks of {chunk_rows:,} lines")
    print(f"  our import              {rows / ours['seconds']:,.0f} rows/s ({ours['seconds']:.2f} s)")
    print(f"    our CPU               {ours['cpu']:.2f} s; PostgreSQL backend {ours['backend_cpu']:.2f} s")
    print(f"  COPY into a bare table  {baseline['seconds']:.2f} s ({baseline['rows']:,} rows)")
    print(f"    PostgreSQL backend    {baseline['backend_cpu']:.2f} s")
    print(f"  floor (same rows, same  {floor['seconds']:.2f} s; PostgreSQL backend {floor['backend_cpu']:.2f} s")
    print("    schema, one INSERT ... SELECT per table):")
    for table, figures_of_table in floor["tables"].items():
        print(
            f"    {table:26s}{figures_of_table['rows']:>10,} rows {figures_of_table['seconds']:6.2f} s "
            f"(backend {figures_of_table['backend_cpu']:.2f} s)"
        )
    print(f"  ratio                   {ratio:.2f} (target <= {TARGET_RATIO_MAX})")
    print(f"  floor / COPY            {floor_ratio:.2f}; our import / floor {ratio_to_floor:.2f}")
    print(f"  peak memory             {peak_mb:.0f} MB (target < {TARGET_PEAK_MB_MAX:.0f}; {rss_before:.0f} MB before)")
    print(
        f"  counts                  {counts['created']:,} created, {counts['skipped']:,} skipped, "
        f"{counts['rejected']:,} rejected of {counts['rows_processed']:,} ({counts['status']}); "
        f"{ours['consent_records']:,} consent records"
    )
    print(f"  correct                 {correct}")
    print(f"  load average            {figures['load_average']} on {figures['cpus']} CPUs")
    print(json.dumps(figures))
    if not correct:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailseq.settings")
    main()
