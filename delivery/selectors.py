"""Reads on messages and events: what a sequence's mail did, and templates rendered as mail.

sequence_analytics counts, per email step and for the whole sequence (every count is of
distinct messages, so a person who opens one email ten times counts once):

- reached: messages written for the step: one per enrollment that got there, whatever became
  of it.
- queued: not handed to the route yet (queued, or being sent right now).
- sent: handed to the route and answered for: accepted (status sent) or refused for the address
  (status bounced).
- bounced: sent messages that bounced, at once (the server refused the address) or later (a
  bounce event for a message the server had accepted).
- delivered: sent minus bounced.
- failed: refused for the message itself (policy, content), failed to render, or out of
  attempts. cancelled: never sent, because the contact or the sequence stopped first.
- opened: messages with at least one open or click by a person. A click counts as an open
  because images are often blocked; this is the rule the "opened" condition of a step uses.
- machine_opens: messages opened or clicked only by machines (link scanners, privacy proxies,
  prefetching), never by a person: opened + machine_opens = messages with any open at all.
- clicked: messages with at least one click by a person; machine_clicks: messages clicked only
  by machines.
- unsubscribed: messages whose unsubscribe link (or one-click header) was used.
- complained: messages reported as spam.

Totals include messages of steps since deleted. Enrollments are counted by status, and ended
ones by exit reason. Every number comes from three aggregate queries, whatever the volume.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from delivery.composer import ComposedMessage, Recipient, Skeleton
from delivery.models import Event, Message
from organizations.models import Organization
from sequences.models import EmailTemplate, Enrollment, Sequence, Step
from subscribers.models import Contact

# Analytics ------------------------------------------------------------------------------------

SENT_STATUSES = (Message.Status.SENT, Message.Status.BOUNCED)
OPEN_TYPES = (Event.Type.OPEN, Event.Type.CLICK)


@dataclass
class MailCounts:
    reached: int = 0
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    failed: int = 0
    cancelled: int = 0
    opened: int = 0
    machine_opens: int = 0
    clicked: int = 0
    machine_clicks: int = 0
    unsubscribed: int = 0
    complained: int = 0

    def add(self, other: MailCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class StepAnalytics:
    step: Step
    position: int
    counts: MailCounts


@dataclass
class EnrollmentCounts:
    enrolled: int = 0
    active: int = 0
    completed: int = 0
    exited: int = 0
    failed: int = 0
    exited_by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Enrollment.ExitReason.values, 0))
    failed_by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Enrollment.ExitReason.values, 0))


@dataclass
class SequenceAnalytics:
    sequence: Sequence
    enrollments: EnrollmentCounts
    totals: MailCounts
    steps: list[StepAnalytics]


def _mail_counts_by_step(sequence: Sequence) -> dict[int | None, MailCounts]:
    messages = (
        Message.objects.for_org(sequence.organization_id)
        .filter(sequence_id=sequence.pk)
        .values("step_id")
        .annotate(
            reached=Count("id"),
            queued=Count("id", filter=Q(status__in=(Message.Status.QUEUED, Message.Status.SENDING))),
            sent=Count("id", filter=Q(status__in=SENT_STATUSES)),
            bounced_at_once=Count("id", filter=Q(status=Message.Status.BOUNCED)),
            failed=Count("id", filter=Q(status=Message.Status.FAILED)),
            cancelled=Count("id", filter=Q(status=Message.Status.CANCELLED)),
        )
        .order_by()
    )
    events = (
        Event.objects.for_org(sequence.organization_id)
        .filter(message__sequence_id=sequence.pk)
        .values("message__step_id")
        .annotate(
            opened=Count("message_id", distinct=True, filter=Q(type__in=OPEN_TYPES, is_machine=False)),
            any_open=Count("message_id", distinct=True, filter=Q(type__in=OPEN_TYPES)),
            clicked=Count("message_id", distinct=True, filter=Q(type=Event.Type.CLICK, is_machine=False)),
            any_click=Count("message_id", distinct=True, filter=Q(type=Event.Type.CLICK)),
            unsubscribed=Count("message_id", distinct=True, filter=Q(type=Event.Type.UNSUBSCRIBE)),
            complained=Count("message_id", distinct=True, filter=Q(type=Event.Type.COMPLAINT)),
            # Bounces reported after the server accepted the message (the others are counted
            # by status above).
            bounced_later=Count(
                "message_id", distinct=True, filter=Q(type=Event.Type.BOUNCE, message__status=Message.Status.SENT)
            ),
        )
        .order_by()
    )
    counts: dict[int | None, MailCounts] = {}
    for row in messages:
        counts[row["step_id"]] = MailCounts(
            reached=row["reached"],
            queued=row["queued"],
            sent=row["sent"],
            bounced=row["bounced_at_once"],
            failed=row["failed"],
            cancelled=row["cancelled"],
        )
    for row in events:
        step_counts = counts.setdefault(row["message__step_id"], MailCounts())
        step_counts.bounced += row["bounced_later"]
        step_counts.opened = row["opened"]
        step_counts.machine_opens = row["any_open"] - row["opened"]
        step_counts.clicked = row["clicked"]
        step_counts.machine_clicks = row["any_click"] - row["clicked"]
        step_counts.unsubscribed = row["unsubscribed"]
        step_counts.complained = row["complained"]
    for step_counts in counts.values():
        step_counts.delivered = step_counts.sent - step_counts.bounced
    return counts


def _enrollment_counts(sequence: Sequence) -> EnrollmentCounts:
    result = EnrollmentCounts()
    rows = (
        Enrollment.objects.for_org(sequence.organization_id)
        .filter(sequence_id=sequence.pk)
        .values("status", "exit_reason")
        .annotate(count=Count("id"))
        .order_by()
    )
    for row in rows:
        status, reason, count = row["status"], row["exit_reason"], row["count"]
        result.enrolled += count
        setattr(result, status, getattr(result, status) + count)
        by_reason = {
            Enrollment.Status.EXITED: result.exited_by_reason,
            Enrollment.Status.FAILED: result.failed_by_reason,
        }
        if status in by_reason and reason in by_reason[status]:
            by_reason[status][reason] += count
    return result


def sequence_analytics(*, sequence: Sequence) -> SequenceAnalytics:
    """What the sequence's mail did, per email step and in total (see the module docstring)."""
    counts = _mail_counts_by_step(sequence)
    totals = MailCounts()
    for step_counts in counts.values():
        totals.add(step_counts)
    steps = [
        StepAnalytics(step=step, position=position, counts=counts.get(step.pk, MailCounts()))
        for position, step in enumerate(Step.objects.filter(sequence_id=sequence.pk).order_by("position"), start=1)
        if step.kind == Step.Kind.EMAIL
    ]
    return SequenceAnalytics(sequence=sequence, enrollments=_enrollment_counts(sequence), totals=totals, steps=steps)


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
