"""Reads on messages: templates rendered as mail, as a send would render them.

A sequence's analytics are read from rollups by analytics.selectors.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from delivery.composer import ComposedMessage, Recipient, Skeleton
from organizations.models import Organization
from sequences.models import EmailTemplate, Sequence
from subscribers.models import Contact

# Templates rendered as mail ------------------------------------------------------------------


@dataclass(frozen=True)
class SampleContact:
    """The contact a template is rendered for in a preview or a test email."""

    email: str = ""
    first_name: str = ""
    last_name: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    timezone: str = ""

    @classmethod
    def of(cls, contact: Contact) -> SampleContact:
        return cls(
            email=contact.email,
            first_name=contact.first_name,
            last_name=contact.last_name,
            properties=contact.properties or {},
            timezone=contact.timezone,
        )


@dataclass(frozen=True)
class Sender:
    email: str
    name: str = ""
    reply_to: str = ""


def template_sender(*, template: EmailTemplate, sequence: Sequence | None = None) -> Sender:
    """Who a test of the template is from: the given sequence's sender, else that of the first
    sequence using the template, else the system's address."""
    if sequence is None:
        sequence = (
            Sequence.objects.for_org(template.organization_id).filter(steps__template=template).order_by("id").first()
        )
    if sequence is None:
        return Sender(email=settings.DEFAULT_FROM_EMAIL)
    return Sender(email=sequence.from_email, name=sequence.from_name, reply_to=sequence.reply_to)


def template_compose(
    *,
    template: EmailTemplate,
    organization: Organization,
    contact: SampleContact,
    sender: Sender,
    to: str = "",
    subject_prefix: str = "",
) -> ComposedMessage:
    """The template rendered for `contact` as a real send renders it (same skeleton, footer and
    headers), but never tracked: links keep their targets, there is no open pixel, and the
    unsubscribe links name message 0 and contact 0, so nothing done with a preview or a test
    email can touch a real contact. Raises personalization.RenderError."""
    skeleton = Skeleton(
        subject=template.subject,
        html_body=template.html_body,
        text_body=template.text_body,
        from_name=sender.name,
        from_email=sender.email,
        reply_to=sender.reply_to,
        track_opens=False,
        track_clicks=False,
        organization_id=organization.pk,
        organization_name=organization.name,
        postal_address=organization.postal_address,
        sequence_id=0,
    )
    recipient = Recipient(
        message_id=0,
        contact_id=0,
        email=contact.email,
        first_name=contact.first_name,
        last_name=contact.last_name,
        properties=contact.properties,
        timezone=contact.timezone,
    )
    composed = skeleton.compose(recipient, date_header=format_datetime(timezone.now()))
    # Every real message has its own Message-ID; tests of one template must too, or mailbox
    # providers that drop duplicates would show only the first.
    message_id_header = f"<test.{secrets.token_hex(12)}@{settings.MESSAGE_ID_DOMAIN}>"
    headers = [(name, message_id_header if name == "Message-ID" else value) for name, value in composed.extra_headers]
    return dataclasses.replace(
        composed,
        recipient=to or composed.recipient,
        subject=subject_prefix + composed.subject,
        extra_headers=headers,
        message_id_header=message_id_header,
    )
