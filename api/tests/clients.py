"""API clients that authenticate the way integrators and users really do."""

from __future__ import annotations

from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from organizations.models import ApiKey, Membership, Organization
from organizations.services import api_key_create
from organizations.tests.factories import member


def key_client(organization: Organization, scope: str = ApiKey.Scope.WRITE) -> APIClient:
    """A client sending `Authorization: Api-Key <key>` for a new key of `organization`."""
    _, raw = api_key_create(organization=organization, name=f"{scope} key", scope=scope)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def user_client(user: object, organization: Organization | None = None) -> APIClient:
    """A client sending a real JWT for `user` (and X-Organization when given)."""
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"}
    if organization is not None:
        headers["HTTP_X_ORGANIZATION"] = organization.slug
    client.credentials(**headers)
    return client


def role_client(organization: Organization, role: str = Membership.Role.MARKETER) -> APIClient:
    """A client for a new member of `organization` with `role`."""
    return user_client(member(organization, role), organization)
