"""REST operations on the organization's delivery routes (delivery.routing).

Anyone in the organization may read its routes (their secrets masked) and their state; only
admins and owners change them, since a route holds credentials and decides where every
message goes. The circuit-breaker and throttling state is written by the send path only, and
`reset` closes a route's circuit by hand.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.idempotency import idempotent
from api.permissions import Access
from api.schema import ordering_parameter
from api.views import OrganizationApiView
from delivery import routing
from delivery.models import DeliveryRoute

MAX_SMALL = 32767
MAX_INTEGER = 2_147_483_647
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


class RouteOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The route's address with its secrets masked.")
    warmup_schedule = serializers.ListField(child=serializers.IntegerField())

    class Meta:
        model = DeliveryRoute
        fields = [
            "id",
            "name",
            "kind",
            "url",
            "priority",
            "is_active",
            "per_second",
            "per_hour",
            "per_day",
            "max_connections",
            "warmup_schedule",
            "warmup_started_at",
            *routing.ROUTE_STATE_FIELDS,
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.CharField())
    def get_url(self, route: DeliveryRoute) -> str:
        return routing.url_masked(route.url)


def _limit(help_text: str, maximum: int = MAX_INTEGER) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1, max_value=maximum, allow_null=True, default=None, help_text=f"{help_text} Null: no limit."
    )


class RouteInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    url = serializers.CharField(
        max_length=1000,
        help_text=(
            "Written like EMAIL_URL: smtp://user:password@host:587?security=starttls, smtps://..., "
            "postmark://TOKEN@, sendgrid://KEY@, amazon-ses://, mailgun://KEY@?sender_domain=..., or "
            "capture:// (the local mailbox). Sending back the masked url of an answer keeps the secrets."
        ),
    )
    priority = serializers.IntegerField(min_value=0, max_value=MAX_SMALL, default=0, help_text="Lower goes first.")
    is_active = serializers.BooleanField(default=True)
    per_second = _limit("Messages per second, never exceeded in any one-second window.")
    per_hour = _limit("Messages per UTC hour.")
    per_day = _limit("Messages per UTC day.")
    max_connections = _limit("Connections open at once, across all workers.", MAX_SMALL)
    warmup_schedule = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_INTEGER),
        max_length=366,
        default=list,
        help_text="Daily ceilings from warmup_started_at on, e.g. [50, 100, 250, 500]; empty: no warm-up.",
    )
    warmup_started_at = serializers.DateTimeField(
        allow_null=True, default=None, help_text="Day one of the warm-up; now when a schedule is given without it."
    )

    def validate_warmup_started_at(self, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and not EARLIEST <= value <= LATEST:
            raise serializers.ValidationError("Give a time between the years 2000 and 2100.")
        return value


def _parsed(data: Any, *, partial: bool) -> dict[str, Any]:
    parser = RouteInput(data=data, partial=partial)
    parser.is_valid(raise_exception=True)
    return dict(parser.validated_data)


class RouteCollectionApi(OrganizationApiView):
    """The organization's delivery routes, in the order they are tried."""

    required_access = {"GET": Access.READ, "POST": Access.MANAGE}
    ordering_fields = ("priority", "name", "created_at")

    @extend_schema(
        operation_id="delivery_routes_list",
        tags=["delivery routes"],
        parameters=[ordering_parameter(*ordering_fields)],
        responses=RouteOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginate(routing.route_list(organization=self.organization).order_by("priority", "id"), RouteOutput)

    @extend_schema(
        operation_id="delivery_routes_create",
        tags=["delivery routes"],
        request=RouteInput,
        responses={201: RouteOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        route = routing.route_create(organization=self.organization, **_parsed(request.data, partial=False))
        return Response(RouteOutput(route).data, status=status.HTTP_201_CREATED)


class RouteItemApi(OrganizationApiView):
    """One delivery route. Its state (circuit, throttling) is read-only here: see reset."""

    required_access = {"GET": Access.READ, "PUT": Access.MANAGE, "PATCH": Access.MANAGE, "DELETE": Access.MANAGE}

    @extend_schema(operation_id="delivery_routes_retrieve", tags=["delivery routes"], responses=RouteOutput)
    def get(self, request: Request, route_id: int) -> Response:
        return Response(RouteOutput(routing.route_get(organization=self.organization, route_id=route_id)).data)

    @extend_schema(
        operation_id="delivery_routes_update", tags=["delivery routes"], request=RouteInput, responses=RouteOutput
    )
    def put(self, request: Request, route_id: int) -> Response:
        return self._update(request, route_id, partial=False)

    @extend_schema(
        operation_id="delivery_routes_partial_update",
        tags=["delivery routes"],
        request=RouteInput(partial=True),
        responses=RouteOutput,
    )
    def patch(self, request: Request, route_id: int) -> Response:
        return self._update(request, route_id, partial=True)

    def _update(self, request: Request, route_id: int, *, partial: bool) -> Response:
        route = routing.route_get(organization=self.organization, route_id=route_id)
        route = routing.route_update(route=route, **_parsed(request.data, partial=partial))
        return Response(RouteOutput(route).data)

    @extend_schema(
        operation_id="delivery_routes_destroy",
        tags=["delivery routes"],
        description="Messages it sent keep their history (their route becomes null).",
        responses={204: None},
    )
    def delete(self, request: Request, route_id: int) -> Response:
        routing.route_delete(route=routing.route_get(organization=self.organization, route_id=route_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RouteResetApi(OrganizationApiView):
    """Close a route's circuit and forget its failures and throttling."""

    required_access = {"POST": Access.MANAGE}

    @extend_schema(
        operation_id="delivery_routes_reset",
        tags=["delivery routes"],
        description="The route takes mail again at once, at its full rate. Its last error stays for reference.",
        request=None,
        responses=RouteOutput,
    )
    def post(self, request: Request, route_id: int) -> Response:
        route = routing.route_reset(route=routing.route_get(organization=self.organization, route_id=route_id))
        return Response(RouteOutput(route).data)
