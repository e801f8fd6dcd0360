"""Signed links a person follows from an email: confirm a subscription, change preferences.

Each purpose signs with its own salt (an HMAC key derived from SECRET_KEY; keys in
SECRET_KEY_FALLBACKS keep verifying after a rotation), so a preference token cannot be used to
confirm a subscription. A confirmation link names the sign-up it confirms (its "subscribe"
consent record) and expires; a preference link names the contact and does not expire, as
unsubscribe links do not. This module imports nothing from delivery, so the composer can link
the preference page from the footer.
"""

from __future__ import annotations

import datetime as dt
import functools

from django.conf import settings
from django.core import signing
from django.urls import reverse

CONFIRM_SALT = "emailseq.subscribers.confirm"
PREFERENCES_SALT = "emailseq.subscribers.preferences"
MAX_TOKEN_LENGTH = 200


def confirmation_token(subscribe_record_id: int) -> str:
    return signing.TimestampSigner(salt=CONFIRM_SALT).sign(str(subscribe_record_id))


def confirmation_record_id(token: str, *, max_age: dt.timedelta | None = None) -> int | None:
    """The sign-up a confirmation token confirms, or None when it is forged, altered or expired."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    max_age = max_age or dt.timedelta(days=settings.CONFIRMATION_LINK_DAYS)
    try:
        value = signing.TimestampSigner(salt=CONFIRM_SALT).unsign(token, max_age=max_age)
    except signing.BadSignature:  # SignatureExpired is one
        return None
    return int(value) if value.isdigit() else None


def preferences_token(contact_id: int) -> str:
    return signing.Signer(salt=PREFERENCES_SALT).sign(str(contact_id))


def preferences_contact_id(token: str) -> int | None:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        value = signing.Signer(salt=PREFERENCES_SALT).unsign(token)
    except signing.BadSignature:
        return None
    return int(value) if value.isdigit() else None


def absolute_url(path: str) -> str:
    return f"{settings.BASE_URL}{path}"


def confirmation_url(subscribe_record_id: int) -> str:
    return absolute_url(reverse("subscribers:confirm", args=[confirmation_token(subscribe_record_id)]))


def preferences_url(contact_id: int) -> str:
    """The contact's preference page (lists, pause, unsubscribe): for the footer of every email."""
    before, after = _preferences_path_around_token()
    return absolute_url(f"{before}{preferences_token(contact_id)}{after}")


@functools.cache
def _preferences_path_around_token() -> tuple[str, str]:
    # Every message's footer links it: reverse() once, not per message (signed tokens are
    # URL-safe as they are, so reverse would not quote them).
    marker = "0PREFERENCESTOKEN0"
    before, after = reverse("subscribers:preferences", args=[marker]).split(marker)
    return before, after


def subscribe_url(form_token: str) -> str:
    return absolute_url(reverse("subscribers:subscribe", args=[form_token]))


def embed_url(form_token: str) -> str:
    return absolute_url(reverse("subscribers:subscribe-embed", args=[form_token]))
