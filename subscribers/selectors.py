"""Reads on contacts, lists, tags and their history, always within one organization."""

from __future__ import annotations

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from organizations.models import Organization
from subscribers.models import Tag


def tag_list(*, organization: Organization) -> QuerySet[Tag]:
    return Tag.objects.for_org(organization).annotate(contact_count=Count("contacts"))


def tag_get(*, organization: Organization, tag_id: int) -> Tag:
    return get_object_or_404(tag_list(organization=organization), pk=tag_id)
