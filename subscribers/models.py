from __future__ import annotations

from django.conf import settings
from django.db import models

from organizations.models import validate_timezone
from organizations.tenancy import TenantModel


class ContactList(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_public = models.BooleanField(
        default=False, help_text="Offered as a topic on the preference page and on subscribe forms."
    )
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
        PENDING = "pending", "Awaiting confirmation"

    # Not indexed alone: contact_email_unique_per_org and contact_org_status_idx lead with it.
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
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
    # Chosen on the preference page: no marketing mail until then.
    paused_until = models.DateTimeField(null=True, blank=True)
    lists = models.ManyToManyField(ContactList, blank=True, related_name="contacts")
    tags = models.ManyToManyField(Tag, blank=True, related_name="contacts")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "email"], name="contact_email_unique_per_org"),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "unsubscribed", "bounced", "complained", "pending"]),
                name="contact_status_is_known_v2",
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


class ContactEvent(TenantModel):
    """Something a contact did, reported by an integrator's system ("purchased", "trial_started").

    Sequence conditions and goals of type "event" look these up by name.
    """

    id = models.BigAutoField(primary_key=True)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="custom_events")
    name = models.CharField(max_length=200)
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["contact", "name", "occurred_at"], name="contact_event_lookup_idx"),
            models.Index(fields=["organization", "name", "occurred_at"], name="contact_event_org_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} by {self.contact_id} at {self.occurred_at:%Y-%m-%d %H:%M}"


def import_upload_path(instance: ContactImport, filename: str) -> str:
    return f"imports/{instance.organization_id}/{instance.token}.csv"


class ContactImport(TenantModel):
    """A CSV of contacts being loaded in the background, in checkpointed chunks.

    Each chunk's contacts, rejected rows and the checkpoint (line and byte offset reached) are
    written in one transaction, so a worker that dies mid-import is replaced by one that resumes
    from the last checkpoint and writes nothing twice.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    class Existing(models.TextChoices):
        UPDATE = "update", "Update existing contacts"
        SKIP = "skip", "Leave existing contacts as they are"

    token = models.CharField(max_length=32, unique=True)
    file = models.FileField(upload_to=import_upload_path, max_length=255)
    filename = models.CharField(max_length=255, blank=True)
    file_size = models.BigIntegerField(default=0)
    # CSV column header -> contact field ("email", "first_name", "last_name", "timezone",
    # "tags", or "properties.<name>").
    mapping = models.JSONField(default=dict)
    contact_list = models.ForeignKey(
        ContactList, null=True, blank=True, on_delete=models.SET_NULL, related_name="imports"
    )
    existing = models.CharField(max_length=8, choices=Existing.choices, default=Existing.SKIP)
    consent_source = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Checkpoint: the data line and byte offset the next chunk starts from.
    line_number = models.PositiveIntegerField(default=1)
    byte_offset = models.BigIntegerField(default=0)
    rows_processed = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "completed", "failed"]),
                name="contact_import_status_is_known",
            ),
            models.CheckConstraint(
                condition=models.Q(existing__in=["update", "skip"]), name="contact_import_existing_is_known"
            ),
        ]
        indexes = [
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status__in=["queued", "running"]),
                name="contact_import_pending_idx",
            )
        ]

    def __str__(self) -> str:
        return f"import {self.filename or self.token} ({self.status})"


class ImportRejection(TenantModel):
    """One CSV row an import could not take, with the reason a person can act on."""

    id = models.BigAutoField(primary_key=True)
    contact_import = models.ForeignKey(ContactImport, on_delete=models.CASCADE, related_name="rejections")
    line = models.PositiveIntegerField(help_text="Line of the file, counting the header as line 1.")
    reason = models.CharField(max_length=500)
    raw = models.TextField(blank=True, help_text="The row as read, cut to 1,000 characters.")

    class Meta:
        ordering = ["contact_import", "line"]
        constraints = [
            models.UniqueConstraint(fields=["contact_import", "line"], name="one_rejection_per_import_line"),
        ]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class SubscribeForm(TenantModel):
    """A public sign-up form (hosted page, embeddable HTML, or JSON endpoint) of one organization."""

    name = models.CharField(max_length=200)
    token = models.CharField(max_length=64, unique=True, help_text="Public identifier in the form's URL.")
    contact_list = models.ForeignKey(
        ContactList, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscribe_forms"
    )
    consent_wording = models.TextField(
        help_text="The sentence shown next to the button; stored with each consent given through the form."
    )
    redirect_url = models.URLField(blank=True, help_text="Where the browser goes after signing up.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="subscribe_form_name_unique_per_org")
        ]

    def __str__(self) -> str:
        return self.name


class ConsentRecord(TenantModel):
    """One change of a person's consent: who, what, when, through what, from where, having read what.

    Append-only. Written by subscribers.services.consent_record (one) and consent_records_add
    (many), and set-based by the CSV import's PostgreSQL writer (subscribers.import_writers),
    which writes one per contact it creates in the chunk's own statement. Keeps the address's
    hash, so it survives erasure of the contact without personal data.
    """

    class Action(models.TextChoices):
        SUBSCRIBE = "subscribe", "Subscribed"
        CONFIRM = "confirm", "Confirmed (double opt-in)"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
        RESUBSCRIBE = "resubscribe", "Subscribed again"
        SUPPRESS = "suppress", "Suppressed"
        LIFT = "lift", "Suppression lifted"
        PREFERENCES = "preferences", "Changed preferences"
        ERASE = "erase", "Erased"

    id = models.BigAutoField(primary_key=True)
    # Not indexed alone: consent_address_idx and consent_contact_idx lead with organization and
    # contact, and an import writes a record per contact.
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="consent_records", db_index=False
    )
    email_hash = models.CharField(max_length=64, help_text="SHA-256 of the normalized address.")
    action = models.CharField(max_length=16, choices=Action.choices)
    source = models.CharField(max_length=200, help_text="Form, link, API, import, admin, bounce, complaint ...")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    wording = models.TextField(blank=True, help_text="What the person was shown when they acted.")
    detail = models.JSONField(default=dict, blank=True)
    # Mostly empty; only deleting a user reads by it.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    action__in=[
                        "subscribe",
                        "confirm",
                        "unsubscribe",
                        "resubscribe",
                        "suppress",
                        "lift",
                        "preferences",
                        "erase",
                    ]
                ),
                name="consent_action_is_known",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "email_hash", "occurred_at"], name="consent_address_idx"),
            models.Index(fields=["contact", "occurred_at"], name="consent_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} ({self.source}) at {self.occurred_at:%Y-%m-%d %H:%M}"
