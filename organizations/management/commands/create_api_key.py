from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from organizations import selectors
from organizations.models import ApiKey
from organizations.services import api_key_create


class Command(BaseCommand):
    help = (
        "Make an API key for an organization. The key is printed alone on the last line of the output, "
        "once: only its hash is kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="The organization's slug or name.")
        parser.add_argument(
            "--scopes",
            "--scope",
            dest="scope",
            required=True,
            help="read (acts as a viewer) or write (acts as a marketer; read,write means the same).",
        )
        parser.add_argument("--name", default="", help="What the key is for (default: 'created with create_api_key').")

    def handle(self, *args: Any, org: str, scope: str, name: str, **options: Any) -> None:
        # "read,write" is accepted too: a write key can read.
        scopes = {part.strip().lower() for part in scope.split(",")}
        if not scopes or not scopes <= set(ApiKey.Scope.values):
            raise CommandError(f"Unknown scope {scope!r}: use read or write.")
        scope = ApiKey.Scope.WRITE if ApiKey.Scope.WRITE in scopes else ApiKey.Scope.READ
        found = selectors.organizations_named(name=org.strip())
        if not found:
            raise CommandError(f"No organization has the slug or name {org!r}.")
        if len(found) > 1:
            raise CommandError(f"Several organizations are named {org!r}: give the slug instead.")
        organization = found[0]
        try:
            api_key, raw = api_key_create(
                organization=organization, name=name.strip() or "created with create_api_key", scope=scope
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(
            f"Created the {scope} key {api_key.name!r} (prefix {api_key.prefix}) for {organization.name} "
            f"({organization.slug}). Keep it now: it cannot be shown again."
        )
        self.stdout.write(raw)
