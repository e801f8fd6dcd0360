from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.http import Http404
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


@transaction.atomic
def organization_update(
    *,
    organization: Organization,
    name: str | None = None,
    slug: str | None = None,
    postal_address: str | None = None,
    timezone: str | None = None,
    policies: dict[str, int | None] | None = None,
) -> Organization:
    """Change the given fields; None leaves a field as it is. `policies` sets sending policies
    (frequency_cap_daily, frequency_cap_weekly, sunset_days; see delivery/policies.py), where
    None means "no limit"."""
    if unknown := set(policies or {}) - {"frequency_cap_daily", "frequency_cap_weekly", "sunset_days"}:
        raise TypeError(f"not a sending policy: {', '.join(sorted(unknown))}")
    changes = {"name": name, "slug": slug, "postal_address": postal_address, "timezone": timezone}
    changes = {field: value for field, value in changes.items() if value is not None} | (policies or {})
    changed = list(changes)
    if not changed:
        return organization
    for field in changed:
        setattr(organization, field, changes[field])
    daily, weekly = organization.frequency_cap_daily, organization.frequency_cap_weekly
    if daily is not None and weekly is not None and weekly < daily:
        raise ValidationError({"frequency_cap_weekly": f"Must be at least the daily cap ({daily})."})
    organization.full_clean()
    try:
        with transaction.atomic():
            organization.save(update_fields=changed)
    except IntegrityError:
        # Another organization took the slug between the check and the write.
        raise ValidationError({"slug": "An organization with this slug already exists."}) from None
    return organization


def organization_delete(*, organization: Organization, confirm: str) -> None:
    """Delete the organization and everything in it, when `confirm` repeats its slug."""
    if confirm != organization.slug:
        raise ValidationError({"confirm": f"Repeat the organization's slug ({organization.slug!r}) to delete it."})
    organization_id = organization.pk
    with transaction.atomic():
        organization.delete()
    # Uploaded import files (subscribers.models.import_upload_path) hold contacts' data and are
    # not rows: they go too, once the rows are gone for good.
    _storage_folder_delete(f"imports/{organization_id}")


def _storage_folder_delete(folder: str) -> None:
    if not default_storage.exists(folder):
        return
    _, files = default_storage.listdir(folder)
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    with contextlib.suppress(OSError):
        default_storage.delete(folder)


def _conflict(message: str) -> Exception:
    # Imported here: api.problems loads DRF, whose settings load the API's authentication,
    # which loads this module.
    from api.problems import Conflict

    return Conflict(message)


def _membership_locked(membership: Membership) -> Membership:
    # Membership changes of one organization queue on its row, and then read the member afresh:
    # two admins demoting the last two owners at once must not both see "another owner remains".
    Organization.objects.select_for_update().filter(pk=membership.organization_id).first()
    current = Membership.objects.filter(pk=membership.pk).first()
    if current is None:
        raise Http404("This member has just been removed.")
    return current


def _owners_besides(membership: Membership) -> int:
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=Membership.Role.OWNER)
        .exclude(pk=membership.pk)
        .count()
    )


def _user_by_username_or_email(identifier: str) -> AbstractBaseUser:
    users = get_user_model().objects.filter(is_active=True)
    user = users.filter(username=identifier).first()
    if user is not None:
        return user
    by_email = list(users.filter(email__iexact=identifier)[:2])
    if len(by_email) > 1:
        raise ValidationError({"user": "Several users have this email address: give the username instead."})
    if not by_email:
        raise ValidationError({"user": "There is no user with this username or email address."})
    return by_email[0]


@transaction.atomic
def membership_add(*, organization: Organization, user: str, role: str, by_owner: bool) -> Membership:
    """Add an existing user, named by username or email address, to the organization.

    Only an owner (`by_owner`) may make someone an owner.
    """
    if role == Membership.Role.OWNER and not by_owner:
        raise PermissionDenied("Only an owner may make someone an owner.")
    new_member = _user_by_username_or_email(user.strip())
    if Membership.objects.filter(organization=organization, user=new_member).exists():
        raise _conflict(f"{new_member.get_username()} is already a member of this organization.")
    try:
        with transaction.atomic():
            return membership_create(organization=organization, user=new_member, role=role)
    except IntegrityError:
        raise _conflict(f"{new_member.get_username()} is already a member of this organization.") from None


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, by_owner: bool) -> Membership:
    """Give a member another role. Only an owner (`by_owner`) may grant or take away the owner
    role, and the last owner keeps it."""
    membership = _membership_locked(membership)
    if role == membership.role:
        return membership
    if Membership.Role.OWNER in (role, membership.role) and not by_owner:
        raise PermissionDenied("Only an owner may grant or take away the owner role.")
    if membership.role == Membership.Role.OWNER and not _owners_besides(membership):
        raise _conflict("This is the organization's last owner: make someone else an owner first.")
    membership.role = role
    membership.full_clean(validate_unique=False, validate_constraints=False)
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, by_owner: bool) -> None:
    """Take a member out of the organization. Only an owner (`by_owner`) may remove an owner,
    and never the last one."""
    membership = _membership_locked(membership)
    if membership.role == Membership.Role.OWNER:
        if not by_owner:
            raise PermissionDenied("Only an owner may remove an owner.")
        if not _owners_besides(membership):
            raise _conflict("This is the organization's last owner: make someone else an owner first.")
    membership.delete()
