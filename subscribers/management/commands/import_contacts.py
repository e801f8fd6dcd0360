from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import Http404

from organizations.models import Organization
from subscribers import importing
from subscribers.models import ContactImport


class Command(BaseCommand):
    help = (
        "Import contacts from a CSV file in this process (`import_contacts --org SLUG FILE`), or resume "
        "an unfinished import whose worker died (`import_contacts --resume ID`, once its lease has run out)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", type=Path, help="The CSV file (UTF-8, a header row).")
        parser.add_argument("--org", help="The organization's slug.")
        parser.add_argument("--list", dest="list_id", type=int, help="Add the contacts to this list (its id).")
        parser.add_argument(
            "--mapping", type=json.loads, help='Column header -> field, as JSON: {"E-mail": "email", ...}.'
        )
        parser.add_argument("--existing", choices=ContactImport.Existing.values, default=ContactImport.Existing.SKIP)
        parser.add_argument("--consent-source", default="", help="Where these contacts gave consent.")
        parser.add_argument("--resume", type=int, metavar="ID", help="The id of the import to resume.")

    def handle(self, *args: Any, file: Path | None, org: str | None, resume: int | None, **options: Any) -> None:
        if resume is None:
            resume = self._create(file, org, options)
        outcome = importing.contact_import_process(import_id=resume)
        contact_import = ContactImport.objects.get(pk=resume)
        self.stdout.write(
            f"import {contact_import.pk}: {contact_import.status} ({outcome.value}); "
            f"{contact_import.rows_processed} rows: {contact_import.created_count} created, "
            f"{contact_import.updated_count} updated, {contact_import.skipped_count} skipped, "
            f"{contact_import.rejected_count} rejected"
        )
        if outcome is importing.Outcome.NOT_CLAIMED:
            raise CommandError("Another worker holds this import's lease (or it is finished).")

    def _create(self, file: Path | None, org: str | None, options: dict[str, Any]) -> int:
        if file is None or org is None:
            raise CommandError("Give a CSV file and --org, or --resume ID.")
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"There is no organization {org!r}.")
        try:
            with file.open("rb") as handle:
                contact_import = importing.contact_import_create(
                    organization=organization,
                    upload=File(handle, name=file.name),
                    mapping=options["mapping"],
                    list_id=options["list_id"],
                    existing=options["existing"],
                    consent_source=options["consent_source"],
                    run_in_background=False,
                )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        except Http404 as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"import {contact_import.pk} created", ending="\n")
        self.stdout.flush()
        return contact_import.pk
