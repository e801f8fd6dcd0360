"""`Idempotency-Key` on create operations: a retried POST creates once and answers the same.

Decorate the view's `post` with `@idempotent`. Without the header nothing changes. With it, the
record of the key is inserted in the same transaction as the view's own writes: a retry that
races the first request waits on the unique index and then replays the stored answer; a request
that fails (an error answer or an exception) stores nothing, so the client may fix and retry.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api.authentication import caller_identity
from api.fields import jsonb_safe
from api.models import IdempotencyRecord
from api.permissions import resolve_caller
from api.problems import Unprocessable

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("Location",)


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    data = request.data
    files = getattr(data, "_files", None) or getattr(request, "FILES", {})
    plain = {key: data.getlist(key) for key in data} if hasattr(data, "getlist") else data
    plain = {key: value for key, value in plain.items() if key not in files} if isinstance(plain, dict) else plain
    digest.update(json.dumps(plain, sort_keys=True, default=str).encode())
    for name in sorted(files):
        upload = files[name]
        digest.update(f"\n{name}:{upload.name}:{upload.size}\n".encode())
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
    return digest.hexdigest()


def _key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255 or not key.isprintable():
        raise exceptions.ValidationError({HEADER: "Use 1 to 255 printable characters (a UUID is a good choice)."})
    return key


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise Unprocessable(f"This {HEADER} was already used for a different request; use a new key for a new request.")
    response = Response(record.response_body, status=record.status_code)
    for name, value in record.response_headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = _key(request)
        if key is None:
            return handler(view, request, *args, **kwargs)
        organization, _ = resolve_caller(request)
        caller = caller_identity(request)
        fingerprint = _fingerprint(request)
        lookup = {"organization": organization, "caller": caller, "key": key}
        existing = IdempotencyRecord.objects.filter(**lookup).first()
        if existing is not None:
            return _replay(existing, fingerprint)
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    **lookup,
                    method=request.method,
                    path=request.path[:500],
                    fingerprint=fingerprint,
                    status_code=0,
                )
                response = handler(view, request, *args, **kwargs)
                if not 200 <= response.status_code < 300:
                    transaction.set_rollback(True)
                    return response
                record.status_code = response.status_code
                # An answer may echo what the client sent (a rejected row's address), which
                # jsonb cannot hold when it carries NUL or lone surrogates.
                record.response_body = jsonb_safe(json.loads(JSONRenderer().render(response.data) or b"null"))
                record.response_headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
                record.save(update_fields=["status_code", "response_body", "response_headers"])
                return response
        except IntegrityError:
            # A concurrent request with the same key committed first.
            existing = IdempotencyRecord.objects.filter(**lookup).first()
            if existing is None:
                raise
            return _replay(existing, fingerprint)

    return wrapper


def idempotency_records_expire(*, now: dt.datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
