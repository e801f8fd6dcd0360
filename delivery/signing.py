"""Compact signed tokens for tracking, unsubscribe and correlation.

A token is base64url(payload || HMAC-SHA256(key_purpose, payload)[:12]) where the payload is
the packed ids. Each purpose has its own key derived from SECRET_KEY, so a click token cannot
be replayed as an unsubscribe token. Tokens do not expire: unsubscribe links must keep working
for at least a year, and keys listed in SECRET_KEY_FALLBACKS keep verifying after a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from functools import lru_cache

from django.conf import settings

MAC_BYTES = 12
# purpose -> struct layout of its payload
LAYOUTS = {
    "open": ">Q",  # message id
    "click": ">QH",  # message id, link index
    "click-to": ">QH",  # message id, link index; the MAC also covers the link's target
    "unsubscribe": ">QQ",  # message id, contact id
    "correlation": ">Q",  # message id
}


@lru_cache(maxsize=64)
def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"emailseq.signing.{purpose}".encode(), hashlib.sha256).digest()


def mac_of(secret: str, purpose: str, payload: bytes) -> bytes:
    return hmac.digest(_key(secret, purpose), payload, "sha256")[:MAC_BYTES]


def sign(purpose: str, *numbers: int, covering: bytes = b"") -> str:
    """A token carrying `numbers`; its MAC also covers `covering` (data that travels beside the
    token, such as a link's target), which unsign must then be given."""
    payload = struct.pack(LAYOUTS[purpose], *numbers)
    token = payload + mac_of(settings.SECRET_KEY, purpose, payload + covering)
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")


def unsign(purpose: str, token: str, *, covering: bytes = b"") -> tuple[int, ...] | None:
    """The ids in a token, or None when it is malformed, forged or altered (or `covering` is
    not what it was signed with)."""
    layout = LAYOUTS[purpose]
    size = struct.calcsize(layout)
    if not isinstance(token, str) or len(token) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    # The decoder skips stray characters and ignores the spare bits of the last one: only the
    # canonical spelling of a token is accepted, so any altered token is rejected.
    if len(raw) != size + MAC_BYTES or base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    payload, mac = raw[:size], raw[size:]
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        if hmac.compare_digest(mac, mac_of(secret, purpose, payload + covering)):
            return struct.unpack(layout, payload)
    return None
