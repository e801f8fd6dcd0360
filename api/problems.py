"""Errors as RFC 9457 problem details: one JSON shape for every failure of the API.

{"type": "urn:emailseq:problem:validation", "title": "Invalid input", "status": 400,
 "detail": "...", "instance": "/api/v1/contacts/",
 "errors": [{"field": "email", "message": "...", "code": "invalid"}]}
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Invalid input",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


class Conflict(exceptions.APIException):
    """The request clashes with the current state (a name taken, a row still in use)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class Unprocessable(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request is well-formed but cannot be processed."
    default_code = "unprocessable"


def problem_type(code: str) -> str:
    return f"urn:emailseq:problem:{code}"


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """DRF's nested error structure as a flat list of {field, message, code}."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            field = str(key) if not prefix else f"{prefix}.{key}"
            if key in ("non_field_errors", "__all__"):
                field = prefix
            errors.extend(_flatten(value, field))
        return errors
    if isinstance(detail, list):
        if all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail):
            return [_error(prefix, item) for item in detail]
        errors = []
        for index, item in enumerate(detail):
            errors.extend(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return errors
    return [_error(prefix, detail)]


def _error(field: str, message: Any) -> dict[str, str]:
    return {"field": field, "message": str(message), "code": getattr(message, "code", None) or "invalid"}


def problem_body(*, status_code: int, code: str, detail: str, instance: str = "", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def _as_drf_exception(exc: Exception) -> Exception:
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return exceptions.ValidationError({"non_field_errors": exc.messages})
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) if str(exc) else None)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) if str(exc) else None)
    if isinstance(exc, (ProtectedError, RestrictedError)):
        return Conflict("This object is still in use: remove what refers to it first.")
    return exc


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _as_drf_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    instance = request.path if request is not None else ""
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        messages = [f"{error['field']}: {error['message']}" if error["field"] else error["message"] for error in errors]
        body = problem_body(
            status_code=response.status_code,
            code="validation",
            detail="; ".join(messages[:5]) + ("; …" if len(messages) > 5 else ""),
            instance=instance,
            errors=errors,
        )
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.APIException) and isinstance(detail, (dict, list)):
            body = problem_body(
                status_code=response.status_code,
                code=code,
                detail=TITLES.get(response.status_code, "Error"),
                instance=instance,
                errors=_flatten(detail),
            )
        else:
            body = problem_body(status_code=response.status_code, code=code, detail=str(detail), instance=instance)
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            body["retry_after"] = int(exc.wait + 0.999)
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def problem_response(request: HttpRequest, *, status_code: int, code: str, detail: str) -> JsonResponse:
    """A problem answered outside DRF (unknown API routes, server errors)."""
    body = problem_body(status_code=status_code, code=code, detail=detail, instance=request.path)
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)
