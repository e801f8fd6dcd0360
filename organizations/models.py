from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

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
