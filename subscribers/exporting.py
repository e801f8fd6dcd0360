"""Contacts as CSV, streamed: safe to open in a spreadsheet, whatever the contacts' data holds."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.utils import timezone

from organizations.models import Organization
from subscribers.models import Contact, ContactList, Tag

COLUMNS = ["email", "first_name", "last_name", "status", "timezone", "created_at", "lists", "tags"]
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_WRITE = 500


def neutralize(value: str) -> str:
    """The cell as a spreadsheet shows it but never evaluates it: a leading quote before a formula start."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def _property_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _Line:
    """A file-like object whose write returns what it was given, for csv.writer to format lines."""

    def write(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class ContactExport:
    filename: str
    contacts: QuerySet[Contact]
    property_keys: list[str]

    @property
    def header(self) -> list[str]:
        return [*COLUMNS, *(f"properties.{key}" for key in self.property_keys)]

    def lines(self) -> Iterator[str]:
        writer = csv.writer(_Line())
        yield writer.writerow([neutralize(name) for name in self.header])
        names = Prefetch("lists", queryset=ContactList.objects.only("id", "name").order_by("name"))
        tags = Prefetch("tags", queryset=Tag.objects.only("id", "name").order_by("name"))
        batch: list[str] = []
        for contact in self.contacts.prefetch_related(names, tags).iterator(chunk_size=2000):
            properties = contact.properties if isinstance(contact.properties, dict) else {}
            row = [
                contact.email,
                contact.first_name,
                contact.last_name,
                contact.status,
                contact.timezone,
                contact.created_at.isoformat(),
                ", ".join(item.name for item in contact.lists.all()),
                ", ".join(item.name for item in contact.tags.all()),
                *(_property_text(properties.get(key)) for key in self.property_keys),
            ]
            batch.append(writer.writerow([neutralize(cell) for cell in row]))
            if len(batch) >= ROWS_PER_WRITE:
                yield "".join(batch)
                batch = []
        if batch:
            yield "".join(batch)


def _property_keys(contacts: QuerySet[Contact]) -> list[str]:
    """Every property name among `contacts`, found by the database."""
    inner, params = contacts.order_by().values("properties").query.sql_with_params()
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT DISTINCT k FROM ({inner}) AS c, jsonb_object_keys(CASE WHEN jsonb_typeof(c.properties) = 'object' "
            "THEN c.properties ELSE '{}'::jsonb END) AS k ORDER BY k"
        )
    else:
        sql = (
            f"SELECT DISTINCT j.key FROM ({inner}) AS c, json_each(c.properties) AS j "
            "WHERE json_type(c.properties) = 'object' ORDER BY j.key"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [key for (key,) in cursor.fetchall()]


def contact_export(
    *, organization: Organization, list_id: int | None = None, tag_id: int | None = None, status: str | None = None
) -> ContactExport:
    """The contacts of `organization` (of one list, with one tag, in one status), one column per property."""
    contacts = Contact.objects.for_org(organization)
    if list_id is not None:
        if not ContactList.objects.for_org(organization).filter(pk=list_id).exists():
            raise Http404("There is no list with this list_id in your organization.")
        contacts = contacts.filter(lists=list_id)
    if tag_id is not None:
        if not Tag.objects.for_org(organization).filter(pk=tag_id).exists():
            raise Http404("There is no tag with this tag_id in your organization.")
        contacts = contacts.filter(tags=tag_id)
    if status:
        contacts = contacts.filter(status=status)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return ContactExport(
        filename=f"contacts-{organization.slug}-{stamp}.csv",
        contacts=contacts.order_by("email"),
        property_keys=_property_keys(contacts),
    )
