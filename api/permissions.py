"""Which organization a request acts in, and whether the caller's role allows the operation.

Roles form a ladder: viewer reads; marketer also writes content and contacts; admin also
manages keys and members; owner also deletes the organization. A read key acts as a viewer, a
write key as a marketer; keys never manage keys or members.
"""

from __future__ import annotations

import enum
from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from organizations.models import ApiKey, Membership, Organization


class Access(enum.IntEnum):
    READ = 1
    WRITE = 2
    MANAGE = 3
    OWN = 4


ROLE_ACCESS = {
    Membership.Role.VIEWER: Access.READ,
    Membership.Role.MARKETER: Access.WRITE,
    Membership.Role.ADMIN: Access.MANAGE,
    Membership.Role.OWNER: Access.OWN,
}
KEY_ACCESS = {ApiKey.Scope.READ: Access.READ, ApiKey.Scope.WRITE: Access.WRITE}
ACCESS_NAMES = {
    Access.READ: "viewer (or a read key)",
    Access.WRITE: "marketer (or a write key)",
    Access.MANAGE: "admin",
    Access.OWN: "owner",
}
ORGANIZATION_HEADER = "X-Organization"


def _membership(request: Request) -> Membership:
    memberships = Membership.objects.filter(user_id=request.user.pk).select_related("organization")
    wanted = request.headers.get(ORGANIZATION_HEADER, "").strip()
    if wanted:
        lookup = {"organization__slug": wanted}
        if wanted.isdigit():
            lookup = {"organization_id": int(wanted)}
        membership = memberships.filter(**lookup).first()
        if membership is None:
            raise exceptions.NotFound(f"You are not a member of an organization {wanted!r}.")
        return membership
    found = list(memberships[:2])
    if not found:
        raise exceptions.PermissionDenied("You are not a member of any organization.")
    if len(found) > 1:
        raise exceptions.ValidationError(
            {ORGANIZATION_HEADER: "You belong to several organizations: name one in this header (slug or id)."}
        )
    return found[0]


def resolve_caller(request: Request) -> tuple[Organization, Access]:
    """The organization the request acts in and the access its caller has there (cached)."""
    cached = getattr(request, "_emailseq_caller", None)
    if cached is not None:
        return cached
    if isinstance(request.auth, ApiKey):
        resolved = (request.auth.organization, KEY_ACCESS[request.auth.scope])
    else:
        membership = _membership(request)
        resolved = (membership.organization, ROLE_ACCESS[membership.role])
    request._emailseq_caller = resolved
    return resolved


class RolePermission(permissions.BasePermission):
    """Checks the view's `required_access` (a dict of HTTP method to Access).

    Without one, reads need READ and every other method WRITE.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        _, access = resolve_caller(request)
        needed = required_access(view, request.method)
        if access < needed:
            raise exceptions.PermissionDenied(f"This operation needs the role {ACCESS_NAMES[needed]} or above.")
        return True


def required_access(view: Any, method: str) -> Access:
    declared = getattr(view, "required_access", None) or {}
    if method in declared:
        return declared[method]
    if method in permissions.SAFE_METHODS:
        return Access.READ
    return Access.WRITE
