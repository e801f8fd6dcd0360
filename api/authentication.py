"""Who is calling: an organization API key, a user's JWT, or a browser session."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from organizations.models import ApiKey
from organizations.services import api_key_verify


class ApiKeyCaller:
    """Stands in for request.user when an organization key calls: it belongs to no person."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix}"

    def get_username(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "api-key"

    def authenticate(self, request: Request) -> tuple[ApiKeyCaller, ApiKey] | None:
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        try:
            scheme, _, credentials = header.decode("ascii").partition(" ")
        except UnicodeDecodeError:
            return None
        if scheme.lower() != self.keyword:
            return None
        api_key = api_key_verify(raw=credentials.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("This API key is unknown or has been revoked.")
        return ApiKeyCaller(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Api-Key realm="api"'


def caller_identity(request: Any) -> str:
    """A stable name for the caller: "key:<id>" or "user:<id>"."""
    if isinstance(request.auth, ApiKey):
        return f"key:{request.auth.pk}"
    return f"user:{request.user.pk}"
