"""The base of every API view, the token views for users, and the API's own 404."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_cool_off
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from api.pagination import CursorPage
from api.permissions import Access, resolve_caller
from api.problems import problem_response
from organizations.models import Organization


class OrganizationApiView(APIView):
    """An API view that acts inside the caller's organization.

    `self.organization` is the organization of the request (the key's, or the user's chosen
    membership); every query of the view goes through it. Set `required_access` to a dict of
    method to Access where the default (reads READ, writes WRITE) is not right.
    """

    required_access: dict[str, Access] = {}
    pagination_class = CursorPage
    # Fields a list may be ordered by with ?ordering=<field> or ?ordering=-<field>.
    ordering_fields: tuple[str, ...] = ()

    def paginate(self, queryset: QuerySet, serializer_class: type[serializers.BaseSerializer]) -> Response:
        """One page of `queryset` as a cursor-paginated answer."""
        paginator = self.pagination_class()
        ordering = self.request.query_params.get("ordering")
        if ordering:
            if ordering.lstrip("-") not in self.ordering_fields:
                allowed = ", ".join(self.ordering_fields) or "nothing"
                raise exceptions.ValidationError({"ordering": f"This list can be ordered by {allowed}."})
            paginator.ordering = (ordering, "-id" if ordering.startswith("-") else "id")
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        data = serializer_class(page, many=True, context={"request": self.request}).data
        return paginator.get_paginated_response(data)

    @property
    def organization(self) -> Organization:
        organization, _ = resolve_caller(self.request)
        return organization

    @property
    def access(self) -> Access:
        _, access = resolve_caller(self.request)
        return access


class LoginLockedOut(exceptions.Throttled):
    default_code = "locked_out"


@extend_schema(tags=["auth"], summary="Obtain a JWT pair with a username and password")
class TokenObtainApi(TokenObtainPairView):
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            # django-axes flags the request (DRF's, which its middleware never sees) when it
            # refused a locked-out username and address, even with the right password.
            if getattr(request, "axes_locked_out", False):
                cool_off = get_cool_off(request)
                raise LoginLockedOut(
                    wait=cool_off.total_seconds() if cool_off else None,
                    detail="Too many failed logins for this username from this address.",
                ) from None
            raise


@extend_schema(tags=["auth"], summary="Exchange a refresh token for a new access token")
class TokenRefreshApi(TokenRefreshView):
    pass


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    return problem_response(request, status_code=404, code="not_found", detail="There is no API route at this path.")


def api_bad_request(request: HttpRequest) -> JsonResponse:
    return problem_response(
        request,
        status_code=400,
        code="bad_request",
        detail="The request could not be read: a malformed body, too many fields, or too large.",
    )


def api_server_error(request: Request) -> JsonResponse:
    return problem_response(request, status_code=500, code="server_error", detail="The server failed; it is logged.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF refusals under /api/ as problems; the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return problem_response(
            request, status_code=403, code="csrf", detail=f"CSRF check failed: {reason or 'no token'}."
        )
    return django_csrf_failure(request, reason=reason)
