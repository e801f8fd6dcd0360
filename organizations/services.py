from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.text import slugify

from organizations.models import Membership, Organization


@transaction.atomic
def organization_create(
    *,
    name: str,
    slug: str = "",
    postal_address: str = "",
    timezone: str = "UTC",
    owner: AbstractBaseUser | None = None,
) -> Organization:
    organization = Organization(name=name, slug=slug or slugify(name), postal_address=postal_address, timezone=timezone)
    organization.full_clean()
    organization.save()
    if owner is not None:
        membership_create(organization=organization, user=owner, role=Membership.Role.OWNER)
    return organization


def membership_create(*, organization: Organization, user: AbstractBaseUser, role: str) -> Membership:
    membership = Membership(organization=organization, user=user, role=role)
    membership.full_clean()
    membership.save()
    return membership
