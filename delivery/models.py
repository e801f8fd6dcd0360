from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.tenancy import TenantModel


class Message(TenantModel):
    """One email to one contact for one step of one enrollment.

    Written by the engine before anything is sent, then claimed by a send task, which records
    the outcome. The row, not the broker, decides whether a message still needs sending.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        BOUNCED = "bounced", "Bounced"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    id = models.BigAutoField(primary_key=True)
    # No index of its own on enrollment or sequence: the unique (enrollment, step) and the
    # (sequence, status) indexes lead with them, and every index costs each of the three writes
    # a message gets on the hot path.
    enrollment = models.ForeignKey(
        "sequences.Enrollment", on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    # Kept when the step is deleted later: the message stays in the contact's history.
    step = models.ForeignKey("sequences.Step", null=True, on_delete=models.SET_NULL, related_name="messages")
    sequence = models.ForeignKey(
        "sequences.Sequence", on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    contact = models.ForeignKey("subscribers.Contact", on_delete=models.CASCADE, related_name="messages")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When a queued message should next be handed to a worker (retry backoff, or re-dispatch
    # if the broker lost it); null while its sequence is paused.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker holds a sending message until then; after it, the message is released again.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    recipient = models.EmailField(max_length=254, blank=True)
    message_id_header = models.CharField(max_length=255, blank=True)
    # The original URLs of the message's tracked links, in order: click tokens carry an index.
    links = models.JSONField(default=list, blank=True)
    response = models.TextField(blank=True, help_text="The receiving server's answer, or the error.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step"], name="one_message_per_enrollment_step"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "sending", "sent", "bounced", "failed", "cancelled"]),
                name="message_status_is_known",
            ),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="queued"), name="message_due_idx"),
            models.Index(fields=["lease_expires_at"], condition=Q(status="sending"), name="message_lease_idx"),
            models.Index(fields=["sequence", "status"], name="message_sequence_status_idx"),
        ]

    def __str__(self) -> str:
        return f"message {self.pk} to {self.recipient or self.contact_id} ({self.status})"


class Event(TenantModel):
    """Something a recipient (or a machine on their behalf) did with a message."""

    class Type(models.TextChoices):
        OPEN = "open", "Opened"
        CLICK = "click", "Clicked"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
        BOUNCE = "bounce", "Bounced"
        COMPLAINT = "complaint", "Complained"

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    contact = models.ForeignKey("subscribers.Contact", on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=16, choices=Type.choices)
    occurred_at = models.DateTimeField()
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    url = models.TextField(blank=True)
    # Opens and clicks that look automated (link scanners, privacy proxies, prefetches):
    # counted apart, and never satisfy a sequence condition.
    is_machine = models.BooleanField(default=False)
    machine_reason = models.CharField(max_length=64, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(type__in=["open", "click", "unsubscribe", "bounce", "complaint"]),
                name="event_type_is_known",
            ),
        ]
        indexes = [
            models.Index(fields=["message", "type"], name="event_message_type_idx"),
            models.Index(fields=["contact", "occurred_at"], name="event_contact_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} by {self.contact_id} at {self.occurred_at:%Y-%m-%d %H:%M}"
