"""REST operations on contacts, lists, tags, custom events, imports and exports.

Each view parses with an input serializer, calls one service or selector, and renders with an
output serializer. Every lookup goes through the request's organization.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.idempotency import idempotent
from api.schema import ordering_parameter
from api.views import OrganizationApiView
from subscribers import selectors, services
from subscribers.models import Tag


class TagOutput(serializers.ModelSerializer):
    contact_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Tag
        fields = ["id", "name", "created_at", "contact_count"]


class TagInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, trim_whitespace=True)


class TagCollectionApi(OrganizationApiView):
    ordering_fields = ("name", "created_at")

    @extend_schema(
        operation_id="tags_list",
        tags=["tags"],
        parameters=[ordering_parameter(*ordering_fields)],
        responses=TagOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        tags: QuerySet[Tag] = selectors.tag_list(organization=self.organization)
        return self.paginate(tags, TagOutput)

    @extend_schema(operation_id="tags_create", tags=["tags"], request=TagInput, responses={201: TagOutput})
    @idempotent
    def post(self, request: Request) -> Response:
        data = TagInput(data=request.data)
        data.is_valid(raise_exception=True)
        tag = services.tag_create(organization=self.organization, **data.validated_data)
        return Response(TagOutput(tag).data, status=status.HTTP_201_CREATED)


class TagItemApi(OrganizationApiView):
    @extend_schema(operation_id="tags_retrieve", tags=["tags"], responses=TagOutput)
    def get(self, request: Request, tag_id: int) -> Response:
        tag = selectors.tag_get(organization=self.organization, tag_id=tag_id)
        return Response(TagOutput(tag).data)

    @extend_schema(operation_id="tags_update", tags=["tags"], request=TagInput, responses=TagOutput)
    def put(self, request: Request, tag_id: int) -> Response:
        tag = selectors.tag_get(organization=self.organization, tag_id=tag_id)
        data = TagInput(data=request.data)
        data.is_valid(raise_exception=True)
        tag = services.tag_rename(tag=tag, **data.validated_data)
        return Response(TagOutput(tag).data)

    @extend_schema(operation_id="tags_destroy", tags=["tags"], responses={204: None})
    def delete(self, request: Request, tag_id: int) -> Response:
        tag = selectors.tag_get(organization=self.organization, tag_id=tag_id)
        services.tag_delete(tag=tag)
        return Response(status=status.HTTP_204_NO_CONTENT)
