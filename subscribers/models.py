from __future__ import annotations

from django.db import models

from organizations.models import validate_timezone
from organizations.tenancy import TenantModel


class ContactList(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="list_name_unique_per_org")]

    def __str__(self) -> str:
        return self.name


class Tag(TenantModel):
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="tag_name_unique_per_org")]

    def __str__(self) -> str:
        return self.name


class Contact(TenantModel):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"

    email = models.EmailField(max_length=254, help_text="Stored normalized: trimmed, lower-case, ASCII domain.")
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    properties = models.JSONField(default=dict, blank=True, help_text="Custom fields, available to templates.")
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="IANA time zone; empty means the organization's.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    consent_source = models.CharField(max_length=200, blank=True, help_text="Where consent was given.")
    consented_at = models.DateTimeField(null=True, blank=True)
    consent_ip = models.GenericIPAddressField(null=True, blank=True)
    lists = models.ManyToManyField(ContactList, blank=True, related_name="contacts")
    tags = models.ManyToManyField(Tag, blank=True, related_name="contacts")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "email"], name="contact_email_unique_per_org"),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "unsubscribed", "bounced", "complained"]),
                name="contact_status_is_known",
            ),
        ]
        indexes = [models.Index(fields=["organization", "status"], name="contact_org_status_idx")]

    def __str__(self) -> str:
        return self.email

    @property
    def is_mailable(self) -> bool:
        return self.status == self.Status.ACTIVE


class Suppression(TenantModel):
    """An address the organization must not mail. Outlives the contact: it keeps only a hash."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Hard bounce"
        COMPLAINED = "complained", "Spam complaint"
        MANUAL = "manual", "Added by staff"
        ERASED = "erased", "Personal data erased"

    email_hash = models.CharField(max_length=64, help_text="SHA-256 of the normalized address.")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "email_hash"], name="one_suppression_per_address_and_org"),
            models.CheckConstraint(
                condition=models.Q(reason__in=["unsubscribed", "bounced", "complained", "manual", "erased"]),
                name="suppression_reason_is_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email_hash[:12]}… ({self.reason})"

    # Contact status that a suppressed address takes when it is (re)created.
    CONTACT_STATUS_BY_REASON = {
        Reason.UNSUBSCRIBED: Contact.Status.UNSUBSCRIBED,
        Reason.BOUNCED: Contact.Status.BOUNCED,
        Reason.COMPLAINED: Contact.Status.COMPLAINED,
        Reason.MANUAL: Contact.Status.UNSUBSCRIBED,
        Reason.ERASED: Contact.Status.UNSUBSCRIBED,
    }
