from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from organizations.models import ApiKey, Membership, Organization


@transaction.atomic
def organization_create(
    *,
    name: str,
    slug: str = "",
    postal_address: str = "",
    timezone: str = "UTC",
    owner: AbstractBaseUser | None = None,
) -> Organization:
    organization = Organization(name=name, slug=slug or slugify(name), postal_address=postal_address, timezone=timezone)
    organization.full_clean()
    organization.save()
    if owner is not None:
        membership_create(organization=organization, user=owner, role=Membership.Role.OWNER)
    return organization


def membership_create(*, organization: Organization, user: AbstractBaseUser, role: str) -> Membership:
    membership = Membership(organization=organization, user=user, role=role)
    membership.full_clean()
    membership.save()
    return membership


API_KEY_PREFIX = "esk"
# last_used_at is a hint for people, not an audit trail: write it at most this often per key.
API_KEY_LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _api_key_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(
    *, organization: Organization, name: str, scope: str, created_by: AbstractBaseUser | None = None
) -> tuple[ApiKey, str]:
    """Make a key and return it with its secret, which is not stored and cannot be shown again."""
    prefix = secrets.token_hex(4)
    raw = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey(
        organization=organization,
        name=name.strip(),
        prefix=prefix,
        key_hash=_api_key_digest(raw),
        scope=scope,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )
    api_key.full_clean()
    api_key.save()
    return api_key, raw


def api_key_verify(*, raw: str, now: dt.datetime | None = None) -> ApiKey | None:
    """The active key `raw` is the secret of, or None. Notes when it was last used."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 8:
        return None
    api_key = ApiKey.objects.select_related("organization").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _api_key_digest(raw)):
        return None
    now = now or timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= API_KEY_LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def api_key_revoke(*, api_key: ApiKey, now: dt.datetime | None = None) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = now or timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
