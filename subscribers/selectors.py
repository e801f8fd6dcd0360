"""Reads on contacts, lists, tags and their history, always within one organization."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from organizations.models import Organization
from subscribers.addresses import email_hash, normalize_email
from subscribers.models import ConsentRecord, Contact, ContactEvent, ContactList, SubscribeForm, Suppression, Tag


def tag_list(*, organization: Organization) -> QuerySet[Tag]:
    return Tag.objects.for_org(organization).annotate(contact_count=Count("contacts"))


def tag_get(*, organization: Organization, tag_id: int) -> Tag:
    return get_object_or_404(tag_list(organization=organization), pk=tag_id)


def _all_of(queryset: QuerySet, ids: Iterable[int], *, field: str, noun: str) -> list[Any]:
    """The rows with these ids, or a 404 naming the field when one is not the organization's."""
    wanted = set(ids)
    found = list(queryset.filter(pk__in=wanted))
    missing = sorted(wanted - {row.pk for row in found})
    if missing:
        raise Http404(f"{field}: there is no {noun} with id {missing[0]} in this organization.")
    return found


def tags_get_many(*, organization: Organization, tag_ids: Iterable[int], field: str = "tag_ids") -> list[Tag]:
    return _all_of(Tag.objects.for_org(organization), tag_ids, field=field, noun="tag")


# Lists ----------------------------------------------------------------------------------------


def list_list(*, organization: Organization) -> QuerySet[ContactList]:
    return ContactList.objects.for_org(organization).annotate(contact_count=Count("contacts"))


def list_get(*, organization: Organization, list_id: int) -> ContactList:
    return get_object_or_404(list_list(organization=organization), pk=list_id)


def lists_get_many(
    *, organization: Organization, list_ids: Iterable[int], field: str = "list_ids"
) -> list[ContactList]:
    return _all_of(ContactList.objects.for_org(organization), list_ids, field=field, noun="list")


# Contacts -------------------------------------------------------------------------------------


def _with_memberships(contacts: QuerySet[Contact]) -> QuerySet[Contact]:
    return contacts.prefetch_related(
        Prefetch("lists", queryset=ContactList.objects.only("id", "name")),
        Prefetch("tags", queryset=Tag.objects.only("id", "name")),
    )


def contacts_filter(
    *,
    organization: Organization,
    status: str | None = None,
    list_id: int | None = None,
    tag_id: int | None = None,
    email: str | None = None,
    created_after: dt.datetime | None = None,
    updated_after: dt.datetime | None = None,
) -> QuerySet[Contact]:
    """The organization's contacts, narrowed by each filter given. A list or tag of another
    organization is a 404; `email` matches part of the address, in any case."""
    contacts = Contact.objects.for_org(organization)
    if status:
        contacts = contacts.filter(status=status)
    if list_id is not None:
        contacts = contacts.filter(
            lists=lists_get_many(organization=organization, list_ids=[list_id], field="list_id")[0]
        )
    if tag_id is not None:
        contacts = contacts.filter(tags=tags_get_many(organization=organization, tag_ids=[tag_id], field="tag_id")[0])
    if email:
        contacts = contacts.filter(email__icontains=email.strip())
    if created_after is not None:
        contacts = contacts.filter(created_at__gte=created_after)
    if updated_after is not None:
        contacts = contacts.filter(updated_at__gte=updated_after)
    return _with_memberships(contacts)


def contact_get(*, organization: Organization, contact_id: int) -> Contact:
    return get_object_or_404(_with_memberships(Contact.objects.for_org(organization)), pk=contact_id)


def contact_lookup(*, organization: Organization, email: str) -> Contact:
    """The contact with this address, in any spelling that normalizes to it."""
    try:
        normalized = normalize_email(email)
    except ValidationError as error:
        raise ValidationError({"email": error.messages}) from None
    return get_object_or_404(_with_memberships(Contact.objects.for_org(organization)), email=normalized)


def contact_messages(*, contact: Contact) -> QuerySet[Any]:
    return contact.messages.all()


# A contact's timeline: delivery events (opens, clicks, bounces...) and custom events, newest
# first. Its position is (occurred_at, source's rank, id): unique and the same in both tables.
TIMELINE_RANKS = {"delivery": 0, "custom": 1}
TimelineKey = tuple[dt.datetime, int, int]


def _older_than(key: TimelineKey, rank: int) -> Q:
    moment, key_rank, key_id = key
    if rank < key_rank:
        return Q(occurred_at__lte=moment)
    if rank > key_rank:
        return Q(occurred_at__lt=moment)
    return Q(occurred_at__lt=moment) | Q(occurred_at=moment, id__lt=key_id)


def contact_timeline(*, contact: Contact, older_than: TimelineKey | None, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` entries of the timeline that come after `older_than` (from the start when None)."""
    delivery = contact.events.order_by("-occurred_at", "-id")
    custom = contact.custom_events.order_by("-occurred_at", "-id")
    if older_than is not None:
        delivery = delivery.filter(_older_than(older_than, TIMELINE_RANKS["delivery"]))
        custom = custom.filter(_older_than(older_than, TIMELINE_RANKS["custom"]))
    entries = [
        {
            "source": "delivery",
            "id": event["id"],
            "name": event["type"],
            "occurred_at": event["occurred_at"],
            "message_id": event["message_id"],
            "url": event["url"],
            "is_machine": event["is_machine"],
            "properties": {},
        }
        for event in delivery.values("id", "type", "occurred_at", "message_id", "url", "is_machine")[:limit]
    ]
    entries += [
        {
            "source": "custom",
            "id": event["id"],
            "name": event["name"],
            "occurred_at": event["occurred_at"],
            "message_id": None,
            "url": "",
            "is_machine": False,
            "properties": event["properties"],
        }
        for event in custom.values("id", "name", "occurred_at", "properties")[:limit]
    ]
    entries.sort(key=timeline_key, reverse=True)
    return entries[:limit]


def timeline_key(entry: dict[str, Any]) -> TimelineKey:
    return (entry["occurred_at"], TIMELINE_RANKS[entry["source"]], entry["id"])


def contact_export(*, contact: Contact) -> dict[str, Any]:
    """Everything stored about one person (GDPR article 15), as plain data; `contact` as
    contact_get gives it."""
    return {
        "exported_at": timezone.now(),
        "contact": contact,
        "suppression": Suppression.objects.filter(
            organization_id=contact.organization_id, email_hash=email_hash(contact.email)
        )
        .values("reason", "created_at")
        .first(),
        "enrollments": list(
            contact.enrollments.order_by("id").values(
                "id", "sequence_id", "sequence__name", "status", "exit_reason", "enrolled_at", "finished_at"
            )
        ),
        "messages": list(contact_messages(contact=contact).order_by("id")),
        "delivery_events": list(
            contact.events.order_by("id").values(
                "id", "message_id", "type", "occurred_at", "ip", "user_agent", "url", "is_machine"
            )
        ),
        "custom_events": list(contact.custom_events.order_by("id")),
        "consent_records": list(consent_history(contact=contact).select_related("actor").order_by("id")),
    }


# Custom events --------------------------------------------------------------------------------


def custom_events_filter(
    *,
    organization: Organization,
    name: str | None = None,
    contact_id: int | None = None,
    occurred_after: dt.datetime | None = None,
    occurred_before: dt.datetime | None = None,
) -> QuerySet[ContactEvent]:
    events = ContactEvent.objects.for_org(organization)
    if name:
        events = events.filter(name=name.strip())
    if contact_id is not None:
        _all_of(Contact.objects.for_org(organization), [contact_id], field="contact_id", noun="contact")
        events = events.filter(contact_id=contact_id)
    if occurred_after is not None:
        events = events.filter(occurred_at__gte=occurred_after)
    if occurred_before is not None:
        events = events.filter(occurred_at__lt=occurred_before)
    return events


# Consent ---------------------------------------------------------------------------------------


def subscribe_form_list(*, organization: Organization) -> QuerySet[SubscribeForm]:
    return SubscribeForm.objects.for_org(organization).select_related("contact_list")


def subscribe_form_get(*, organization: Organization, form_id: int) -> SubscribeForm:
    return get_object_or_404(subscribe_form_list(organization=organization), pk=form_id)


def subscribe_form_public(*, token: str) -> SubscribeForm | None:
    """An active form by the token in its public URL, whatever its organization."""
    return (
        SubscribeForm.objects.select_related("organization", "contact_list").filter(token=token, is_active=True).first()
    )


def consent_history(*, contact: Contact) -> QuerySet[ConsentRecord]:
    """The consent records of the contact's address in its organization, newest first: those
    written before the contact existed (an erased earlier contact, a suppression) included."""
    return ConsentRecord.objects.for_org(contact.organization_id).filter(
        Q(contact=contact) | Q(email_hash=email_hash(contact.email))
    )
