"""Reads on an organization's keys and members, always within that organization."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from organizations.models import ApiKey, Membership, Organization


def api_key_list(*, organization: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.for_org(organization).select_related("created_by")


def api_key_get(*, organization: Organization, api_key_id: int) -> ApiKey:
    return get_object_or_404(api_key_list(organization=organization), pk=api_key_id)


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user", "organization")


def membership_get(*, organization: Organization, membership_id: int) -> Membership:
    return get_object_or_404(membership_list(organization=organization), pk=membership_id)


def organizations_named(*, name: str) -> list[Organization]:
    """The organization whose slug is `name`, or else those whose name is `name` (any case)."""
    by_slug = Organization.objects.filter(slug=name).first()
    if by_slug is not None:
        return [by_slug]
    return list(Organization.objects.filter(name__iexact=name)[:2])
