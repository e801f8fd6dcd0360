"""Provider webhooks: django-anymail's normalized tracking and inbound events, applied.

anymail's views (mounted under /webhooks/anymail/) verify each post (HTTP basic auth with
ANYMAIL["WEBHOOK_SECRET"], and the provider's signature where it signs, e.g. Mailgun's HMAC)
and turn it into AnymailTrackingEvents; the receivers here map those onto our vocabulary:

    delivered                 -> delivered event
    bounced                   -> hard or soft bounce, as classify_status reads the MTA's reply
    deferred                  -> soft bounce only when the reply says the mailbox is full
    rejected                  -> by reason: bounced/invalid hard, spam complaint, unsubscribed
                                 unsubscribe, timed_out soft; the provider's policy: recorded only
    complained                -> complaint
    unsubscribed              -> unsubscribe
    autoresponded             -> recorded only
    opened / clicked          -> open / click events (is_machine as for our own pixel and links)

Each event is matched by the provider's message id (Message.provider_message_id, stored when
the provider accepted the message), or else by our own Message-ID, and only to a message sent
through a provider: an anymail route of the same provider, or EMAIL_URL when that is one. (An SMTP
relay's queue id is stored in the same field; one organization's admin, who may hold the webhook
secret, must not reach another's messages by naming it.) Events of unknown messages
are ignored (the view still answers 200: the provider must not retry them). Replays are applied
once: the provider's event id, or a hash of the event, is the dedupe key.

Inbound events (a provider receiving mail for BOUNCE_DOMAIN) go through the bounce receiver's
own parsing and matching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from anymail.signals import AnymailInboundEvent, AnymailTrackingEvent, EventType, RejectReason
from django.conf import settings
from django.core.checks import CheckMessage
from django.core.checks import Warning as CheckWarning
from django.db.models import Q, QuerySet
from django.utils import timezone

from deliverability import receiver, reports, verp
from deliverability.bounces import classify_status
from deliverability.models import BounceReport
from delivery.machines import machine_reason
from delivery.models import DeliveryRoute, Event, Message
from emailseq.environment import ANYMAIL_PROVIDERS

logger = logging.getLogger(__name__)

Classification = BounceReport.Classification

REJECTED_CLASSES = {
    RejectReason.BOUNCED: Classification.HARD,
    RejectReason.INVALID: Classification.HARD,
    RejectReason.SPAM: Classification.COMPLAINT,
    RejectReason.UNSUBSCRIBED: Classification.UNSUBSCRIBE,
    RejectReason.TIMED_OUT: Classification.SOFT,
}
# Provider quirks: bounce types that anymail files under "bounced" but that are temporary.
SOFT_BOUNCE_TYPES = {("Postmark", "SoftBounce"), ("Postmark", "DnsError"), ("Postmark", "Transient")}


def _provider_key(name: str) -> str:
    """A provider's name as anymail ("Amazon SES") and our URL schemes ("amazon-ses") both spell it."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _sent_through(message: Message, esp_name: str) -> bool:
    """Whether `message` went out through the provider `esp_name` (as far as we can tell)."""
    route = message.route
    if route is None:
        if settings.EMAIL.kind != "anymail":
            return False
        backend = settings.EMAIL.anymail_backend.split(".")  # anymail.backends.<provider>.EmailBackend
        provider = backend[-2] if len(backend) >= 2 else ""
    elif route.kind == DeliveryRoute.Kind.ANYMAIL:
        provider = urlsplit(route.url).scheme
    else:
        return False
    known = {_provider_key(scheme) for scheme in ANYMAIL_PROVIDERS}
    return _provider_key(provider) not in known or _provider_key(provider) == _provider_key(esp_name)


def _sent_by_provider() -> QuerySet[Message]:
    messages = Message.objects.select_related("contact", "route")
    if settings.EMAIL.kind == "anymail":
        return messages.filter(Q(route__kind=DeliveryRoute.Kind.ANYMAIL) | Q(route__isnull=True))
    return messages.filter(route__kind=DeliveryRoute.Kind.ANYMAIL)


def event_message(*, esp_name: str, provider_message_id: str | None) -> Message | None:
    """Our message that a provider's event is about, or None. Only messages sent through that
    provider can be named: a relay's queue id or another provider's id matches nothing."""
    if not provider_message_id:
        return None
    provider_message_id = str(provider_message_id).strip()
    candidates = _sent_by_provider().filter(provider_message_id=provider_message_id)[:10]
    found = [message for message in candidates if _sent_through(message, esp_name)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        logger.warning("%s event: provider message id %s names several messages", esp_name, provider_message_id)
        return None
    # Providers that keep the Message-ID we wrote report it as their id (Mailgun, SES).
    message_id = verp.message_id_from_headers({"Message-ID": provider_message_id})
    if message_id is None:
        return None
    message = _sent_by_provider().filter(pk=message_id).first()
    return message if message is not None and _sent_through(message, esp_name) else None


def _event_key(event: AnymailTrackingEvent, esp_name: str) -> str:
    if event.event_id:
        return reports.dedupe_key("webhook", esp_name.lower(), str(event.event_id))
    # Some events carry no id (Postmark's opens and deliveries): the event itself is its identity.
    body = json.dumps(event.esp_event, sort_keys=True, default=str) if event.esp_event is not None else ""
    identity = f"{event.event_type}\n{event.message_id}\n{event.recipient}\n{event.timestamp}\n{body}"
    return reports.dedupe_key("webhook", esp_name.lower(), hashlib.sha256(identity.encode()).hexdigest())


def _bounce_class(event: AnymailTrackingEvent, esp_name: str, diagnostic: str) -> tuple[str, str]:
    esp_type = event.esp_event.get("Type") if isinstance(event.esp_event, dict) else None
    classification, reason = classify_status(diagnostic=diagnostic)
    if (esp_name, esp_type) in SOFT_BOUNCE_TYPES:
        return Classification.SOFT, reason
    # The provider says the receiving server refused the address for good.
    return reports.permanent_failure_class(classification, reason), reason


def tracking_event_apply(*, event: AnymailTrackingEvent, esp_name: str) -> str:
    """Apply one normalized tracking event; returns what was done (for logs and tests)."""
    event_type = event.event_type
    message = event_message(esp_name=esp_name, provider_message_id=event.message_id)
    if message is None:
        logger.info("%s %s event for unknown message %r ignored", esp_name, event_type, event.message_id)
        return "unknown message"
    key = _event_key(event, esp_name)
    diagnostic = " ".join(part for part in (event.mta_response, event.description) if part)

    if event_type in (EventType.OPENED, EventType.CLICKED):
        user_agent = event.user_agent or ""
        occurred_at = event.timestamp or timezone.now()
        # Without a user agent there is nothing to judge by: the provider's event is taken as is.
        reason = (
            machine_reason(user_agent=user_agent, ip=None, sent_at=message.sent_at, occurred_at=occurred_at)
            if user_agent
            else ""
        )
        recorded = reports.event_once(
            message=message,
            contact=message.contact,
            type=Event.Type.OPEN if event_type == EventType.OPENED else Event.Type.CLICK,
            dedupe_key=key,
            occurred_at=occurred_at,
            user_agent=user_agent,
            url=event.click_url or "",
            is_machine=bool(reason),
            machine_reason=reason,
            detail=f"reported by {esp_name}",
        )
        return event_type if recorded else "duplicate"

    if event_type == EventType.DELIVERED:
        recorded = reports.event_once(
            message=message,
            contact=message.contact,
            type=Event.Type.DELIVERED,
            dedupe_key=f"{Event.Type.DELIVERED}:message:{message.pk}",
            occurred_at=event.timestamp,
            detail=f"reported by {esp_name}: {diagnostic}".rstrip(": "),
        )
        return event_type if recorded else "duplicate"

    reason = ""
    if event_type == EventType.BOUNCED:
        classification, reason = _bounce_class(event, esp_name, diagnostic)
    elif event_type == EventType.DEFERRED:
        if not reports.is_mailbox_state(diagnostic):
            return "deferred: not counted"
        classification, reason = Classification.SOFT, classify_status(diagnostic=diagnostic)[1]
        if reason not in reports.SOFT_REASONS_ABOUT_THE_ADDRESS:
            reason = "mailboxfull"  # what is_mailbox_state found in the text
    elif event_type == EventType.REJECTED:
        classification = REJECTED_CLASSES.get(event.reject_reason, Classification.NOT_BOUNCE)
        reason = f"rejected by provider: {event.reject_reason or 'other'}"
    elif event_type == EventType.COMPLAINED:
        classification = Classification.COMPLAINT
    elif event_type == EventType.UNSUBSCRIBED:
        classification = Classification.UNSUBSCRIBE
    elif event_type == EventType.AUTORESPONDED:
        classification = Classification.AUTO_REPLY
    else:
        return f"{event_type}: nothing to do"

    status, reply = "", ""
    if diagnostic:
        reply, status = reports.reply_codes(diagnostic)
    applied = reports.bounce_report_apply(
        message=message,
        source=BounceReport.Source.WEBHOOK,
        classification=classification,
        dedupe_key=key,
        status=status,
        reply=reply,
        reason=reason,
        diagnostic=f"{esp_name}: {diagnostic}" if diagnostic else esp_name,
        occurred_at=event.timestamp,
    )
    return classification if applied.applied else "duplicate"


def tracking_received(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    """anymail.signals.tracking receiver."""
    outcome = tracking_event_apply(event=event, esp_name=esp_name)
    logger.info("%s webhook %s (%s): %s", esp_name, event.event_type, event.event_id or "no id", outcome)


def inbound_received(sender: Any, event: AnymailInboundEvent, esp_name: str, **kwargs: Any) -> None:
    """anymail.signals.inbound receiver: mail for the bounce domain received by a provider."""
    message = event.message
    if message is None:
        return
    recipients = [message.envelope_recipient] if message.envelope_recipient else [to.addr_spec for to in message.to]
    if not any(map(receiver.recipient_accepted, (address.strip("<>") for address in recipients))):
        logger.info("%s inbound mail to %s is not for the bounce domain: ignored", esp_name, recipients)
        return
    received = receiver.report_receive(raw=message.as_bytes(), envelope_recipients=recipients)
    logger.info("%s inbound report: %s", esp_name, received.summary())


def webhook_secret_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Deployment check: without a secret, anymail's webhooks take posts from anyone, and a
    forged complaint or bounce would unsubscribe real people."""
    # Only where a provider is the configured route; organizations' own provider routes are
    # documented to need it (a check cannot see them without a database).
    if settings.EMAIL.kind != "anymail" or getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET"):
        return []
    return [
        CheckWarning(
            "ANYMAIL_WEBHOOK_SECRET is not set: provider webhooks under /webhooks/anymail/ accept posts from anyone.",
            hint='Set ANYMAIL_WEBHOOK_SECRET to a "user:password" pair and put it in the webhook URLs at the provider.',
            id="deliverability.W001",
        )
    ]
