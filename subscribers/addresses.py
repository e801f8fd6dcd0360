"""Email addresses: one normal form, and the hash that suppression keeps after a contact is gone."""

from __future__ import annotations

import hashlib

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

_validate = EmailValidator(message="Enter a valid email address.")


def normalize_email(value: str) -> str:
    """Return the address in the form we store and compare, or raise ValidationError.

    Whitespace is trimmed, the domain is converted to its ASCII (IDNA) form, and the whole
    address is lower-cased: mailbox providers treat local parts case-insensitively in practice,
    and one person must not become two contacts because of capitalisation.
    """
    if not isinstance(value, str):
        raise ValidationError("Enter a valid email address.")
    address = value.strip()
    if address.count("@") != 1 or len(address) > 254:
        raise ValidationError("Enter a valid email address.")
    local, domain = address.rsplit("@", 1)
    if not local.isascii():
        # Django's validator lets some non-ASCII letters through (it matches case-insensitively);
        # mail to them needs SMTPUTF8, which most routes lack.
        raise ValidationError("Enter a valid email address (only ASCII characters before the @).")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError("Enter a valid email address (the domain is not valid).") from None
    address = f"{local}@{domain}".lower()
    _validate(address)
    return address


def ascii_address(value: str) -> str:
    """The address with its domain in ASCII (IDNA) form, as SMTP envelopes and headers need it."""
    local, _, domain = value.strip().rpartition("@")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}" if local else value.strip()
    except UnicodeError:
        return value.strip()


def email_hash(normalized_email: str) -> str:
    """SHA-256 of the normalized address: lets us recognise an address without keeping it."""
    return hashlib.sha256(normalized_email.encode("utf-8")).hexdigest()
