"""The building blocks that keep every domain row inside its organization.

Every domain model derives from TenantModel. Code that reads tenant data on behalf of a person
goes through `for_user` (admin, later the API and UI); code acting for one organization goes
through `for_org`. Nothing fetches tenant rows by bare primary key on a person's behalf.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from organizations.models import Organization


class TenantQuerySet(models.QuerySet):
    def for_org(self, organization: Organization | int) -> TenantQuerySet:
        organization_id = organization if isinstance(organization, int) else organization.pk
        return self.filter(organization_id=organization_id)

    def for_user(self, user: AbstractBaseUser | AnonymousUser, *, roles: Iterable[str] | None = None) -> TenantQuerySet:
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(organization_id__in=organization_ids_for_user(user, roles=roles))


class TenantModel(models.Model):
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


def organization_ids_for_user(
    user: AbstractBaseUser | AnonymousUser, *, roles: Iterable[str] | None = None
) -> list[int]:
    """Ids of the organizations the user belongs to, optionally only with one of `roles`."""
    from organizations.models import Membership  # the models module builds on this one

    if not user.is_authenticated or not user.is_active:
        return []
    memberships = Membership.objects.filter(user_id=user.pk)
    if roles is not None:
        memberships = memberships.filter(role__in=list(roles))
    return list(memberships.values_list("organization_id", flat=True))
