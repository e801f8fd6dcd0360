from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.tenancy import TenantModel


class DeliveryRoute(TenantModel):
    """A way out for an organization's mail: an SMTP relay or an ESP through django-anymail.

    Routes are tried in `priority` order (lowest first); a route whose circuit is open is skipped
    until its probe time. An organization without routes sends through EMAIL_URL.
    """

    class Kind(models.TextChoices):
        SMTP = "smtp", "SMTP relay"
        ANYMAIL = "anymail", "Email service provider (django-anymail)"
        CAPTURE = "capture", "Captured mailbox (local use)"

    class Circuit(models.TextChoices):
        CLOSED = "closed", "Closed: sending"
        OPEN = "open", "Open: skipped until the probe"
        HALF_OPEN = "half_open", "Half open: one probe in flight"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # An EMAIL_URL-style address: smtp://user:pass@host:port?security=starttls, anymail://ses?..., capture:///path
    url = models.CharField(max_length=1000)
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is tried first.")
    is_active = models.BooleanField(default=True)
    # Limits; null is "no limit".
    per_second = models.PositiveIntegerField(null=True, blank=True)
    per_hour = models.PositiveIntegerField(null=True, blank=True)
    per_day = models.PositiveIntegerField(null=True, blank=True)
    max_connections = models.PositiveSmallIntegerField(null=True, blank=True)
    # Warm-up: daily ceilings from warmup_started_at on, e.g. [50, 100, 250, 500, 1000]; empty is none.
    warmup_schedule = models.JSONField(default=list, blank=True)
    warmup_started_at = models.DateTimeField(null=True, blank=True)
    # Circuit breaker and throttling state, written by the send path.
    circuit = models.CharField(max_length=16, choices=Circuit.choices, default=Circuit.CLOSED)
    failures_in_a_row = models.PositiveIntegerField(default=0)
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    probe_at = models.DateTimeField(null=True, blank=True, help_text="When an open circuit lets one probe through.")
    throttled_until = models.DateTimeField(null=True, blank=True)
    rate_factor = models.FloatField(default=1.0, help_text="Share of the configured rate in use after throttling.")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="route_name_unique_per_org"),
            models.CheckConstraint(condition=Q(kind__in=["smtp", "anymail", "capture"]), name="route_kind_is_known"),
            models.CheckConstraint(
                condition=Q(circuit__in=["closed", "open", "half_open"]), name="route_circuit_is_known"
            ),
            models.CheckConstraint(
                condition=Q(rate_factor__gt=0) & Q(rate_factor__lte=1), name="route_rate_factor_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, priority {self.priority})"


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
    # The route that accepted it, and the provider's id for it (matches provider webhooks).
    # Not indexed: every send would write the index, and only deleting a route reads by it.
    route = models.ForeignKey(
        DeliveryRoute, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    provider_message_id = models.CharField(max_length=255, blank=True, db_default="")
    # The experiment variant this message carries (split steps only).
    variant = models.ForeignKey(
        "experiments.Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
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
            models.Index(
                fields=["provider_message_id"], condition=~Q(provider_message_id=""), name="message_provider_id_idx"
            ),
            # Frequency caps and the sunset policy count a contact's recent sends.
            models.Index(fields=["contact", "sent_at"], condition=Q(status="sent"), name="message_contact_sent_idx"),
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
        SOFT_BOUNCE = "soft_bounce", "Soft bounce"
        COMPLAINT = "complaint", "Complained"
        DELIVERED = "delivered", "Delivered"

    id = models.BigAutoField(primary_key=True)
    # Found through event_message_type_idx and event_contact_time_idx, which lead with them: an
    # index of their own would only make every insert dearer.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    contact = models.ForeignKey("subscribers.Contact", on_delete=models.CASCADE, related_name="events", db_index=False)
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
    # Set for events reported from outside (provider webhooks, DSNs): the same report twice is one event.
    dedupe_key = models.CharField(max_length=255, blank=True, db_default="")

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    type__in=["open", "click", "unsubscribe", "bounce", "soft_bounce", "complaint", "delivered"]
                ),
                name="event_type_is_known_v2",
            ),
            models.UniqueConstraint(
                fields=["organization", "dedupe_key"], condition=~Q(dedupe_key=""), name="event_reported_once"
            ),
        ]
        indexes = [
            models.Index(fields=["message", "type"], name="event_message_type_idx"),
            models.Index(fields=["contact", "occurred_at"], name="event_contact_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} by {self.contact_id} at {self.occurred_at:%Y-%m-%d %H:%M}"
