"""Writes on contacts, lists, tags and suppressions.

Every change of consent goes through one function here: contact_create (consent given),
contact_unsubscribe, contact_mark_bounced, contact_mark_complained, contact_resubscribe and
suppression_add. The audit log (ledger) will attach to these functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from organizations.models import Organization
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.addresses import email_hash, normalize_email
from subscribers.models import Contact, ContactList, Suppression, Tag

CONTACT_FIELDS = ("email", "first_name", "last_name", "properties", "timezone")


def _check_properties(properties: Any) -> dict[str, Any]:
    if properties is None:
        return {}
    if not isinstance(properties, dict):
        raise ValidationError({"properties": "Properties must be a JSON object of names to values."})
    return properties


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
) -> Contact:
    """Create a contact. A suppressed address is created unmailable, with the suppression's status."""
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
    suppression = Suppression.objects.filter(organization=organization, email_hash=email_hash(normalized)).first()
    if suppression is not None:
        contact.status = Suppression.CONTACT_STATUS_BY_REASON[suppression.reason]
        contact.status_changed_at = timezone.now()
    contact.full_clean()
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        raise ValidationError({"email": "A contact with this email already exists."}) from None
    _attach(contact, lists=lists, tags=tags)
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
    contact.full_clean()
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


@transaction.atomic
def suppression_add(*, organization: Organization | int, email: str, reason: str, detail: str = "") -> Suppression:
    """Keep the organization from ever mailing this address again (until staff lift it)."""
    organization_id = organization if isinstance(organization, int) else organization.pk
    suppression, _ = Suppression.objects.get_or_create(
        organization_id=organization_id,
        email_hash=email_hash(normalize_email(email)),
        defaults={"reason": reason, "detail": detail[:2000]},
    )
    return suppression


@transaction.atomic
def suppression_lift(*, suppression: Suppression) -> None:
    suppression.delete()


@transaction.atomic
def _contact_stop_mailing(
    *, contact: Contact, status: str, suppression_reason: str, exit_reason: str, detail: str
) -> bool:
    """Make a contact unmailable at once: status, suppression, every enrollment ended.

    Returns whether the contact was mailable before. Idempotent: repeating it changes nothing.
    """
    # NO KEY: the engine's inserts of messages for this contact take KEY SHARE locks on it.
    locked = Contact.objects.select_for_update(no_key=True).get(pk=contact.pk)
    was_mailable = locked.status == Contact.Status.ACTIVE
    # A complaint outranks an earlier unsubscribe or bounce; otherwise the first reason stays.
    outranks = status == Contact.Status.COMPLAINED and locked.status != Contact.Status.COMPLAINED
    if was_mailable or outranks:
        locked.status = status
        locked.status_changed_at = timezone.now()
        locked.save(update_fields=["status", "status_changed_at", "updated_at"])
    contact.status, contact.status_changed_at = locked.status, locked.status_changed_at
    suppression = suppression_add(
        organization=locked.organization_id, email=locked.email, reason=suppression_reason, detail=detail
    )
    if outranks and suppression.reason != Suppression.Reason.COMPLAINED:
        suppression.reason, suppression.detail = Suppression.Reason.COMPLAINED, detail[:2000]
        suppression.save(update_fields=["reason", "detail"])
    sequence_services.enrollments_end_for_contact(contact=locked, reason=exit_reason)
    return was_mailable


def contact_unsubscribe(*, contact: Contact, source: str, detail: str = "") -> bool:
    return _contact_stop_mailing(
        contact=contact,
        status=Contact.Status.UNSUBSCRIBED,
        suppression_reason=Suppression.Reason.UNSUBSCRIBED,
        exit_reason=Enrollment.ExitReason.UNSUBSCRIBED,
        detail=f"{source}: {detail}" if detail else source,
    )


def contact_mark_bounced(*, contact: Contact, detail: str) -> bool:
    return _contact_stop_mailing(
        contact=contact,
        status=Contact.Status.BOUNCED,
        suppression_reason=Suppression.Reason.BOUNCED,
        exit_reason=Enrollment.ExitReason.BOUNCED,
        detail=detail,
    )


def contact_mark_complained(*, contact: Contact, detail: str) -> bool:
    return _contact_stop_mailing(
        contact=contact,
        status=Contact.Status.COMPLAINED,
        suppression_reason=Suppression.Reason.COMPLAINED,
        exit_reason=Enrollment.ExitReason.COMPLAINED,
        detail=detail,
    )


@transaction.atomic
def contact_resubscribe(*, contact: Contact, source: str, consent_ip: str | None = None) -> Contact:
    """Make a contact mailable again on fresh consent: lifts the suppression of the address."""
    Suppression.objects.filter(organization_id=contact.organization_id, email_hash=email_hash(contact.email)).delete()
    now = timezone.now()
    contact.status = Contact.Status.ACTIVE
    contact.status_changed_at = now
    contact.consent_source = source
    contact.consent_ip = consent_ip
    contact.consented_at = now
    contact.save(
        update_fields=["status", "status_changed_at", "consent_source", "consent_ip", "consented_at", "updated_at"]
    )
    return contact
