"""VERP return paths: `bounce+<signed message id>@<BOUNCE_DOMAIN>`.

Every message leaves with its own envelope sender, so a bounce that comes back to it names the
message without anyone having to parse the bounce. The id is signed (HMAC-SHA256 with a key of
its own purpose, truncated as delivery.signing does) so nobody can make us apply a bounce to a
message of their choosing, and written in lower-case base32: some MTAs lower-case local parts,
which base64 would not survive.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import struct
from collections.abc import Mapping

from django.conf import settings

from delivery import signing

PURPOSE = "verp"
LOCAL_PREFIX = "bounce+"
LAYOUT = ">Q"  # message id
# 8 payload bytes and 12 MAC bytes: 20 bytes are 32 base32 characters, without padding.
TOKEN_LENGTH = 32


def _token(message_id: int, secret: str) -> str:
    payload = struct.pack(LAYOUT, message_id)
    mac = signing.mac_of(secret, PURPOSE, payload)
    return base64.b32encode(payload + mac).decode("ascii").lower()


def return_path(message_id: int) -> str:
    """The envelope sender (MAIL FROM) of a message."""
    return f"{LOCAL_PREFIX}{_token(message_id, settings.SECRET_KEY)}@{settings.BOUNCE_DOMAIN}"


def is_bounce_domain(address: str) -> bool:
    return address.rpartition("@")[2].lower().rstrip(".") == settings.BOUNCE_DOMAIN.lower()


def message_id_from_address(address: str) -> int | None:
    """The message a VERP address was made for, or None when the address is not one of ours,
    or its id was forged or altered."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or domain.lower().rstrip(".") != settings.BOUNCE_DOMAIN.lower():
        return None
    local = local.lower()
    if not local.startswith(LOCAL_PREFIX):
        return None
    token = local[len(LOCAL_PREFIX) :]
    if len(token) != TOKEN_LENGTH or not token.isalnum():
        return None
    try:
        raw = base64.b32decode(token.upper())
    except (binascii.Error, ValueError):
        return None
    payload, mac = raw[: struct.calcsize(LAYOUT)], raw[struct.calcsize(LAYOUT) :]
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        if hmac.compare_digest(mac, signing.mac_of(secret, PURPOSE, payload)):
            return struct.unpack(LAYOUT, payload)[0]
    return None


# Our Message-ID: <{message id}.{first 16 characters of its correlation token}@MESSAGE_ID_DOMAIN>
MESSAGE_ID_HEADER = re.compile(r"^\s*<?(\d{1,19})\.([A-Za-z0-9_-]{16})@([^>\s]+)>?\s*$")


def message_id_from_headers(headers: Mapping[str, str]) -> int | None:
    """The message a returned original's headers name: its X-Emailseq-ID (a signed token), or
    else its Message-ID as delivery.composer writes it, checked against the token. None when
    neither is ours, genuine and intact."""
    lowered = {name.lower(): value for name, value in headers.items()}
    correlation = " ".join(lowered.get("x-emailseq-id", "").split())
    if correlation:
        ids = signing.unsign("correlation", correlation)
        if ids:
            return ids[0]
    match = MESSAGE_ID_HEADER.match(lowered.get("message-id", ""))
    if match and match.group(3).lower() == settings.MESSAGE_ID_DOMAIN.lower():
        message_id = int(match.group(1))
        if message_id < 2**63 and hmac.compare_digest(signing.sign("correlation", message_id)[:16], match.group(2)):
            return message_id
    return None
