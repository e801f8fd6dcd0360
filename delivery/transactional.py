"""One-off messages that are not sequence steps: sign-up confirmations and the like.

They are composed as sequence mail is (delivery.composer.ComposedMessage, so whatever the
composer adds to every message, such as a DKIM signature, they get too) and handed to the route
the organization's mail takes. No Message row, no tracking, no List-Unsubscribe: a person asked
for this one email, and ignoring it is how they decline.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from email.utils import format_datetime, formataddr

from django.conf import settings
from django.utils import timezone

from deliverability.dkim import signer_for
from delivery.composer import ComposedMessage
from delivery.routing import RoutePlan
from delivery.transports import SendResult, TransportUnavailable, open_transport
from organizations.models import Organization
from subscribers.addresses import ascii_address


def transactional_sender(organization: Organization) -> tuple[str, str]:
    """(display name, address) of the organization's transactional mail."""
    return organization.name, settings.TRANSACTIONAL_FROM_EMAIL or settings.DEFAULT_FROM_EMAIL


def transactional_send(
    *,
    organization: Organization,
    to: str,
    subject: str,
    text: str,
    html: str,
    headers: Iterable[tuple[str, str]] = (),
) -> SendResult:
    """Compose one message and send it now, by the organization's routes in order (failing over
    as sequence mail does); the route's answer comes back as the result.

    Raises delivery.transports.TransportUnavailable when no route can take it now. A route's
    per-second and daily limits are not waited for: this is one message a person is waiting for.
    """
    from_name, from_email = transactional_sender(organization)
    from_email = ascii_address(from_email)
    from_name = " ".join(from_name.split())  # no line breaks: they would inject headers
    message_id = f"<t.{secrets.token_hex(12)}@{settings.MESSAGE_ID_DOMAIN}>"
    extra = [
        ("Date", format_datetime(timezone.now())),
        ("Message-ID", message_id),
        # RFC 3834: sent by a program on a person's request; auto-responders must not answer.
        ("Auto-Submitted", "auto-generated"),
        *((name, " ".join(value.split())) for name, value in headers),
    ]
    composed = ComposedMessage(
        envelope_from=from_email,
        recipient=ascii_address(to),
        from_header=formataddr((from_name, from_email), charset="utf-8") if from_name else from_email,
        subject=" ".join(subject.split()),
        text=text,
        html=html,
        extra_headers=extra,
        links=[],
        message_id_header=message_id,
        # Signed for the sender's domain when it is one of the organization's sending domains.
        dkim_signer=signer_for(organization_id=organization.pk, from_email=from_email),
    )
    return _send_by_routes(composed, organization)


def _send_by_routes(composed: ComposedMessage, organization: Organization) -> SendResult:
    plan = RoutePlan.load(organization.pk)
    failure: TransportUnavailable | None = None
    while (target := plan.next_target(timezone.now())) is not None:
        try:
            with open_transport(target.config) as transport:
                result = transport.send(composed, organization_id=organization.pk)
        except TransportUnavailable as error:
            if error.maybe_delivered:
                raise  # sent again elsewhere, it could arrive twice
            plan.failed(target, error, throttled=error.throttled, now=timezone.now())
            failure = error
            continue
        plan.succeeded(target, timezone.now())
        return result
    raise failure or TransportUnavailable("no delivery route can take mail now")
