from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from emailseq.http import client_ip
from organizations.models import ApiKey


class CallerRateThrottle(SimpleRateThrottle):
    """One budget per API key, one per user, one per client address for anonymous calls.

    Over budget, DRF answers 429 with Retry-After (as a problem, see problems.py).
    """

    @property
    def THROTTLE_RATES(self) -> dict[str, str | None]:
        # DRF copies the rates into the class when it is defined; read them per request instead,
        # so that changed settings apply (the name in capitals is the one DRF reads).
        return api_settings.DEFAULT_THROTTLE_RATES

    def __init__(self) -> None:
        # The scope (and so the rate) depends on who calls: chosen per request.
        pass

    def allow_request(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, ApiKey):
            self.scope, ident = "api_key", str(request.auth.pk)
        elif request.user and request.user.is_authenticated:
            self.scope, ident = "user", str(request.user.pk)
        else:
            self.scope, ident = "anonymous", client_ip(request._request) or "unknown"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.cache_format % {"scope": self.scope, "ident": ident}
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.key
