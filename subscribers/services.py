"""Writes on contacts, lists, tags and suppressions.

Every change of consent goes through one function here: contact_create (consent given),
contact_unsubscribe, contact_mark_bounced, contact_mark_complained, contact_resubscribe,
suppression_add, suppression_lift, contact_erase and contacts_bulk_upsert; each writes its
ConsentRecord through consent_record (or consent_records_add, for many contacts at once).
Double opt-in and the preference page are in subscribers/consent.py. The audit log (ledger)
will attach to these functions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from api.models import IdempotencyRecord
from organizations.models import Organization, validate_timezone
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.addresses import email_hash, normalize_email
from subscribers.models import (
    ConsentRecord,
    Contact,
    ContactEvent,
    ContactList,
    ImportRejection,
    Suppression,
    Tag,
)

CONTACT_FIELDS = ("email", "first_name", "last_name", "properties", "timezone")


def _check_properties(properties: Any) -> dict[str, Any]:
    if properties is None:
        return {}
    if not isinstance(properties, dict):
        raise ValidationError({"properties": "Properties must be a JSON object of names to values."})
    return properties


# Consent records ------------------------------------------------------------------------------

SOURCE_LENGTH = ConsentRecord._meta.get_field("source").max_length
USER_AGENT_LENGTH = ConsentRecord._meta.get_field("user_agent").max_length


def consent_record(
    *,
    organization: Organization | int,
    action: str,
    source: str,
    contact: Contact | None = None,
    address_hash: str = "",
    ip: str | None = None,
    user_agent: str = "",
    wording: str = "",
    detail: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    occurred_at: dt.datetime | None = None,
) -> ConsentRecord:
    """Append one change of consent to the ledger: the one writer of ConsentRecord rows.

    The address is kept as its hash (`address_hash`, or the hash of `contact.email`), so the
    record outlives an erasure of the contact. `actor` is the staff member who acted, if any.
    """
    organization_id = organization if isinstance(organization, int) else organization.pk
    if contact is not None:
        address_hash = email_hash(contact.email)
    if not address_hash:
        raise ValueError("consent_record needs a contact or an address hash")
    return ConsentRecord.objects.create(
        organization_id=organization_id,
        contact=contact,
        email_hash=address_hash,
        action=action,
        source=(source or "unspecified")[:SOURCE_LENGTH],
        ip=ip or None,
        user_agent=user_agent[:USER_AGENT_LENGTH],
        wording=wording,
        detail=detail or {},
        actor=actor if actor is not None and actor.is_authenticated else None,
        occurred_at=occurred_at or timezone.now(),
    )


def consent_records_add(
    *,
    organization: Organization | int,
    action: str,
    source: str,
    contacts: Iterable[tuple[int | None, str]],
    wording: str = "",
    detail: dict[str, Any] | None = None,
    occurred_at: dt.datetime | None = None,
) -> int:
    """The same change for many addresses at once (bulk upsert, imports), in a few INSERTs.

    `contacts` are (contact id or None, address hash) pairs. Returns the number written.
    """
    organization_id = organization if isinstance(organization, int) else organization.pk
    stamp = connection.ops.adapt_datetimefield_value(occurred_at or timezone.now())
    fixed = ((source or "unspecified")[:SOURCE_LENGTH], "", wording, json.dumps(detail or {}), stamp)
    rows = [(organization_id, contact_id, address_hash, action, *fixed) for contact_id, address_hash in contacts]
    table = connection.ops.quote_name(ConsentRecord._meta.db_table)
    # One statement per thousand rows: bulk_create would take one per 90 rows on SQLite.
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, STATEMENT_ROWS):
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} (organization_id, contact_id, email_hash, action, source, user_agent, "
                f"wording, detail, occurred_at) VALUES {values}",
                [value for row in chunk for value in row],
            )
    return len(rows)


# Contacts -------------------------------------------------------------------------------------


@transaction.atomic
def contact_create(
    *,
    organization: Organization,
    email: str,
    first_name: str = "",
    last_name: str = "",
    properties: dict[str, Any] | None = None,
    timezone_name: str = "",
    consent_source: str = "",
    consent_ip: str | None = None,
    consented_at: dt.datetime | None = None,
    lists: Iterable[ContactList] = (),
    tags: Iterable[Tag] = (),
    tag_names: Iterable[str] = (),
    pending: bool = False,
    consent_wording: str = "",
    consent_user_agent: str = "",
    consent_detail: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
) -> Contact:
    """Create a contact. A suppressed address is created unmailable, with the suppression's status.

    `tag_names` are tags by name, created in the organization when they do not exist yet.
    `pending`: the contact awaits confirmation (double opt-in) and gets no mail until then.
    The consent given is recorded (a "subscribe" consent record), with the status it led to.
    """
    try:
        normalized = normalize_email(email)
    except ValidationError as error:
        raise ValidationError({"email": error.messages}) from None
    contact = Contact(
        organization=organization,
        email=normalized,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        properties=_check_properties(properties),
        timezone=timezone_name,
        consent_source=consent_source,
        consent_ip=consent_ip,
        consented_at=consented_at or (timezone.now() if consent_source else None),
    )
    if pending:
        contact.status = Contact.Status.PENDING
    suppression = Suppression.objects.filter(organization=organization, email_hash=email_hash(normalized)).first()
    if suppression is not None:
        contact.status = Suppression.CONTACT_STATUS_BY_REASON[suppression.reason]
        contact.status_changed_at = timezone.now()
    # The unique address is left to the database, which names the field when it refuses.
    contact.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        raise ValidationError({"email": "A contact with this email already exists."}) from None
    named = [tag_get_or_create(organization=organization, name=name) for name in dict.fromkeys(tag_names)]
    _attach(contact, lists=lists, tags=[*tags, *named])
    detail = {"status": contact.status, **(consent_detail or {})}
    if suppression is not None:
        detail["suppressed"] = suppression.reason
    consent_record(
        organization=organization,
        contact=contact,
        action=ConsentRecord.Action.SUBSCRIBE,
        source=consent_source,
        ip=consent_ip,
        user_agent=consent_user_agent,
        wording=consent_wording,
        detail=detail,
        actor=actor,
        occurred_at=contact.consented_at,
    )
    return contact


def _attach(contact: Contact, *, lists: Iterable[ContactList], tags: Iterable[Tag]) -> None:
    for item in (*lists, *tags):
        if item.organization_id != contact.organization_id:
            raise ValidationError(f"{item} belongs to another organization.")
    if lists:
        contact.lists.add(*lists)
    if tags:
        contact.tags.add(*tags)


@transaction.atomic
def contact_update(*, contact: Contact, **fields: Any) -> Contact:
    """Change a contact's details; a change that meets a sequence goal exits that sequence."""
    unknown = set(fields) - set(CONTACT_FIELDS)
    if unknown:
        raise TypeError(f"contact_update cannot change {', '.join(sorted(unknown))}")
    if "email" in fields:
        try:
            fields["email"] = normalize_email(fields["email"])
        except ValidationError as error:
            raise ValidationError({"email": error.messages}) from None
    if "properties" in fields:
        fields["properties"] = _check_properties(fields["properties"])
    for name, value in fields.items():
        setattr(contact, name, value)
    contact.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            contact.save(update_fields=[*fields, "updated_at"])
    except IntegrityError:
        raise ValidationError({"email": "A contact with this email already exists."}) from None
    sequence_services.goals_check_for_contact(contact=contact)
    return contact


@transaction.atomic
def contact_tag_add(*, contact: Contact, tag: Tag) -> None:
    _attach(contact, lists=(), tags=[tag])
    sequence_services.goals_check_for_contact(contact=contact)


def contact_tag_remove(*, contact: Contact, tag: Tag) -> None:
    contact.tags.remove(tag)


def contact_list_add(*, contact: Contact, contact_list: ContactList) -> None:
    _attach(contact, lists=[contact_list], tags=())


def _name_taken(model_label: str) -> ValidationError:
    return ValidationError({"name": f"A {model_label} with this name already exists."})


@transaction.atomic
def tag_create(*, organization: Organization, name: str) -> Tag:
    tag = Tag(organization=organization, name=name.strip())
    tag.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            tag.save()
    except IntegrityError:
        raise _name_taken("tag") from None
    return tag


@transaction.atomic
def tag_rename(*, tag: Tag, name: str) -> Tag:
    tag.name = name.strip()
    tag.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            tag.save(update_fields=["name"])
    except IntegrityError:
        raise _name_taken("tag") from None
    return tag


def tag_delete(*, tag: Tag) -> None:
    tag.delete()


def tag_get_or_create(*, organization: Organization, name: str) -> Tag:
    tag, _ = Tag.objects.get_or_create(organization=organization, name=name.strip())
    return tag


def list_get_or_create(*, organization: Organization, name: str) -> ContactList:
    contact_list, _ = ContactList.objects.get_or_create(organization=organization, name=name.strip())
    return contact_list


def _suppression_get_or_create(
    organization_id: int, address_hash: str, reason: str, detail: str
) -> tuple[Suppression, bool]:
    return Suppression.objects.get_or_create(
        organization_id=organization_id,
        email_hash=address_hash,
        defaults={"reason": reason, "detail": detail[:2000]},
    )


@transaction.atomic
def suppression_add(
    *,
    organization: Organization | int,
    email: str,
    reason: str,
    detail: str = "",
    source: str = "",
    actor: AbstractBaseUser | None = None,
) -> Suppression:
    """Keep the organization from ever mailing this address again (until staff lift it).

    A new suppression is a consent record ("suppress"); the contact's status is left to the
    contact_* functions below, which callers use when the address is a contact's.
    """
    organization_id = organization if isinstance(organization, int) else organization.pk
    normalized = normalize_email(email)
    suppression, created = _suppression_get_or_create(organization_id, email_hash(normalized), reason, detail)
    if created:
        consent_record(
            organization=organization_id,
            contact=Contact.objects.filter(organization_id=organization_id, email=normalized).first(),
            address_hash=suppression.email_hash,
            action=ConsentRecord.Action.SUPPRESS,
            source=source or "suppression list",
            detail={"reason": reason},
            actor=actor,
        )
    return suppression


@transaction.atomic
def suppression_lift(*, suppression: Suppression, source: str = "", actor: AbstractBaseUser | None = None) -> None:
    """Let the address be mailed again. Its contact, if any, stays as it is until it resubscribes."""
    consent_record(
        organization=suppression.organization_id,
        address_hash=suppression.email_hash,
        action=ConsentRecord.Action.LIFT,
        source=source or "suppression list",
        detail={"reason": suppression.reason},
        actor=actor,
    )
    suppression.delete()


@dataclass(frozen=True)
class ConsentContext:
    """Who changed a consent, through what and from where: what its consent record keeps."""

    source: str
    ip: str | None = None
    user_agent: str = ""
    note: str = ""
    actor: AbstractBaseUser | None = None


@transaction.atomic
def _contact_stop_mailing(
    *,
    contact: Contact,
    status: str,
    suppression_reason: str,
    exit_reason: str,
    detail: str,
    action: str,
    context: ConsentContext,
) -> bool:
    """Make a contact unmailable at once: status, suppression, every enrollment ended.

    Returns whether the contact was mailable before. Idempotent: repeating it changes nothing
    (and records nothing).
    """
    # NO KEY: the engine's inserts of messages for this contact take KEY SHARE locks on it.
    locked = Contact.objects.select_for_update(no_key=True).get(pk=contact.pk)
    was_mailable = locked.status == Contact.Status.ACTIVE
    previous_status = locked.status
    # A complaint outranks an earlier unsubscribe or bounce; otherwise the first reason stays.
    outranks = status == Contact.Status.COMPLAINED and locked.status != Contact.Status.COMPLAINED
    changes = locked.status in (Contact.Status.ACTIVE, Contact.Status.PENDING) or outranks
    if changes:
        locked.status = status
        locked.status_changed_at = timezone.now()
        locked.save(update_fields=["status", "status_changed_at", "updated_at"])
    contact.status, contact.status_changed_at = locked.status, locked.status_changed_at
    suppression, created = _suppression_get_or_create(
        locked.organization_id, email_hash(locked.email), suppression_reason, detail
    )
    if outranks and suppression.reason != Suppression.Reason.COMPLAINED:
        suppression.reason, suppression.detail = Suppression.Reason.COMPLAINED, detail[:2000]
        suppression.save(update_fields=["reason", "detail"])
    if changes or created:
        record_detail: dict[str, Any] = {"previous_status": previous_status, "status": locked.status}
        if action == ConsentRecord.Action.SUPPRESS:
            record_detail["reason"] = suppression_reason
        if context.note:
            record_detail["note"] = context.note[:2000]
        consent_record(
            organization=locked.organization_id,
            contact=locked,
            action=action,
            source=context.source,
            ip=context.ip,
            user_agent=context.user_agent,
            detail=record_detail,
            actor=context.actor,
        )
    sequence_services.enrollments_end_for_contact(contact=locked, reason=exit_reason)
    return was_mailable


def contact_unsubscribe(
    *,
    contact: Contact,
    source: str,
    detail: str = "",
    ip: str | None = None,
    user_agent: str = "",
    actor: AbstractBaseUser | None = None,
) -> bool:
    """Stop all mail to the contact at its own request (link, preference page, API, staff)."""
    return _contact_stop_mailing(
        contact=contact,
        status=Contact.Status.UNSUBSCRIBED,
        suppression_reason=Suppression.Reason.UNSUBSCRIBED,
        exit_reason=Enrollment.ExitReason.UNSUBSCRIBED,
        detail=f"{source}: {detail}" if detail else source,
        action=ConsentRecord.Action.UNSUBSCRIBE,
        context=ConsentContext(source=source, ip=ip, user_agent=user_agent, note=detail, actor=actor),
    )


def contact_mark_bounced(
    *, contact: Contact, detail: str, source: str = "bounce", actor: AbstractBaseUser | None = None
) -> bool:
    # The bounce's text stays on the suppression: it may quote the address.
    return _contact_stop_mailing(
        contact=contact,
        status=Contact.Status.BOUNCED,
        suppression_reason=Suppression.Reason.BOUNCED,
        exit_reason=Enrollment.ExitReason.BOUNCED,
        detail=detail,
        action=ConsentRecord.Action.SUPPRESS,
        context=ConsentContext(source=source, actor=actor),
    )


def contact_mark_complained(
    *, contact: Contact, detail: str, source: str = "complaint", actor: AbstractBaseUser | None = None
) -> bool:
    return _contact_stop_mailing(
        contact=contact,
        status=Contact.Status.COMPLAINED,
        suppression_reason=Suppression.Reason.COMPLAINED,
        exit_reason=Enrollment.ExitReason.COMPLAINED,
        detail=detail,
        action=ConsentRecord.Action.SUPPRESS,
        context=ConsentContext(source=source, actor=actor),
    )


@transaction.atomic
def contact_resubscribe(
    *,
    contact: Contact,
    source: str,
    consent_ip: str | None = None,
    user_agent: str = "",
    wording: str = "",
    actor: AbstractBaseUser | None = None,
) -> Contact:
    """Make a contact mailable again on fresh consent: lifts the suppression of the address."""
    hashed = email_hash(contact.email)
    lifted = (
        Suppression.objects.filter(organization_id=contact.organization_id, email_hash=hashed)
        .values_list("reason", flat=True)
        .first()
    )
    Suppression.objects.filter(organization_id=contact.organization_id, email_hash=hashed).delete()
    previous_status = Contact.objects.filter(pk=contact.pk).values_list("status", flat=True).first()
    now = timezone.now()
    contact.status = Contact.Status.ACTIVE
    contact.status_changed_at = now
    contact.consent_source = source
    contact.consent_ip = consent_ip
    contact.consented_at = now
    contact.save(
        update_fields=["status", "status_changed_at", "consent_source", "consent_ip", "consented_at", "updated_at"]
    )
    consent_record(
        organization=contact.organization_id,
        contact=contact,
        action=ConsentRecord.Action.RESUBSCRIBE,
        source=source,
        ip=consent_ip,
        user_agent=user_agent,
        wording=wording,
        detail={"previous_status": previous_status, "suppression_lifted": lifted},
        actor=actor,
        occurred_at=now,
    )
    return contact


# Contacts through the API ---------------------------------------------------------------------


def contact_delete(*, contact: Contact) -> None:
    """Delete a contact and its history. A suppression of its address, if any, stays."""
    contact.delete()


@transaction.atomic
def contact_tags_add(*, contact: Contact, tags: Iterable[Tag]) -> None:
    _attach(contact, lists=(), tags=list(tags))
    sequence_services.goals_check_for_contact(contact=contact)


def contact_tags_remove(*, contact: Contact, tags: Iterable[Tag]) -> None:
    contact.tags.remove(*tags)


def contact_lists_add(*, contact: Contact, contact_lists: Iterable[ContactList]) -> None:
    _attach(contact, lists=list(contact_lists), tags=())


def contact_lists_remove(*, contact: Contact, contact_lists: Iterable[ContactList]) -> None:
    contact.lists.remove(*contact_lists)


@dataclass(frozen=True)
class Erasure:
    contact_id: int
    email_hash: str
    deleted: dict[str, int]


@transaction.atomic
def contact_erase(*, contact: Contact, source: str = "", actor: AbstractBaseUser | None = None) -> Erasure:
    """Erase a person (GDPR article 17): the contact and everything recorded about them.

    What stays is the hash of the address, as a suppression, so that the address is never mailed
    again, even when an integration creates the contact anew (it is then created unsubscribed,
    or bounced or complained as before). A suppression the address already had keeps its
    reason: a hard bounce, a complaint or a staff decision must go on blocking sign-ups and
    imports; otherwise one with reason "erased" is written. The suppression's detail is cleared:
    a bounce's detail may quote the address. The address's consent records stay, as proof of
    what was consented to when, but lose what identifies the person (IP, browser, free-text
    notes); an "erase" record without personal data says that the erasure happened.
    """
    # Imported here: delivery and deliverability depend on subscribers, not the other way round.
    from analytics import services as analytics_services
    from deliverability.models import BounceReport
    from delivery.models import DeliveryRoute, Message

    locked = Contact.objects.select_for_update().get(pk=contact.pk)
    hashed = email_hash(locked.email)
    suppression, created = Suppression.objects.select_for_update().get_or_create(
        organization_id=locked.organization_id,
        email_hash=hashed,
        defaults={"reason": Suppression.Reason.ERASED, "detail": ""},
    )
    if not created and suppression.detail:
        suppression.detail = ""
        suppression.save(update_fields=["detail"])
    # Copies of the address outside the contact's own rows (messages and events go with the
    # contact): rows of an import that were rejected quote it, stored answers to retried API
    # calls may show it, the diagnostic of a delivery report (kept, without its contact, for
    # the soft-bounce count and statistics) usually quotes the failed recipient, and so may a
    # route's last error when a refusal counted towards its circuit breaker.
    ImportRejection.objects.filter(organization_id=locked.organization_id, raw__icontains=locked.email).update(raw="")
    reports = BounceReport.objects.filter(organization_id=locked.organization_id)
    (reports.filter(recipient_hash=hashed) | reports.filter(contact_id=locked.pk)).update(diagnostic="")
    DeliveryRoute.objects.filter(organization_id=locked.organization_id, last_error__icontains=locked.email).update(
        last_error=""
    )
    IdempotencyRecord.objects.filter(
        organization_id=locked.organization_id, response_body__icontains=locked.email
    ).delete()
    # The rollups keep the counts of the person's messages, not what links them to the person.
    analytics_services.person_traces_forget(
        organization_id=locked.organization_id,
        message_ids=Message.objects.filter(contact_id=locked.pk).values_list("id", flat=True),
        address=locked.email,
    )
    records = ConsentRecord.objects.filter(organization_id=locked.organization_id, email_hash=hashed)
    records.update(ip=None, user_agent="")
    for record in records.filter(detail__has_key="note"):
        record.detail.pop("note")
        record.save(update_fields=["detail"])
    _, deleted = locked.delete()
    deleted_counts = {label.rsplit(".", 1)[-1].lower(): count for label, count in deleted.items() if count}
    consent_record(
        organization=locked.organization_id,
        address_hash=hashed,
        action=ConsentRecord.Action.ERASE,
        source=source or "erasure",
        detail={"deleted": deleted_counts},
        actor=actor,
    )
    return Erasure(contact_id=contact.pk, email_hash=hashed, deleted=deleted_counts)


# Lists ----------------------------------------------------------------------------------------


@transaction.atomic
def list_create(
    *, organization: Organization, name: str, description: str = "", is_public: bool = False
) -> ContactList:
    contact_list = ContactList(
        organization=organization, name=name.strip(), description=description, is_public=is_public
    )
    return _list_save(contact_list)


@transaction.atomic
def list_update(*, contact_list: ContactList, **fields: Any) -> ContactList:
    unknown = set(fields) - {"name", "description", "is_public"}
    if unknown:
        raise TypeError(f"list_update cannot change {', '.join(sorted(unknown))}")
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    for name, value in fields.items():
        setattr(contact_list, name, value)
    return _list_save(contact_list)


def _list_save(contact_list: ContactList) -> ContactList:
    contact_list.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            contact_list.save()
    except IntegrityError:
        raise _name_taken("list") from None
    return contact_list


def list_delete(*, contact_list: ContactList) -> None:
    """Delete a list; its contacts stay (they only leave it)."""
    contact_list.delete()


# Bulk upsert ----------------------------------------------------------------------------------

UPSERTED_FIELDS = ("first_name", "last_name", "properties", "timezone")
# Rows per statement: well under SQLite's and PostgreSQL's limits on parameters.
STATEMENT_ROWS = 1_000


@dataclass
class BulkRow:
    """One input row of a bulk upsert: its fields as parsed, or why it could not be parsed."""

    index: int
    email: str
    fields: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class BulkResult:
    index: int
    email: str
    result: str = "rejected"  # created | updated | unchanged | rejected
    id: int | None = None
    status: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)


def _error(field_name: str, message: str, code: str) -> dict[str, str]:
    return {"field": field_name, "message": message, "code": code}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _checked_rows(rows: Iterable[BulkRow], results: list[BulkResult]) -> dict[str, tuple[BulkResult, dict[str, Any]]]:
    """Normalize and check each row; reject the bad ones and every repeat of an address."""
    accepted: dict[str, tuple[BulkResult, dict[str, Any]]] = {}
    zones: dict[str, str | None] = {}
    for row, result in zip(rows, results, strict=True):
        if row.errors:
            result.errors = row.errors
            continue
        try:
            email = normalize_email(row.email)
        except ValidationError as error:
            result.errors = [_error("email", error.messages[0], "invalid")]
            continue
        if email in accepted:
            first = accepted[email][0].index
            result.errors = [_error("email", f"The same address as the row at index {first}.", "duplicate")]
            continue
        fields = {name: row.fields[name] for name in UPSERTED_FIELDS if name in row.fields}
        for name in ("first_name", "last_name"):
            if name in fields:
                fields[name] = fields[name].strip()
        zone_name = fields.get("timezone") or ""
        if zone_name not in zones:
            try:
                validate_timezone(zone_name)
                zones[zone_name] = None
            except ValidationError as error:
                zones[zone_name] = error.messages[0]
        if zones[zone_name]:
            result.errors = [_error("timezone", zones[zone_name], "invalid")]
            continue
        result.email = email
        accepted[email] = (result, fields)
    return accepted


@transaction.atomic
def contacts_bulk_upsert(
    *,
    organization: Organization,
    rows: list[BulkRow],
    contact_lists: Iterable[ContactList] = (),
    tags: Iterable[Tag] = (),
    consent_source: str = "",
    now: dt.datetime | None = None,
) -> list[BulkResult]:
    """Create or update contacts by address, in a few statements whatever their number.

    One result per row, in input order. A field a row leaves out keeps its stored value; a row
    whose fields all equal the stored ones is "unchanged". A row that repeats an earlier row's
    address (in any spelling) is rejected. New contacts whose address is suppressed are created
    with the suppression's status. Every accepted contact joins `contact_lists` and `tags`.
    Consent (`consent_source`, now) is recorded on the contacts created, and in a "subscribe"
    consent record for each.
    """
    now = now or timezone.now()
    results = [BulkResult(index=row.index, email=row.email) for row in rows]
    accepted = _checked_rows(rows, results)
    existing = _locked_by_email(organization, list(accepted))
    new = [email for email in accepted if email not in existing]
    if new:
        created = _insert_contacts(organization, {email: accepted[email][1] for email in new}, consent_source, now)
        by_status: dict[str, list[tuple[int | None, str]]] = {}
        for email, (contact_id, status) in created.items():
            result = accepted[email][0]
            result.result, result.id, result.status = "created", contact_id, status
            by_status.setdefault(status, []).append((contact_id, email_hash(email)))
        for status, contacts in by_status.items():
            consent_records_add(
                organization=organization,
                action=ConsentRecord.Action.SUBSCRIBE,
                source=consent_source or "bulk upsert",
                contacts=contacts,
                detail={"status": status},
                occurred_at=now,
            )
        # Created meanwhile by another request: updated like the others.
        existing.update(_locked_by_email(organization, [email for email in new if email not in created]))
    changes = []
    for email, stored in existing.items():
        result, fields = accepted[email]
        result.id, result.status = stored["id"], stored["status"]
        merged = {name: fields.get(name, stored[name]) for name in UPSERTED_FIELDS}
        if any(merged[name] != stored[name] for name in UPSERTED_FIELDS):
            result.result = "updated"
            changes.append((stored["id"], *(merged[name] for name in UPSERTED_FIELDS)))
        else:
            result.result = "unchanged"
    _update_contacts(changes, now)
    contact_ids = [result.id for result, _ in accepted.values() if result.id is not None]
    contact_lists, tags = list(contact_lists), list(tags)
    _add_memberships(Contact.lists, contact_ids, [item.pk for item in contact_lists])
    _add_memberships(Contact.tags, contact_ids, [item.pk for item in tags])
    goal_candidates = [row[0] for row in changes] + ([stored["id"] for stored in existing.values()] if tags else [])
    if goal_candidates:
        sequence_services.goals_check_for_contacts(contact_ids=set(goal_candidates), now=now)
    return results


def _locked_by_email(organization: Organization, emails: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    # Locked in address order, as rows are inserted: two calls with the same addresses queue
    # behind each other instead of deadlocking.
    for chunk in _chunks(sorted(emails), 5 * STATEMENT_ROWS):
        # NO KEY: the engine's inserts of messages for these contacts take KEY SHARE locks.
        for row in (
            Contact.objects.for_org(organization)
            .filter(email__in=chunk)
            .order_by("email")
            .select_for_update(no_key=True)
            .values("id", "email", "status", *UPSERTED_FIELDS)
        ):
            found[row["email"]] = row
    return found


def _insert_contacts(
    organization: Organization, new: dict[str, dict[str, Any]], consent_source: str, now: dt.datetime
) -> dict[str, tuple[int, str]]:
    """INSERT ... ON CONFLICT DO NOTHING: address -> (id, status) of the contacts it created."""
    suppressed = dict(
        Suppression.objects.for_org(organization)
        .filter(email_hash__in=[email_hash(email) for email in new])
        .values_list("email_hash", "reason")
    )
    stamp = connection.ops.adapt_datetimefield_value(now)
    consented_at = stamp if consent_source else None
    rows = []
    for email, fields in sorted(new.items()):
        reason = suppressed.get(email_hash(email))
        status = Suppression.CONTACT_STATUS_BY_REASON[reason] if reason else Contact.Status.ACTIVE
        rows.append(
            (
                organization.pk,
                email,
                fields.get("first_name", ""),
                fields.get("last_name", ""),
                json.dumps(fields.get("properties") or {}),
                fields.get("timezone", ""),
                status,
                stamp if reason else None,
                consent_source,
                consented_at,
                stamp,
                stamp,
            )
        )
    table = connection.ops.quote_name(Contact._meta.db_table)
    columns = (
        "organization_id, email, first_name, last_name, properties, timezone, status, status_changed_at, "
        "consent_source, consented_at, created_at, updated_at"
    )
    statuses = {row[1]: row[6] for row in rows}
    created: dict[str, tuple[int, str]] = {}
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, STATEMENT_ROWS):
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values} "
                "ON CONFLICT (organization_id, email) DO NOTHING RETURNING id, email",
                [value for row in chunk for value in row],
            )
            for contact_id, email in cursor.fetchall():
                created[email] = (contact_id, statuses[email])
    return created


def _update_contacts(changes: list[tuple[Any, ...]], now: dt.datetime) -> None:
    """UPDATE ... FROM (VALUES ...): one statement per thousand contacts."""
    if not changes:
        return
    table = connection.ops.quote_name(Contact._meta.db_table)
    properties = "v.column4::jsonb" if connection.vendor == "postgresql" else "v.column4"
    with connection.cursor() as cursor:
        for chunk in _chunks(changes, STATEMENT_ROWS):
            values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            params: list[Any] = [connection.ops.adapt_datetimefield_value(now)]
            for contact_id, first_name, last_name, props, zone_name in chunk:
                params.extend((contact_id, first_name, last_name, json.dumps(props), zone_name))
            cursor.execute(
                f"UPDATE {table} SET updated_at = %s, first_name = v.column2, last_name = v.column3, "
                f"properties = {properties}, timezone = v.column5 "
                f"FROM (VALUES {values}) AS v WHERE {table}.id = v.column1",
                params,
            )


def _add_memberships(relation: Any, contact_ids: list[int], target_ids: list[int]) -> None:
    """Every contact joins every target (list or tag); memberships that exist are left alone."""
    if not contact_ids or not target_ids:
        return
    quote = connection.ops.quote_name
    table = quote(relation.through._meta.db_table)
    contact_column, target_column = relation.field.m2m_column_name(), relation.field.m2m_reverse_name()
    targets_table = quote(relation.field.related_model._meta.db_table)
    targets = ", ".join(["%s"] * len(target_ids))
    with connection.cursor() as cursor:
        for chunk in _chunks(contact_ids, 5 * STATEMENT_ROWS):
            contacts = ", ".join(["%s"] * len(chunk))
            # The WHERE keeps SQLite from reading ON CONFLICT as the join's constraint.
            cursor.execute(
                f"INSERT INTO {table} ({contact_column}, {target_column}) "
                f"SELECT contact.id, target.id FROM {quote(Contact._meta.db_table)} AS contact, "
                f"{targets_table} AS target WHERE contact.id IN ({contacts}) AND target.id IN ({targets}) "
                f"ON CONFLICT ({contact_column}, {target_column}) DO NOTHING",
                [*chunk, *target_ids],
            )


# Custom events --------------------------------------------------------------------------------

EVENT_BATCH_LIMIT = 1_000


@dataclass(frozen=True)
class NewContactEvent:
    """One custom event to store, as parsed; `email` or `contact_id` names its contact."""

    index: int
    name: str
    occurred_at: dt.datetime
    properties: dict[str, Any]
    email: str | None = None
    contact_id: int | None = None


@dataclass(frozen=True)
class ItemRejection:
    index: int
    errors: list[dict[str, str]]


@dataclass
class EventIngestReport:
    accepted: int = 0
    rejected: list[ItemRejection] = field(default_factory=list)


@transaction.atomic
def contact_events_ingest(
    *, organization: Organization, events: list[NewContactEvent], now: dt.datetime | None = None
) -> EventIngestReport:
    """Store custom events of the organization's contacts, in a few statements per batch.

    An event whose contact is not one of the organization's (an unknown address or id) is
    rejected; the others are stored. Then every contact whose new event is the goal of a
    sequence it is in leaves that sequence (one pass for the whole batch).
    """
    report = EventIngestReport()
    emails: dict[int, str] = {}
    for event in events:
        if event.email is not None:
            try:
                emails[event.index] = normalize_email(event.email)
            except ValidationError as error:
                report.rejected.append(ItemRejection(event.index, [_error("email", error.messages[0], "invalid")]))
    by_email: dict[str, int] = {}
    for chunk in _chunks(list(set(emails.values())), 5 * STATEMENT_ROWS):
        by_email.update(Contact.objects.for_org(organization).filter(email__in=chunk).values_list("email", "id"))
    wanted_ids = list({event.contact_id for event in events if event.contact_id is not None})
    known_ids: set[int] = set()
    for chunk in _chunks(wanted_ids, 5 * STATEMENT_ROWS):
        known_ids.update(Contact.objects.for_org(organization).filter(id__in=chunk).values_list("id", flat=True))
    rows: list[tuple[int, str, dict[str, Any], dt.datetime]] = []
    for event in events:
        if event.email is not None:
            if event.index not in emails:
                continue
            contact_id = by_email.get(emails[event.index])
            problem = _error("email", "No contact of this organization has this address.", "not_found")
        else:
            contact_id = event.contact_id if event.contact_id in known_ids else None
            problem = _error("contact_id", "No contact of this organization has this id.", "not_found")
        if contact_id is None:
            report.rejected.append(ItemRejection(event.index, [problem]))
            continue
        rows.append((contact_id, event.name, event.properties, event.occurred_at))
    _insert_events(organization, rows, now or timezone.now())
    report.accepted = len(rows)
    report.rejected.sort(key=lambda rejection: rejection.index)
    sequence_services.goals_check_for_events(
        organization_id=organization.pk,
        events=[(contact_id, name, occurred_at) for contact_id, name, _, occurred_at in rows],
        now=now,
    )
    return report


def _insert_events(
    organization: Organization, rows: list[tuple[int, str, dict[str, Any], dt.datetime]], now: dt.datetime
) -> None:
    if not rows or connection.vendor != "postgresql":
        ContactEvent.objects.bulk_create(
            [
                ContactEvent(
                    organization=organization,
                    contact_id=contact_id,
                    name=name,
                    properties=properties,
                    occurred_at=occurred_at,
                )
                for contact_id, name, properties, occurred_at in rows
            ],
            batch_size=STATEMENT_ROWS,
        )
        return
    # One statement over arrays: building 500 model instances costs more than the insert.
    contact_ids, names, properties, moments = zip(*rows, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(ContactEvent._meta.db_table)} "
            "(organization_id, contact_id, name, properties, occurred_at, received_at) "
            "SELECT %s, c, n, p::jsonb, o, %s FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[]) "
            "AS t(c, n, p, o)",
            [organization.pk, now, list(contact_ids), list(names), [json.dumps(p) for p in properties], list(moments)],
        )
