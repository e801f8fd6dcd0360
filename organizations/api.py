"""REST operations on the caller's organization itself: its API keys, its members, its settings.

Keys and members are managed by owners and admins; keys never manage keys or members. Each view
parses with an input serializer, calls one service or selector, and renders with an output
serializer. Every lookup goes through the request's organization.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.idempotency import idempotent
from api.permissions import ROLE_ACCESS, Access
from api.schema import ordering_parameter
from api.views import OrganizationApiView
from organizations import selectors, services
from organizations.models import ApiKey, Membership, Organization

ROLE_BY_ACCESS = {access: role for role, access in ROLE_ACCESS.items()}
POLICY_FIELDS = ("frequency_cap_daily", "frequency_cap_weekly", "sunset_days")


# API keys -------------------------------------------------------------------------------------


class ApiKeyOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", allow_null=True, default=None, help_text="Username of who made the key."
    )
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scope",
            "is_active",
            "created_at",
            "created_by",
            "last_used_at",
            "revoked_at",
        ]


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(
        allow_null=True,
        help_text=(
            "The secret, to send as `Authorization: Api-Key <key>`. Shown in this answer only; null when "
            "a retried request (same Idempotency-Key) replays it: revoke that key and make another."
        ),
    )

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


class ApiKeyInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, trim_whitespace=True)
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices, help_text="read: as a viewer; write: as a marketer.")


def _secret_left_out_of_replays(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Adds the new key's secret to the answer outside @idempotent, which stores the answer it
    sees for replays: the secret must never be stored, not even for a day."""

    @functools.wraps(handler)
    def wrapper(view: ApiKeyCollectionApi, request: Request, *args: Any, **kwargs: Any) -> Response:
        view.created_secret = None
        response = handler(view, request, *args, **kwargs)
        if view.created_secret is not None:
            response.data = {**response.data, "key": view.created_secret}
        return response

    return wrapper


class ApiKeyCollectionApi(OrganizationApiView):
    """The organization's API keys (owners and admins). The secret is shown once, at creation."""

    required_access = {"GET": Access.MANAGE, "POST": Access.MANAGE}
    ordering_fields = ("name", "created_at")
    created_secret: str | None = None

    @extend_schema(
        operation_id="api_keys_list",
        tags=["api keys"],
        parameters=[ordering_parameter(*ordering_fields)],
        responses=ApiKeyOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.api_key_list(organization=self.organization), ApiKeyOutput)

    @extend_schema(
        operation_id="api_keys_create", tags=["api keys"], request=ApiKeyInput, responses={201: ApiKeyCreatedOutput}
    )
    @_secret_left_out_of_replays
    @idempotent
    def post(self, request: Request) -> Response:
        data = ApiKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, self.created_secret = services.api_key_create(
            organization=self.organization, created_by=request.user, **data.validated_data
        )
        return Response({**ApiKeyOutput(api_key).data, "key": None}, status=status.HTTP_201_CREATED)


class ApiKeyItemApi(OrganizationApiView):
    """One API key (owners and admins)."""

    required_access = {"GET": Access.MANAGE, "DELETE": Access.MANAGE}

    @extend_schema(operation_id="api_keys_retrieve", tags=["api keys"], responses=ApiKeyOutput)
    def get(self, request: Request, api_key_id: int) -> Response:
        api_key = selectors.api_key_get(organization=self.organization, api_key_id=api_key_id)
        return Response(ApiKeyOutput(api_key).data)

    @extend_schema(
        operation_id="api_keys_destroy",
        tags=["api keys"],
        description="Revokes the key: it stops working at once. The record stays, with `revoked_at` set.",
        responses={204: None},
    )
    def delete(self, request: Request, api_key_id: int) -> Response:
        api_key = selectors.api_key_get(organization=self.organization, api_key_id=api_key_id)
        services.api_key_revoke(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyRevokeApi(OrganizationApiView):
    """Revoke one API key (owners and admins)."""

    required_access = {"POST": Access.MANAGE}

    @extend_schema(
        operation_id="api_keys_revoke",
        tags=["api keys"],
        description="The key stops working at once. Revoking a revoked key changes nothing.",
        request=None,
        responses=ApiKeyOutput,
    )
    def post(self, request: Request, api_key_id: int) -> Response:
        api_key = selectors.api_key_get(organization=self.organization, api_key_id=api_key_id)
        api_key = services.api_key_revoke(api_key=api_key)
        return Response(ApiKeyOutput(api_key).data)


# Members --------------------------------------------------------------------------------------


class MemberOutput(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id")
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email", help_text="Empty when the user has none.")
    joined_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Membership
        fields = ["id", "user_id", "username", "email", "role", "joined_at"]


class MemberAddInput(serializers.Serializer):
    user = serializers.CharField(max_length=254, help_text="The username or email address of an existing user.")
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberRoleInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberCollectionApi(OrganizationApiView):
    """The organization's members and their roles (owners and admins)."""

    required_access = {"GET": Access.MANAGE, "POST": Access.MANAGE}

    @extend_schema(operation_id="members_list", tags=["members"], responses=MemberOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.membership_list(organization=self.organization), MemberOutput)

    @extend_schema(
        operation_id="members_create",
        tags=["members"],
        description="Adds an existing user. Only an owner may add an owner.",
        request=MemberAddInput,
        responses={201: MemberOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = MemberAddInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_add(
            organization=self.organization, by_owner=self.access >= Access.OWN, **data.validated_data
        )
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class MemberItemApi(OrganizationApiView):
    """One member of the organization (owners and admins)."""

    required_access = {"GET": Access.MANAGE, "PATCH": Access.MANAGE, "DELETE": Access.MANAGE}

    @extend_schema(operation_id="members_retrieve", tags=["members"], responses=MemberOutput)
    def get(self, request: Request, member_id: int) -> Response:
        membership = selectors.membership_get(organization=self.organization, membership_id=member_id)
        return Response(MemberOutput(membership).data)

    @extend_schema(
        operation_id="members_partial_update",
        tags=["members"],
        description="Only an owner may grant or take away the owner role; the last owner keeps it (409).",
        request=MemberRoleInput,
        responses=MemberOutput,
    )
    def patch(self, request: Request, member_id: int) -> Response:
        membership = selectors.membership_get(organization=self.organization, membership_id=member_id)
        data = MemberRoleInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            membership=membership, by_owner=self.access >= Access.OWN, **data.validated_data
        )
        return Response(MemberOutput(membership).data)

    @extend_schema(
        operation_id="members_destroy",
        tags=["members"],
        description="Only an owner may remove an owner; the last owner cannot be removed (409).",
        responses={204: None},
    )
    def delete(self, request: Request, member_id: int) -> Response:
        membership = selectors.membership_get(organization=self.organization, membership_id=member_id)
        services.membership_remove(membership=membership, by_owner=self.access >= Access.OWN)
        return Response(status=status.HTTP_204_NO_CONTENT)


# The organization -----------------------------------------------------------------------------


class OrganizationOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role here; null for an API key.")
    api_key_scope = serializers.SerializerMethodField(help_text="The scope of the calling API key; null for a user.")

    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "slug",
            "postal_address",
            "timezone",
            *POLICY_FIELDS,
            "created_at",
            "role",
            "api_key_scope",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=Membership.Role.choices, allow_null=True))
    def get_role(self, organization: Organization) -> str | None:
        return self.context["role"]

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="read or write; null for a user."))
    def get_api_key_scope(self, organization: Organization) -> str | None:
        return self.context["api_key_scope"]


class OrganizationUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    slug = serializers.SlugField(max_length=80, required=False)
    postal_address = serializers.CharField(max_length=2000, allow_blank=True, required=False)
    timezone = serializers.CharField(max_length=64, required=False, help_text="An IANA time zone: Europe/Paris.")
    # Sending policies (delivery/policies.py); null is "no limit".
    frequency_cap_daily = serializers.IntegerField(
        min_value=1,
        max_value=32767,
        allow_null=True,
        required=False,
        help_text="At most this many marketing emails per contact per day (the contact's day); null: no cap.",
    )
    frequency_cap_weekly = serializers.IntegerField(
        min_value=1,
        max_value=32767,
        allow_null=True,
        required=False,
        help_text="At most this many marketing emails per contact in any 7 days, at least the daily cap; null: no cap.",
    )
    sunset_days = serializers.IntegerField(
        min_value=1,
        max_value=32767,
        allow_null=True,
        required=False,
        help_text="Stop marketing emails to contacts with no human open or click in this many days; null: never.",
    )


class OrganizationDeleteInput(serializers.Serializer):
    confirm = serializers.CharField(max_length=80)


class OrganizationApi(OrganizationApiView):
    """The caller's organization: anyone reads it, owners and admins change it, owners delete it."""

    required_access = {"GET": Access.READ, "PATCH": Access.MANAGE, "DELETE": Access.OWN}

    def _output(self, organization: Organization) -> dict[str, Any]:
        if isinstance(self.request.auth, ApiKey):
            caller = {"role": None, "api_key_scope": self.request.auth.scope}
        else:
            caller = {"role": ROLE_BY_ACCESS[self.access], "api_key_scope": None}
        return OrganizationOutput(organization, context=caller).data

    @extend_schema(operation_id="organization_retrieve", tags=["organization"], responses=OrganizationOutput)
    def get(self, request: Request) -> Response:
        return Response(self._output(self.organization))

    @extend_schema(
        operation_id="organization_partial_update",
        tags=["organization"],
        request=OrganizationUpdateInput,
        responses=OrganizationOutput,
    )
    def patch(self, request: Request) -> Response:
        data = OrganizationUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        policies = {name: fields.pop(name) for name in POLICY_FIELDS if name in fields}
        organization = services.organization_update(organization=self.organization, policies=policies, **fields)
        return Response(self._output(organization))

    @extend_schema(
        operation_id="organization_destroy",
        tags=["organization"],
        description="Deletes the organization and everything in it, for good.",
        parameters=[
            OpenApiParameter(
                "confirm",
                str,
                OpenApiParameter.QUERY,
                required=True,
                description="The organization's slug, repeated to confirm.",
            )
        ],
        responses={204: None},
    )
    def delete(self, request: Request) -> Response:
        data = OrganizationDeleteInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        services.organization_delete(organization=self.organization, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)
