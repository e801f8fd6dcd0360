from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.tenancy import TenantModel


class SendingDomain(TenantModel):
    """A domain an organization sends from: its DKIM keys and what DNS said about it last."""

    domain = models.CharField(max_length=253, help_text="Lower-case, IDNA-encoded.")
    dkim_selector_rsa = models.CharField(max_length=63)
    dkim_private_key_rsa = models.TextField(help_text="PEM, RSA 2048.")
    dkim_public_key_rsa = models.TextField(help_text="Base64 of the DER public key, as published in DNS.")
    dkim_selector_ed25519 = models.CharField(max_length=63)
    dkim_private_key_ed25519 = models.TextField(help_text="Base64 of the 32-byte seed.")
    dkim_public_key_ed25519 = models.TextField(help_text="Base64 of the 32-byte public key, as published in DNS.")
    # Set when SPF, both DKIM keys and DMARC were found aligned; cleared when a check fails.
    verified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    check_results = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "domain"], name="sending_domain_unique_per_org"),
        ]

    def __str__(self) -> str:
        return self.domain

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None


class BounceReport(TenantModel):
    """A delivery report about one recipient of one of our messages, as received and classified:
    a DSN or ARF report at the bounce receiver, a provider webhook, or a refusal during sending."""

    class Source(models.TextChoices):
        INBOUND = "inbound", "Bounce receiver (SMTP)"
        WEBHOOK = "webhook", "Provider webhook"
        SMTP_REPLY = "smtp_reply", "Refused while sending"

    class Classification(models.TextChoices):
        HARD = "hard", "Hard bounce"
        SOFT = "soft", "Soft bounce"
        COMPLAINT = "complaint", "Complaint"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribe request"
        AUTO_REPLY = "auto_reply", "Auto-reply"
        DELIVERED = "delivered", "Delivered"
        NOT_BOUNCE = "not_bounce", "Not a bounce"

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(
        "delivery.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="bounce_reports"
    )
    contact = models.ForeignKey(
        "subscribers.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="bounce_reports"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    classification = models.CharField(max_length=16, choices=Classification.choices)
    recipient_hash = models.CharField(max_length=64, help_text="SHA-256 of the normalized failed address.")
    status = models.CharField(max_length=16, blank=True, help_text="Enhanced status code (RFC 3463).")
    reply = models.CharField(max_length=8, blank=True, help_text="SMTP reply code.")
    reason = models.CharField(max_length=64, blank=True)
    diagnostic = models.TextField(blank=True)
    # The same report received twice (a retried delivery, a replayed webhook) is applied once.
    dedupe_key = models.CharField(max_length=255)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "dedupe_key"], name="bounce_report_applied_once"),
            models.CheckConstraint(
                condition=Q(source__in=["inbound", "webhook", "smtp_reply"]), name="bounce_report_source_is_known"
            ),
            models.CheckConstraint(
                condition=Q(
                    classification__in=[
                        "hard",
                        "soft",
                        "complaint",
                        "unsubscribe",
                        "auto_reply",
                        "delivered",
                        "not_bounce",
                    ]
                ),
                name="bounce_report_class_is_known",
            ),
        ]
        indexes = [
            # Soft bounces of an address within the window.
            models.Index(
                fields=["organization", "recipient_hash", "received_at"],
                condition=Q(classification="soft"),
                name="bounce_report_soft_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.classification} {self.status or self.reply} ({self.source})"
