"""Who opens a WebSocket: a browser session (channels' AuthMiddlewareStack), or a token.

A token is an organization API key (`esk_...`, whose organization is fixed by the key) or a
user's JWT access token (the one the API takes as `Authorization: Bearer`). It may come as:

- a header: `Authorization: Bearer <token>` or `Authorization: Api-Key <key>`;
- a subprotocol, for browsers, which cannot set headers on a WebSocket:
  `new WebSocket(url, ["emailseq", "token.<token>"])` (the server answers "emailseq");
- a query parameter, `?token=<token>`, where nothing else is possible (it may end up in logs).

TokenAuthMiddleware puts the caller in the scope: `scope["user"]` (the JWT's user, or an
ApiKeyCaller) and `scope["api_key"]` for a key. A token that does not verify sets
`scope["token_refused"]`, and the consumer closes with 4401; it never falls back to the session.

Origins: a page of another site could open a socket that rides on the visitor's session cookie,
so a connection must come from one of ALLOWED_HOSTS, as channels' AllowedHostsOriginValidator
checks. Browsers always send Origin; a client without one (a server, a script) is let through
only when it presents a token, which another site's page cannot know.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser

from api.authentication import ApiKeyCaller
from organizations.services import API_KEY_PREFIX, api_key_verify

SUBPROTOCOL = "emailseq"
TOKEN_SUBPROTOCOL_PREFIX = "token."
AUTHORIZATION_SCHEMES = ("bearer", "api-key")


def presented_token(scope: dict[str, Any]) -> str | None:
    """The token a connection presents (header, then subprotocol, then query), or None."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() in AUTHORIZATION_SCHEMES and credentials.strip():
                return credentials.strip()
    for subprotocol in scope.get("subprotocols", []):
        if subprotocol.startswith(TOKEN_SUBPROTOCOL_PREFIX) and len(subprotocol) > len(TOKEN_SUBPROTOCOL_PREFIX):
            return subprotocol[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tokens = query.get("token")
    if tokens and tokens[0].strip():
        return tokens[0].strip()
    return None


def caller_for_token(token: str) -> dict[str, Any] | None:
    """The scope entries for a verified token, or None when it does not verify."""
    if token.startswith(f"{API_KEY_PREFIX}_"):
        api_key = api_key_verify(raw=token)
        if api_key is None:
            return None
        return {"user": ApiKeyCaller(api_key), "api_key": api_key}
    # Imported here: simplejwt reads the settings and the user model when imported.
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError

    authentication = JWTAuthentication()
    try:
        user = authentication.get_user(authentication.get_validated_token(token.encode()))
    except (InvalidToken, TokenError, AuthenticationFailed):
        return None
    if not user.is_active:
        return None
    return {"user": user, "api_key": None}


class TokenAuthMiddleware(BaseMiddleware):
    """Authenticates a token, if the connection presents one; inside AuthMiddlewareStack, so a
    token takes the place of the session user."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope.setdefault("api_key", None)
        token = presented_token(scope)
        if token is not None:
            caller = await database_sync_to_async(caller_for_token)(token)
            if caller is None:
                scope.update(user=AnonymousUser(), api_key=None, token_refused=True)
            else:
                scope.update(caller)
        return await self.inner(scope, receive, send)


class OriginValidator:
    """AllowedHostsOriginValidator, except that a client without an Origin header that presents
    a token passes (it is not a browser riding on a cookie)."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.validated = AllowedHostsOriginValidator(application)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        has_origin = any(name.lower() == b"origin" for name, _ in scope.get("headers", []))
        if not has_origin and presented_token(scope) is not None:
            return await self.application(scope, receive, send)
        return await self.validated(scope, receive, send)
