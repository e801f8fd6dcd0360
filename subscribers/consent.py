"""Public sign-up forms, double opt-in and the preference page.

A sign-up (`subscribe_by_form`) writes a "subscribe" consent record with the wording the person
was shown, their IP and browser. Where a confirmation is needed (the organization asks for
double opt-in, or the address once unsubscribed or was erased), an email goes out after commit
with a link that names that record (`links.confirmation_url`); until it is confirmed the
contact is pending (or stays unsubscribed) and gets no sequence mail. The public answer to a
sign-up is the same whatever the address is to us, so the form cannot tell anyone who is
subscribed. Confirming is a POST from the page the link opens (`contact_confirm`): link
scanners fetch every URL in a message, so a GET never confirms. The preference page changes
public lists, pauses marketing mail, or unsubscribes; each change is a consent record with what
was before and after.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from delivery.transactional import transactional_send
from delivery.transports import Outcome, TransportUnavailable
from organizations.models import Organization
from subscribers import links, services
from subscribers.addresses import email_hash, normalize_email
from subscribers.models import ConsentRecord, Contact, ContactList, SubscribeForm, Suppression

logger = logging.getLogger(__name__)

# Suppressions that a sign-up cannot lift, even confirmed: the address does not exist, its owner
# reported us as spam, or staff decided. (An unsubscribe or an erasure was the person's own
# choice, which their confirmed sign-up reverses.)
BLOCKING_SUPPRESSIONS = frozenset(
    {Suppression.Reason.BOUNCED, Suppression.Reason.COMPLAINED, Suppression.Reason.MANUAL}
)
PAUSE_PERIODS = {
    "week": dt.timedelta(days=7),
    "month": dt.timedelta(days=30),
    "quarter": dt.timedelta(days=90),
}


# Throttling ----------------------------------------------------------------------------------


def _within_budget(key: str, limit: int, period_seconds: int) -> bool:
    """Count one use of a fixed-window budget in the cache; False once it is spent."""
    cache.add(key, 0, timeout=period_seconds)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=period_seconds)
        used = 1
    return used <= limit


def subscribe_request_allowed(ip: str | None) -> bool:
    """Whether this client address may post another sign-up this hour."""
    return _within_budget(f"subscribe:ip:{ip or 'unknown'}", settings.SUBSCRIBE_REQUESTS_PER_IP_PER_HOUR, 3600)


def _confirmation_email_allowed(organization_id: int, address_hash: str) -> bool:
    return _within_budget(
        f"subscribe:confirmations:{organization_id}:{address_hash}",
        settings.CONFIRMATION_EMAILS_PER_ADDRESS_PER_DAY,
        24 * 3600,
    )


# Subscribe forms -----------------------------------------------------------------------------

FORM_FIELDS = ("name", "consent_wording", "contact_list", "redirect_url", "is_active")


def _form_save(form: SubscribeForm, **save: Any) -> SubscribeForm:
    if form.contact_list is not None and form.contact_list.organization_id != form.organization_id:
        raise ValidationError({"contact_list": "This list belongs to another organization."})
    form.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            form.save(**save)
    except IntegrityError:
        raise ValidationError({"name": "A subscribe form with this name already exists."}) from None
    return form


def subscribe_form_create(
    *,
    organization: Organization,
    name: str,
    consent_wording: str,
    contact_list: ContactList | None = None,
    redirect_url: str = "",
    is_active: bool = True,
) -> SubscribeForm:
    form = SubscribeForm(
        organization=organization,
        name=name.strip(),
        token=secrets.token_urlsafe(18),
        consent_wording=consent_wording.strip(),
        contact_list=contact_list,
        redirect_url=redirect_url,
        is_active=is_active,
    )
    return _form_save(form)


def subscribe_form_update(*, form: SubscribeForm, **fields: Any) -> SubscribeForm:
    unknown = set(fields) - set(FORM_FIELDS)
    if unknown:
        raise TypeError(f"subscribe_form_update cannot change {', '.join(sorted(unknown))}")
    for name in ("name", "consent_wording"):
        if name in fields:
            fields[name] = fields[name].strip()
    for name, value in fields.items():
        setattr(form, name, value)
    return _form_save(form)


def subscribe_form_delete(*, form: SubscribeForm) -> None:
    """Delete a form; its URL stops answering. Consent given through it stays recorded."""
    form.delete()


def subscribe_form_lists(form: SubscribeForm) -> list[ContactList]:
    """The lists a sign-up through the form may join: its own list, or the public lists to choose from."""
    if form.contact_list_id is not None:
        return [form.contact_list] if form.contact_list else []
    return list(ContactList.objects.for_org(form.organization_id).filter(is_public=True).order_by("name"))


def embed_snippet(form: SubscribeForm) -> str:
    """HTML to paste into another site: a form that posts to the hosted endpoint, with the honeypot."""
    return render_to_string(
        "subscribers/embed_snippet.html",
        {"form": form, "action": links.subscribe_url(form.token), "lists": subscribe_form_lists(form)},
    ).strip()


# Sign-up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignUp:
    """What a person sent through a subscribe form, and from where."""

    email: str
    first_name: str = ""
    list_ids: tuple[int, ...] = ()
    ip: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class SignUpResult:
    contact: Contact
    record: ConsentRecord
    # A confirmation is needed before mail goes out (whether or not the email could be sent).
    confirmation_needed: bool


def _chosen_lists(form: SubscribeForm, list_ids: Iterable[int]) -> list[ContactList]:
    offered = subscribe_form_lists(form)
    if form.contact_list_id is not None:
        return offered
    by_id = {item.pk: item for item in offered}
    wanted = list(dict.fromkeys(list_ids))
    unknown = [list_id for list_id in wanted if list_id not in by_id]
    if unknown:
        raise ValidationError({"lists": "Choose among the lists offered."})
    return [by_id[list_id] for list_id in wanted]


def subscribe_by_form(*, form: SubscribeForm, sign_up: SignUp) -> SignUpResult:
    """Take a sign-up through a public form; raises ValidationError (by field) for bad input.

    A new address becomes a contact: pending when the organization asks for double opt-in,
    otherwise active and in the chosen lists at once. An existing active contact stays active;
    a pending, unsubscribed or erased one is not changed until it confirms. A bounced,
    complained or staff-suppressed address is never mailed, not even a confirmation; nor is an
    active contact that asks for nothing new (it is already subscribed).

    The result is for the caller's records, not for the person who posted: anyone may post any
    address, so what they are told must not depend on it (see views._signed_up).
    """
    try:
        address = normalize_email(sign_up.email)
    except ValidationError as error:
        raise ValidationError({"email": error.messages}) from None
    organization = form.organization
    chosen = _chosen_lists(form, sign_up.list_ids)
    source = f"form:{form.pk}"
    detail = {"form": form.pk, "lists": [item.pk for item in chosen]}
    with transaction.atomic():
        # NO KEY: the engine's inserts of messages for this contact take KEY SHARE locks on it.
        contact = (
            Contact.objects.select_for_update(no_key=True).filter(organization=organization, email=address).first()
        )
        reason = (
            Suppression.objects.filter(organization=organization, email_hash=email_hash(address))
            .values_list("reason", flat=True)
            .first()
        )
        if contact is None:
            confirmation_needed = organization.double_opt_in or reason is not None
            contact = services.contact_create(
                organization=organization,
                email=address,
                first_name=sign_up.first_name[:150],
                consent_source=source,
                consent_ip=sign_up.ip,
                lists=() if confirmation_needed else chosen,
                pending=organization.double_opt_in,
                consent_wording=form.consent_wording,
                consent_user_agent=sign_up.user_agent,
                consent_detail=detail,
            )
            record = ConsentRecord.objects.filter(contact=contact, action=ConsentRecord.Action.SUBSCRIBE).latest("id")
        else:
            joined = set(contact.lists.values_list("id", flat=True))
            new_lists = [item for item in chosen if item.pk not in joined]
            if contact.status == Contact.Status.ACTIVE and reason is None:
                confirmation_needed = organization.double_opt_in and bool(new_lists)
                if not confirmation_needed and new_lists:
                    contact.lists.add(*new_lists)
            else:
                confirmation_needed = True
            record = services.consent_record(
                organization=organization,
                contact=contact,
                action=ConsentRecord.Action.SUBSCRIBE,
                source=source,
                ip=sign_up.ip,
                user_agent=sign_up.user_agent,
                wording=form.consent_wording,
                detail={**detail, "status": contact.status, **({"suppressed": reason} if reason else {})},
            )
        if (
            confirmation_needed
            and reason not in BLOCKING_SUPPRESSIONS
            and _confirmation_email_allowed(organization.pk, record.email_hash)
        ):
            transaction.on_commit(partial(confirmation_send, record_id=record.pk))
    return SignUpResult(contact=contact, record=record, confirmation_needed=confirmation_needed)


def confirmation_send(*, record_id: int) -> bool:
    """Email the confirmation link of a sign-up; False when the route did not take it.

    Runs after the sign-up commits, in the request: a failure is logged (the person can sign up
    again), never raised into an answer whose data is already stored.
    """
    record = ConsentRecord.objects.select_related("organization", "contact").filter(pk=record_id).first()
    if record is None or record.contact is None:
        return False
    organization = record.organization
    context = {
        "organization": organization,
        "confirm_url": links.confirmation_url(record.pk),
        "wording": record.wording,
        "days": settings.CONFIRMATION_LINK_DAYS,
    }
    try:
        result = transactional_send(
            organization=organization,
            to=record.contact.email,
            subject=f"Please confirm your subscription to {organization.name}",
            text=render_to_string("subscribers/confirmation_email.txt", context),
            html=render_to_string("subscribers/confirmation_email.html", context),
        )
    except TransportUnavailable as error:
        logger.warning("confirmation of sign-up %s not sent, the route is unavailable: %s", record_id, error)
        return False
    except Exception:  # a provider's own error type
        logger.exception("confirmation of sign-up %s could not be handed to the route", record_id)
        return False
    if result.outcome is not Outcome.ACCEPTED:
        logger.warning("confirmation of sign-up %s refused: %s", record_id, result.response)
    return result.outcome is Outcome.ACCEPTED


# Confirmation --------------------------------------------------------------------------------


class Confirmation(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    # Unsubscribed or suppressed after signing up: the old link no longer speaks for them.
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"  # the address bounced, complained or was suppressed by staff


def confirmation_sign_up(token: str) -> ConsentRecord | None:
    """The sign-up a confirmation link confirms, or None for a forged, altered or expired link,
    or a sign-up whose contact has since been erased."""
    record_id = links.confirmation_record_id(token)
    if record_id is None:
        return None
    return (
        ConsentRecord.objects.select_related("organization", "contact")
        .filter(pk=record_id, action=ConsentRecord.Action.SUBSCRIBE, contact__isnull=False)
        .first()
    )


@transaction.atomic
def contact_confirm(
    *, sign_up: ConsentRecord, ip: str | None, user_agent: str, now: dt.datetime | None = None
) -> Confirmation:
    """Confirm a sign-up: the contact becomes active (a lifted unsubscribe or erasure included)
    and joins the lists it chose; a "confirm" consent record says so. Idempotent."""
    now = now or timezone.now()
    contact = Contact.objects.select_for_update(no_key=True).get(pk=sign_up.contact_id)
    later = ConsentRecord.objects.filter(contact=contact, pk__gt=sign_up.pk)
    if later.filter(action=ConsentRecord.Action.CONFIRM, detail__sign_up=sign_up.pk).exists():
        return Confirmation.ALREADY_CONFIRMED
    if later.filter(action__in=[ConsentRecord.Action.UNSUBSCRIBE, ConsentRecord.Action.SUPPRESS]).exists():
        return Confirmation.WITHDRAWN
    suppression = Suppression.objects.filter(
        organization_id=contact.organization_id, email_hash=email_hash(contact.email)
    ).first()
    if suppression is not None and suppression.reason in BLOCKING_SUPPRESSIONS:
        return Confirmation.REFUSED
    previous = contact.status
    fields = ["consent_source", "consent_ip", "consented_at", "updated_at"]
    if previous != Contact.Status.ACTIVE:
        contact.status, contact.status_changed_at = Contact.Status.ACTIVE, now
        fields += ["status", "status_changed_at"]
    contact.consent_source, contact.consent_ip, contact.consented_at = sign_up.source, ip, now
    contact.save(update_fields=fields)
    if suppression is not None:
        suppression.delete()
    chosen = list(ContactList.objects.for_org(contact.organization_id).filter(pk__in=sign_up.detail.get("lists", [])))
    if chosen:
        contact.lists.add(*chosen)
    services.consent_record(
        organization=contact.organization_id,
        contact=contact,
        action=ConsentRecord.Action.CONFIRM,
        source=sign_up.source,
        ip=ip,
        user_agent=user_agent,
        wording=sign_up.wording,
        detail={
            "sign_up": sign_up.pk,
            "previous_status": previous,
            "lists": [item.pk for item in chosen],
            "suppression_lifted": suppression.reason if suppression else None,
        },
        occurred_at=now,
    )
    # Sequences enroll contacts explicitly (API, admin): joining a list starts none.
    return Confirmation.CONFIRMED


# Preferences ---------------------------------------------------------------------------------


def preferences_contact(token: str) -> Contact | None:
    contact_id = links.preferences_contact_id(token)
    if contact_id is None:
        return None
    return Contact.objects.select_related("organization").filter(pk=contact_id).first()


def public_lists(organization_id: int) -> list[ContactList]:
    return list(ContactList.objects.for_org(organization_id).filter(is_public=True).order_by("name"))


def _preferences_state(contact: Contact, public_ids: set[int]) -> dict[str, Any]:
    joined = set(contact.lists.filter(pk__in=public_ids).values_list("id", flat=True))
    return {
        "lists": sorted(joined),
        "paused_until": contact.paused_until.isoformat() if contact.paused_until else None,
    }


@transaction.atomic
def preferences_update(
    *,
    contact: Contact,
    list_ids: Iterable[int],
    pause: str = "",
    ip: str | None = None,
    user_agent: str = "",
    now: dt.datetime | None = None,
) -> bool:
    """Set which public lists the contact is in and pause marketing mail, from the preference
    page. `pause` is "" (leave as is), "resume", or a key of PAUSE_PERIODS. Lists that are not
    public are left alone. Returns whether anything changed (then recorded, before and after)."""
    now = now or timezone.now()
    locked = Contact.objects.select_for_update(no_key=True).get(pk=contact.pk)
    public_ids = {item.pk for item in public_lists(locked.organization_id)}
    chosen = set(list_ids)
    if not chosen <= public_ids:
        raise ValidationError({"lists": "Choose among the lists offered."})
    if pause and pause != "resume" and pause not in PAUSE_PERIODS:
        raise ValidationError({"pause": "Choose one of the periods offered."})
    before = _preferences_state(locked, public_ids)
    joined = set(before["lists"])
    if chosen - joined:
        locked.lists.add(*(chosen - joined))
    if joined - chosen:
        locked.lists.remove(*(joined - chosen))
    if pause:
        locked.paused_until = None if pause == "resume" else now + PAUSE_PERIODS[pause]
        locked.save(update_fields=["paused_until", "updated_at"])
    contact.paused_until = locked.paused_until
    after = _preferences_state(locked, public_ids)
    if after == before:
        return False
    services.consent_record(
        organization=locked.organization_id,
        contact=locked,
        action=ConsentRecord.Action.PREFERENCES,
        source="preference page",
        ip=ip,
        user_agent=user_agent,
        detail={"before": before, "after": after},
        occurred_at=now,
    )
    return True


def preferences_can_resubscribe(contact: Contact) -> bool:
    """Whether an unsubscribed contact may subscribe again from its preference page (not after
    a bounce, a complaint or a staff suppression)."""
    if contact.status == Contact.Status.ACTIVE:
        return False
    reason = (
        Suppression.objects.filter(organization_id=contact.organization_id, email_hash=email_hash(contact.email))
        .values_list("reason", flat=True)
        .first()
    )
    if reason is not None:
        return reason not in BLOCKING_SUPPRESSIONS
    return contact.status in (Contact.Status.UNSUBSCRIBED, Contact.Status.PENDING)


def preferences_resubscribe(*, contact: Contact, ip: str | None, user_agent: str, wording: str) -> bool:
    """Subscribe again from the preference page (the link came in an email to the address)."""
    if not preferences_can_resubscribe(contact):
        return False
    services.contact_resubscribe(
        contact=contact, source="preference page", consent_ip=ip, user_agent=user_agent, wording=wording
    )
    return True
