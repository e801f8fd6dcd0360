"""Facts about an incoming request that more than one app needs."""

from __future__ import annotations

import contextlib
import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind our proxy (BEHIND_PROXY) the address the
    proxy saw. That is the rightmost X-Forwarded-For entry; the ones left of it come from the
    client and can be forged."""
    ip = request.META.get("REMOTE_ADDR") or None
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        # Absent, or not an address ("unknown", a hostname): keep REMOTE_ADDR.
        with contextlib.suppress(ValueError):
            ip = str(ipaddress.ip_address(forwarded))
    return ip
