from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from organizations.tenancy import TenantModel


def validate_timezone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known IANA time zone (for example Europe/Paris).")


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    postal_address = models.TextField(
        blank=True, help_text="Printed in the footer of every email (CAN-SPAM, CASL, GDPR)."
    )
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="Used for contacts whose own time zone is unknown.",
    )
    # Deliverability policies (issue 4). Null caps and sunset mean "no limit".
    frequency_cap_daily = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="At most this many marketing emails per contact per day (contact's day)."
    )
    frequency_cap_weekly = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="At most this many marketing emails per contact in any 7 days."
    )
    sunset_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Stop marketing mail to contacts with no human open or click in this many days.",
    )
    soft_bounce_limit = models.PositiveSmallIntegerField(
        default=3, help_text="Soft bounces within the window after which an address is suppressed."
    )
    soft_bounce_window_days = models.PositiveSmallIntegerField(default=14)
    double_opt_in = models.BooleanField(
        default=True, help_text="Public sign-ups must confirm by email before they get any sequence mail."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(soft_bounce_limit__gte=1) & models.Q(soft_bounce_window_days__gte=1),
                name="organization_soft_bounce_policy_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(frequency_cap_daily__isnull=True) | models.Q(frequency_cap_daily__gte=1),
                name="organization_daily_cap_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(frequency_cap_weekly__isnull=True) | models.Q(frequency_cap_weekly__gte=1),
                name="organization_weekly_cap_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(sunset_days__isnull=True) | models.Q(sunset_days__gte=1),
                name="organization_sunset_days_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MARKETER = "marketer", "Marketer"
        VIEWER = "viewer", "Viewer"

    # Roles allowed to create and change the organization's marketing data.
    EDITING_ROLES = (Role.OWNER, Role.ADMIN, Role.MARKETER)
    # Roles allowed to manage the organization itself and its members.
    MANAGING_ROLES = (Role.OWNER, Role.ADMIN)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MARKETER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_user_and_org"),
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "admin", "marketer", "viewer"]),
                name="membership_role_is_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class ApiKey(TenantModel):
    """A credential an integrator's system uses for one organization.

    The secret is shown once, when the key is made; only its SHA-256 is kept. The prefix stays
    visible so people can tell their keys apart and find one in logs.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Read and write"

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(scope__in=["read", "write"]), name="api_key_scope_is_known"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
