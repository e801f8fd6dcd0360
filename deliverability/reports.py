"""Applying delivery reports: the one place where a bounce, a complaint or an opt-out, from any
source, changes what we may send.

Sources: DSNs and ARF reports at the bounce receiver (deliverability.receiver), provider
webhooks (deliverability.webhooks) and refusals while sending (delivery.services). Each finds
its message, classifies what happened (deliverability.bounces.classify_status or the report's
own class) and calls `bounce_report_apply`, which records a BounceReport once per dedupe key
and acts on the contact through subscribers.services:

- hard: bounced and suppressed at once;
- soft: counted when it is about the address (a full or disabled mailbox, a delivery that
  expired), at most once per message: the organization's `soft_bounce_limit` of those within
  `soft_bounce_window_days` suppress it as bounced; soft failures that are about us (a
  blocklisted IP, content, policy), about the network (X.4.x), temporary ones that do not say the
  mailbox is full or disabled, and delay warnings (the MTA is still trying) are recorded only;
- complaint: complained (unsubscribed from everything) and suppressed;
- unsubscribe (an ARF opt-out, a provider's unsubscribe): unsubscribed and suppressed;
- delivered: a delivered event; auto_reply and not_bounce: recorded only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from deliverability.bounces import classify_status
from deliverability.models import BounceReport
from delivery import services as delivery_services
from delivery.models import Event, Message
from subscribers import services as subscriber_services
from subscribers.addresses import email_hash
from subscribers.models import Contact

logger = logging.getLogger(__name__)

Classification = BounceReport.Classification
Source = BounceReport.Source

EVENT_TYPES = {
    Classification.HARD: Event.Type.BOUNCE,
    Classification.SOFT: Event.Type.SOFT_BOUNCE,
    Classification.COMPLAINT: Event.Type.COMPLAINT,
    Classification.UNSUBSCRIBE: Event.Type.UNSUBSCRIBE,
    Classification.DELIVERED: Event.Type.DELIVERED,
}
# One event of these types per message, whichever source reports it first (a refusal while
# sending and the DSN that follows it are one bounce). Soft bounce events are recorded per report.
ONCE_PER_MESSAGE = {Event.Type.BOUNCE, Event.Type.COMPLAINT, Event.Type.UNSUBSCRIBE, Event.Type.DELIVERED}
DEDUPE_KEY_LENGTH = 255
# Soft failures that say something about the address (Sisimai's reason names, as the classifier
# gives them) count towards its limit. The rest are about us or the message (a blocklisted IP,
# spam or content filters, policy, rate limits, network trouble) and are recorded only:
# suppressing subscribers for them would punish the wrong party.
SOFT_REASONS_ABOUT_THE_ADDRESS = frozenset(
    {
        "mailboxfull",
        "suspend",
        "hasmoved",
        "hostunknown",
        "userunknown",
        "notaccept",
        "expired",
        "filtered",
        "mailererror",
    }
)
# Delay warnings are recorded under "delayed: <reason>", a reason that never counts.
DELAY_WARNING_PREFIX = "delayed: "
# Enhanced status X.4.x (RFC 3463): network and routing trouble, the path to the host and not
# the mailbox (4.4.1 no answer from host, 4.4.7 delivery time expired, ...).
NETWORK_STATUS = re.compile(r"^[45]\.4\.")
# What the classifier answers when nothing in a failure names a reason.
UNPLACED_REASONS = frozenset({"", "onhold", "undefined"})

# A temporary failure counts as a soft bounce only when it is about the mailbox (full, over
# quota, disabled for now); greylisting, throttling and connection trouble are ours or the
# network's, and say nothing about the address.
MAILBOX_STATUS = re.compile(r"\b[45]\.2\.\d{1,3}\b")
MAILBOX_TEXT = re.compile(
    r"mailbox (?:is )?(?:full|over ?quota|temporarily (?:disabled|unavailable)|inactive)|over ?quota|quota exceeded|"
    r"exceeded (?:the |its |their )?(?:storage|quota)|insufficient (?:system )?storage|mailfolder is full|"
    r"user is over",
    re.IGNORECASE,
)


def is_mailbox_state(text: str) -> bool:
    """Whether a temporary failure's text says it is the mailbox's state (full, over quota)."""
    return bool(MAILBOX_STATUS.search(text) or MAILBOX_TEXT.search(text))


def soft_bounce_counts(*, status: str, reply: str, reason: str, diagnostic: str) -> bool:
    """Whether a soft bounce counts towards its address's limit: it is about the address, not
    about the network, and a temporary one says the mailbox is full or disabled (the rule the
    provider webhooks' deferred events follow)."""
    if reason not in SOFT_REASONS_ABOUT_THE_ADDRESS or NETWORK_STATUS.match(status):
        return False
    temporary = status.startswith("4.") or (not status and reply.startswith("4"))
    return not temporary or is_mailbox_state(f"{status} {diagnostic}")


def dedupe_key(*parts: str) -> str:
    """A dedupe key from its parts; hashed when it would not fit the column."""
    key = ":".join(parts)
    if len(key) <= DEDUPE_KEY_LENGTH:
        return key
    return f"{parts[0]}:sha256:{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()}"


@dataclass(frozen=True)
class AppliedReport:
    """What bounce_report_apply did: `applied` is False when the report was seen before."""

    applied: bool
    report: BounceReport | None = None
    contact_changed: bool = False
    suppressed: bool = False
    counted: bool = False  # a soft bounce counted towards the address's limit


@transaction.atomic
def bounce_report_apply(
    *,
    message: Message,
    source: str,
    classification: str,
    dedupe_key: str,
    status: str = "",
    reply: str = "",
    reason: str = "",
    diagnostic: str = "",
    occurred_at: dt.datetime | None = None,
    delay_warning: bool = False,
) -> AppliedReport:
    """Record a delivery report about `message` once per `dedupe_key` and apply it.

    The address counted and suppressed is the contact's (a report may name the address the
    message was forwarded to). Replays (same organization and dedupe key) return
    AppliedReport(applied=False) and change nothing. A `delay_warning` (the MTA is still
    trying) is recorded only, under the reason "delayed: <reason>".
    """
    if delay_warning:
        reason = f"{DELAY_WARNING_PREFIX}{reason}"
    now = timezone.now()
    # NO KEY: as subscribers.services does; the lock also serializes the soft-bounce count of
    # one contact, so two reports arriving together cannot both count below the limit.
    contact = (
        Contact.objects.select_for_update(no_key=True, of=("self",))
        .select_related("organization")
        .get(pk=message.contact_id)
    )
    detail = _detail(source=source, status=status, reply=reply, reason=reason, diagnostic=diagnostic)
    try:
        with transaction.atomic():
            report = BounceReport.objects.create(
                organization_id=message.organization_id,
                message=message,
                contact=contact,
                source=source,
                classification=classification,
                # The contact's address: the one its suppression is kept under.
                recipient_hash=email_hash(contact.email),
                status=status[:16],
                reply=reply[:8],
                reason=reason[:64],
                diagnostic=diagnostic[:10_000],
                dedupe_key=dedupe_key[:DEDUPE_KEY_LENGTH],
                received_at=now,
            )
    except IntegrityError:
        logger.info("delivery report %s for message %s was applied before", dedupe_key, message.pk)
        return AppliedReport(applied=False)

    changed = suppressed = counted = False
    if classification == Classification.HARD:
        changed = subscriber_services.contact_mark_bounced(contact=contact, detail=detail)
        suppressed = True
    elif classification == Classification.SOFT and soft_bounce_counts(
        status=report.status, reply=report.reply, reason=report.reason, diagnostic=report.diagnostic
    ):
        counted = True
        organization = contact.organization
        soft_bounces = _soft_bounced_messages(
            organization_id=message.organization_id,
            recipient_hash=report.recipient_hash,
            since=now - dt.timedelta(days=organization.soft_bounce_window_days),
        )
        if soft_bounces >= organization.soft_bounce_limit:
            changed = subscriber_services.contact_mark_bounced(
                contact=contact,
                detail=f"{soft_bounces} soft bounces in {organization.soft_bounce_window_days} days; last: {detail}",
            )
            suppressed = True
    elif classification == Classification.COMPLAINT:
        changed = subscriber_services.contact_mark_complained(contact=contact, detail=detail)
        suppressed = True
    elif classification == Classification.UNSUBSCRIBE:
        changed = subscriber_services.contact_unsubscribe(contact=contact, source=_source_name(source), detail=detail)
        suppressed = True

    event_type = EVENT_TYPES.get(classification)
    if event_type is not None:
        event_once(
            message=message,
            contact=contact,
            type=event_type,
            dedupe_key=f"{event_type}:message:{message.pk}" if event_type in ONCE_PER_MESSAGE else dedupe_key,
            occurred_at=occurred_at or now,
            detail=detail,
        )
    return AppliedReport(applied=True, report=report, contact_changed=changed, suppressed=suppressed, counted=counted)


def _soft_bounced_messages(*, organization_id: int, recipient_hash: str, since: dt.datetime) -> int:
    """How many messages to the address soft bounced in a way that counts since `since`: an
    MTA's repeated reports about one message (and a refusal followed by its DSN) are one."""
    reports = BounceReport.objects.filter(
        organization_id=organization_id,
        recipient_hash=recipient_hash,
        classification=Classification.SOFT,
        reason__in=SOFT_REASONS_ABOUT_THE_ADDRESS,
        received_at__gte=since,
    ).values_list("pk", "message_id", "status", "reply", "reason", "diagnostic")
    return len(
        {
            message_id or f"report {pk}"  # the message was deleted: its reports count one each
            for pk, message_id, status, reply, reason, diagnostic in reports
            if soft_bounce_counts(status=status, reply=reply, reason=reason, diagnostic=diagnostic)
        }
    )


def event_once(
    *,
    message: Message,
    contact: Contact,
    type: str,
    dedupe_key: str,
    occurred_at: dt.datetime | None = None,
    detail: str = "",
    user_agent: str = "",
    url: str = "",
    is_machine: bool = False,
    machine_reason: str = "",
) -> Event | None:
    """Record an event reported from outside, or nothing when its dedupe key was seen before."""
    try:
        with transaction.atomic():
            return delivery_services.event_record(
                message=message,
                contact=contact,
                type=type,
                occurred_at=occurred_at,
                user_agent=user_agent,
                url=url,
                is_machine=is_machine,
                machine_reason=machine_reason,
                detail=detail,
                dedupe_key=dedupe_key[:DEDUPE_KEY_LENGTH],
            )
    except IntegrityError:
        return None


def _source_name(source: str) -> str:
    return {
        Source.INBOUND: "feedback report",
        Source.WEBHOOK: "provider",
        Source.SMTP_REPLY: "receiving server",
    }.get(source, source)


def _detail(*, source: str, status: str, reply: str, reason: str, diagnostic: str) -> str:
    codes = " ".join(part for part in (reply, status) if part)
    head = f"{_source_name(source)}: {codes}".rstrip(": ")
    if reason:
        head = f"{head} ({reason})"
    text = " ".join(diagnostic.split())
    return f"{head}: {text}"[:2000] if text else head


# Refusals while sending ------------------------------------------------------------------------

REPLY_CODE = re.compile(r"(?:^|[\s;:])([245]\d\d)(?=[\s-]|$)")
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")


def reply_codes(text: str) -> tuple[str, str]:
    """(SMTP reply code, enhanced status code) found in a server's answer, "" where absent."""
    reply = REPLY_CODE.search(text)
    status = ENHANCED_STATUS.search(text)
    return (reply.group(1) if reply else "", status.group(1) if status else "")


def smtp_reply_classify(response: str) -> tuple[str, str, str, str]:
    """(classification, reason, reply code, enhanced status) of a receiving server's answer."""
    reply, status = reply_codes(response)
    classification, reason = classify_status(status=status, reply=reply, diagnostic=response)
    return classification, reason, reply, status


def permanent_failure_class(classification: str, reason: str) -> str:
    """The class of a failure the sender or provider already called permanent and about the
    address: a hard bounce, unless the classifier placed it elsewhere for a reason it names."""
    if classification == Classification.HARD or reason in UNPLACED_REASONS:
        return Classification.HARD
    return classification


def smtp_refusal_apply(*, message: Message, response: str) -> AppliedReport:
    """A permanent refusal of the address while sending (the transport said so), classified as
    DSNs and webhooks are."""
    classification, reason, reply, status = smtp_reply_classify(response)
    return bounce_report_apply(
        message=message,
        source=Source.SMTP_REPLY,
        classification=permanent_failure_class(classification, reason),
        dedupe_key=dedupe_key("smtp", str(message.pk)),
        status=status,
        reply=reply,
        reason=reason,
        diagnostic=response,
    )


def smtp_mailbox_states_apply(*, replies: list[tuple[int, str]]) -> int:
    """Count refusals that say the mailbox is full or disabled for now (a 452 4.2.2, a 552
    5.2.2) as soft bounces, once per message. Other temporary failures count for nothing.
    Returns how many were counted."""
    ours = [(message_id, response) for message_id, response in replies if is_mailbox_state(response)]
    if not ours:
        return 0
    messages = Message.objects.in_bulk([message_id for message_id, _ in ours])
    counted = 0
    for message_id, response in ours:
        message = messages.get(message_id)
        if message is None:
            continue
        _, reason, reply, status = smtp_reply_classify(response)
        if reason not in SOFT_REASONS_ABOUT_THE_ADDRESS:
            reason = "mailboxfull"  # what is_mailbox_state found in the text
        applied = bounce_report_apply(
            message=message,
            source=Source.SMTP_REPLY,
            classification=Classification.SOFT,
            dedupe_key=dedupe_key("smtp-soft", str(message_id)),
            status=status,
            reply=reply,
            reason=reason,
            diagnostic=response,
        )
        counted += applied.counted
    return counted
