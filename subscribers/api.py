"""REST operations on contacts, lists, tags and custom events.

Each view parses with an input serializer, calls one service or selector, and renders with an
output serializer. Every lookup goes through the request's organization; a view that acts on
one object looks it up before it reads the body, so another organization's id is a 404 first.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from api.authentication import caller_identity
from api.fields import MAX_ID, IdField, JSONObjectField, check_json, jsonb_safe
from api.idempotency import idempotent
from api.pagination import CursorPage
from api.schema import ordering_parameter
from api.views import OrganizationApiView
from delivery.models import Event, Message
from organizations.models import Organization
from sequences.models import Enrollment
from subscribers import selectors, services
from subscribers.consent_api import ConsentRecordOutput
from subscribers.models import Contact, ContactEvent, ContactList, Suppression, Tag


class TagOutput(serializers.ModelSerializer):
    contact_count = serializers.IntegerField(read_only=True)

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
        tag = selectors.tag_get(organization=self.organization, tag_id=tag.pk)
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
        tag = selectors.tag_get(organization=self.organization, tag_id=tag.pk)
        return Response(TagOutput(tag).data)

    @extend_schema(operation_id="tags_destroy", tags=["tags"], responses={204: None})
    def delete(self, request: Request, tag_id: int) -> Response:
        tag = selectors.tag_get(organization=self.organization, tag_id=tag_id)
        services.tag_delete(tag=tag)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _parsed(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
    parser = serializer_class(data=data, **kwargs)
    parser.is_valid(raise_exception=True)
    return dict(parser.validated_data)


def _id_list(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(child=IdField(), max_length=100, **kwargs)


# Contacts -------------------------------------------------------------------------------------


class NamedRef(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ContactOutput(serializers.ModelSerializer):
    properties = serializers.DictField()
    lists = NamedRef(many=True, read_only=True)
    tags = NamedRef(many=True, read_only=True)

    class Meta:
        model = Contact
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "properties",
            "timezone",
            "status",
            "status_changed_at",
            "consent_source",
            "consented_at",
            "consent_ip",
            "lists",
            "tags",
            "created_at",
            "updated_at",
        ]


class ContactDetailsInput(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    first_name = serializers.CharField(max_length=150, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, allow_blank=True, default="")
    properties = JSONObjectField(default=dict)
    timezone = serializers.CharField(
        max_length=64, allow_blank=True, default="", help_text="IANA name; empty: the organization's."
    )


class ContactCreateInput(ContactDetailsInput):
    list_ids = _id_list(default=list, help_text="Lists the contact joins.")
    tag_ids = _id_list(default=list, help_text="Tags the contact gets, by id.")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100),
        max_length=100,
        default=list,
        help_text="Tags by name, created when new.",
    )
    consent_source = serializers.CharField(
        max_length=200, allow_blank=True, default="", help_text="Where consent was given."
    )
    consent_ip = serializers.IPAddressField(allow_null=True, default=None)
    consented_at = serializers.DateTimeField(
        allow_null=True, default=None, help_text="Default: now, when a source is given."
    )


class ContactFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Contact.Status.choices, required=False)
    list_id = IdField(required=False)
    tag_id = IdField(required=False)
    email = serializers.CharField(max_length=254, required=False, help_text="Part of the address, in any case.")
    created_after = serializers.DateTimeField(required=False, help_text="Created at or after this time.")
    updated_after = serializers.DateTimeField(required=False, help_text="Changed at or after this time.")


CONTACT_ORDERING = ("email", "created_at", "updated_at")


class ContactCollectionApi(OrganizationApiView):
    ordering_fields = CONTACT_ORDERING

    @extend_schema(
        operation_id="contacts_list",
        tags=["contacts"],
        parameters=[ContactFilterInput, ordering_parameter(*CONTACT_ORDERING)],
        responses=ContactOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = _parsed(ContactFilterInput, request.query_params)
        return self.paginate(selectors.contacts_filter(organization=self.organization, **filters), ContactOutput)

    @extend_schema(
        operation_id="contacts_create",
        tags=["contacts"],
        summary="Create a contact (a suppressed address is created with the suppression's status)",
        request=ContactCreateInput,
        responses={201: ContactOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _parsed(ContactCreateInput, request.data)
        contact_lists = selectors.lists_get_many(organization=self.organization, list_ids=data.pop("list_ids"))
        tags = selectors.tags_get_many(organization=self.organization, tag_ids=data.pop("tag_ids"))
        contact = services.contact_create(
            organization=self.organization,
            timezone_name=data.pop("timezone"),
            lists=contact_lists,
            tags=tags,
            tag_names=data.pop("tags"),
            **data,
        )
        contact = selectors.contact_get(organization=self.organization, contact_id=contact.pk)
        return Response(ContactOutput(contact).data, status=status.HTTP_201_CREATED)


class ContactLookupInput(serializers.Serializer):
    email = serializers.CharField(max_length=254, help_text="Any spelling: matched in normalized form.")


class ContactLookupApi(OrganizationApiView):
    @extend_schema(
        operation_id="contacts_lookup", tags=["contacts"], parameters=[ContactLookupInput], responses=ContactOutput
    )
    def get(self, request: Request) -> Response:
        email = _parsed(ContactLookupInput, request.query_params)["email"]
        return Response(ContactOutput(selectors.contact_lookup(organization=self.organization, email=email)).data)


class ContactItemApi(OrganizationApiView):
    def _contact(self, contact_id: int) -> Contact:
        return selectors.contact_get(organization=self.organization, contact_id=contact_id)

    @extend_schema(operation_id="contacts_retrieve", tags=["contacts"], responses=ContactOutput)
    def get(self, request: Request, contact_id: int) -> Response:
        return Response(ContactOutput(self._contact(contact_id)).data)

    @extend_schema(
        operation_id="contacts_update",
        tags=["contacts"],
        summary="Replace a contact's details (fields left out are reset to empty)",
        request=ContactDetailsInput,
        responses=ContactOutput,
    )
    def put(self, request: Request, contact_id: int) -> Response:
        return self._update(request, contact_id, partial=False)

    @extend_schema(
        operation_id="contacts_partial_update",
        tags=["contacts"],
        summary="Change some of a contact's details",
        request=ContactDetailsInput(partial=True),
        responses=ContactOutput,
    )
    def patch(self, request: Request, contact_id: int) -> Response:
        return self._update(request, contact_id, partial=True)

    def _update(self, request: Request, contact_id: int, *, partial: bool) -> Response:
        contact = self._contact(contact_id)
        fields = _parsed(ContactDetailsInput, request.data, partial=partial)
        services.contact_update(contact=contact, **fields)
        return Response(ContactOutput(self._contact(contact_id)).data)

    @extend_schema(operation_id="contacts_destroy", tags=["contacts"], responses={204: None})
    def delete(self, request: Request, contact_id: int) -> Response:
        services.contact_delete(contact=self._contact(contact_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Bulk upsert ----------------------------------------------------------------------------------


class BulkContactRow(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    properties = JSONObjectField(required=False)
    timezone = serializers.CharField(max_length=64, required=False, allow_blank=True)


@extend_schema_field(BulkContactRow(many=True))
class BulkRowsField(serializers.ListField):
    """The rows, each parsed on its own afterwards: a bad row is rejected, not the whole call."""


class BulkUpsertInput(serializers.Serializer):
    contacts = BulkRowsField(
        min_length=1,
        max_length=settings.API_BULK_LIMIT,
        help_text=f"Up to {settings.API_BULK_LIMIT:,} rows. Fields left out keep their stored values.",
    )
    list_ids = _id_list(default=list, help_text="Lists every accepted contact joins.")
    tag_ids = _id_list(default=list, help_text="Tags every accepted contact gets.")
    consent_source = serializers.CharField(
        max_length=200, allow_blank=True, default="", help_text="Recorded, with the time, on the contacts created."
    )


class ItemError(serializers.Serializer):
    field = serializers.CharField()
    message = serializers.CharField()
    code = serializers.CharField()


class BulkResultOutput(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the row in the request, from 0.")
    email = serializers.CharField(help_text="The address as stored (as given when the row is rejected).")
    result = serializers.ChoiceField(choices=["created", "updated", "unchanged", "rejected"])
    id = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=Contact.Status.choices, allow_null=True)
    errors = ItemError(many=True)


class BulkUpsertOutput(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = BulkResultOutput(many=True, help_text="One per row, in the order of the request.")


def _row_errors(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    if isinstance(detail, dict):
        return [
            error
            for name, value in detail.items()
            for error in _row_errors(value, prefix if name == "non_field_errors" else str(name))
        ]
    if isinstance(detail, list):
        return [error for item in detail for error in _row_errors(item, prefix)]
    return [{"field": prefix, "message": str(detail), "code": getattr(detail, "code", None) or "invalid"}]


def _bulk_rows(items: list[Any]) -> list[services.BulkRow]:
    parser = BulkContactRow()
    rows = []
    for index, item in enumerate(items):
        email = item.get("email") if isinstance(item, dict) else None
        row = services.BulkRow(index=index, email=email if isinstance(email, str) else "")
        try:
            row.fields = dict(parser.run_validation(item))
        except serializers.ValidationError as error:
            row.errors = _row_errors(error.detail)
        rows.append(row)
    return rows


class ContactBulkApi(OrganizationApiView):
    @extend_schema(
        operation_id="contacts_bulk_upsert",
        tags=["contacts"],
        summary="Create or update up to 10,000 contacts by address, with one result per row",
        request=BulkUpsertInput,
        responses=BulkUpsertOutput,
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _parsed(BulkUpsertInput, request.data)
        contact_lists = selectors.lists_get_many(organization=self.organization, list_ids=data["list_ids"])
        tags = selectors.tags_get_many(organization=self.organization, tag_ids=data["tag_ids"])
        results = services.contacts_bulk_upsert(
            organization=self.organization,
            rows=_bulk_rows(data["contacts"]),
            contact_lists=contact_lists,
            tags=tags,
            consent_source=data["consent_source"],
        )
        counts = dict.fromkeys(("created", "updated", "unchanged", "rejected"), 0)
        for result in results:
            counts[result.result] += 1
        # Rejected rows echo what was sent, which may hold NUL or lone surrogates: not JSON-able.
        return Response(jsonb_safe(BulkUpsertOutput({**counts, "results": results}).data))


# A contact's memberships ----------------------------------------------------------------------


class TagIdsInput(serializers.Serializer):
    tag_ids = _id_list(min_length=1)


class ListIdsInput(serializers.Serializer):
    list_ids = _id_list(min_length=1)


def _ids_parameter(name: str, noun: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "minItems": 1},
        OpenApiParameter.QUERY,
        required=True,
        explode=True,
        description=f"Ids of the {noun}s to leave (repeat the parameter, or separate with commas).",
    )


def _ids_in_query(request: Request, name: str) -> dict[str, list[str]]:
    return {name: [part for value in request.query_params.getlist(name) for part in value.split(",") if part]}


def _contact_answer(organization: Organization, contact_id: int) -> Response:
    """The contact as it stands after a change."""
    return Response(ContactOutput(selectors.contact_get(organization=organization, contact_id=contact_id)).data)


class ContactTagsApi(OrganizationApiView):
    @extend_schema(operation_id="contacts_tags_add", tags=["contacts"], request=TagIdsInput, responses=ContactOutput)
    def post(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        tag_ids = _parsed(TagIdsInput, request.data)["tag_ids"]
        tags = selectors.tags_get_many(organization=self.organization, tag_ids=tag_ids)
        services.contact_tags_add(contact=contact, tags=tags)
        return _contact_answer(self.organization, contact_id)

    @extend_schema(
        operation_id="contacts_tags_remove",
        tags=["contacts"],
        parameters=[_ids_parameter("tag_ids", "tag")],
        responses={200: ContactOutput},
    )
    def delete(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        tag_ids = _parsed(TagIdsInput, _ids_in_query(request, "tag_ids"))["tag_ids"]
        tags = selectors.tags_get_many(organization=self.organization, tag_ids=tag_ids)
        services.contact_tags_remove(contact=contact, tags=tags)
        return _contact_answer(self.organization, contact_id)


class ContactListsApi(OrganizationApiView):
    @extend_schema(operation_id="contacts_lists_add", tags=["contacts"], request=ListIdsInput, responses=ContactOutput)
    def post(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        list_ids = _parsed(ListIdsInput, request.data)["list_ids"]
        contact_lists = selectors.lists_get_many(organization=self.organization, list_ids=list_ids)
        services.contact_lists_add(contact=contact, contact_lists=contact_lists)
        return _contact_answer(self.organization, contact_id)

    @extend_schema(
        operation_id="contacts_lists_remove",
        tags=["contacts"],
        parameters=[_ids_parameter("list_ids", "list")],
        responses={200: ContactOutput},
    )
    def delete(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        list_ids = _parsed(ListIdsInput, _ids_in_query(request, "list_ids"))["list_ids"]
        contact_lists = selectors.lists_get_many(organization=self.organization, list_ids=list_ids)
        services.contact_lists_remove(contact=contact, contact_lists=contact_lists)
        return _contact_answer(self.organization, contact_id)


# A contact's history, export, erasure and unsubscribe ----------------------------------------


class MessageOutput(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "id",
            "sequence_id",
            "step_id",
            "enrollment_id",
            "status",
            "subject",
            "recipient",
            "attempts",
            "response",
            "created_at",
            "sent_at",
        ]


class ContactMessagesApi(OrganizationApiView):
    ordering_fields = ("created_at",)

    @extend_schema(
        operation_id="contacts_messages_list",
        tags=["contacts"],
        parameters=[ordering_parameter(*ordering_fields)],
        responses=MessageOutput(many=True),
    )
    def get(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        return self.paginate(selectors.contact_messages(contact=contact), MessageOutput)


class TimelineEntryOutput(serializers.Serializer):
    source = serializers.ChoiceField(
        choices=list(selectors.TIMELINE_RANKS), help_text="delivery: an open, click, bounce...; custom: a custom event."
    )
    id = serializers.IntegerField()
    name = serializers.CharField(help_text="The delivery event's type, or the custom event's name.")
    occurred_at = serializers.DateTimeField()
    message_id = serializers.IntegerField(allow_null=True)
    url = serializers.CharField(help_text="The link clicked, for clicks.")
    is_machine = serializers.BooleanField(help_text="An open or click that looks automated.")
    properties = serializers.DictField(help_text="A custom event's properties.")


class TimelinePageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page; this list pages forward only.")
    results = TimelineEntryOutput(many=True)


def _timeline_cursor(key: selectors.TimelineKey) -> str:
    raw = json.dumps([key[0].isoformat(), key[1], key[2]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _timeline_key(cursor: str) -> selectors.TimelineKey:
    try:
        moment, rank, entry_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = dt.datetime.fromisoformat(moment)
        if moment.tzinfo is None or rank not in selectors.TIMELINE_RANKS.values():
            raise ValueError(cursor)
        moment = moment.astimezone(dt.UTC)
        if not isinstance(entry_id, int) or not 0 <= entry_id <= MAX_ID:
            raise ValueError(cursor)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise exceptions.ValidationError({"cursor": "This is not a cursor this list gave out."}) from None
    return moment, rank, entry_id


class ContactEventsApi(OrganizationApiView):
    @extend_schema(
        operation_id="contacts_events_list",
        tags=["contacts"],
        summary="A contact's delivery events and custom events, newest first",
        parameters=[
            OpenApiParameter("cursor", str, OpenApiParameter.QUERY, required=False),
            OpenApiParameter("page_size", int, OpenApiParameter.QUERY, required=False),
        ],
        responses=TimelinePageOutput,
    )
    def get(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        cursor = request.query_params.get("cursor")
        limit = CursorPage().get_page_size(request)
        entries = selectors.contact_timeline(
            contact=contact, older_than=_timeline_key(cursor) if cursor else None, limit=limit + 1
        )
        following = None
        if len(entries) > limit:
            entries = entries[:limit]
            position = _timeline_cursor(selectors.timeline_key(entries[-1]))
            following = replace_query_param(request.build_absolute_uri(), "cursor", position)
        return Response(TimelinePageOutput({"next": following, "results": entries}).data)


class SuppressionOutput(serializers.Serializer):
    reason = serializers.ChoiceField(choices=Suppression.Reason.choices)
    created_at = serializers.DateTimeField()


class EnrollmentExportOutput(serializers.Serializer):
    id = serializers.IntegerField()
    sequence_id = serializers.IntegerField()
    sequence_name = serializers.CharField(source="sequence__name")
    status = serializers.ChoiceField(choices=Enrollment.Status.choices)
    exit_reason = serializers.CharField()
    enrolled_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class DeliveryEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    message_id = serializers.IntegerField(allow_null=True)
    type = serializers.ChoiceField(choices=Event.Type.choices)
    occurred_at = serializers.DateTimeField()
    ip = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField()
    url = serializers.CharField()
    is_machine = serializers.BooleanField()


class CustomEventOutput(serializers.ModelSerializer):
    properties = serializers.DictField()

    class Meta:
        model = ContactEvent
        fields = ["id", "contact_id", "name", "properties", "occurred_at", "received_at"]


class ContactExportOutput(serializers.Serializer):
    exported_at = serializers.DateTimeField()
    contact = ContactOutput(help_text="Details, consent, lists and tags.")
    suppression = SuppressionOutput(allow_null=True, help_text="Why the address may not be mailed, if so.")
    enrollments = EnrollmentExportOutput(many=True)
    messages = MessageOutput(many=True)
    delivery_events = DeliveryEventOutput(many=True)
    custom_events = CustomEventOutput(many=True)
    consent_records = ConsentRecordOutput(many=True, help_text="Every consent given or withdrawn, oldest first.")


class ContactExportApi(OrganizationApiView):
    @extend_schema(
        operation_id="contacts_export",
        tags=["contacts"],
        summary="Everything stored about one person, as JSON (GDPR access request)",
        responses=ContactExportOutput,
    )
    def get(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        return Response(ContactExportOutput(selectors.contact_export(contact=contact)).data)


class ErasureOutput(serializers.Serializer):
    contact_id = serializers.IntegerField()
    email_hash = serializers.CharField(help_text="SHA-256 of the address: all that is kept, as a suppression.")
    deleted = serializers.DictField(child=serializers.IntegerField(), help_text="Rows deleted, by kind.")


class ContactEraseApi(OrganizationApiView):
    @extend_schema(
        operation_id="contacts_erase",
        tags=["contacts"],
        summary="Erase a person (GDPR): delete the contact and its history, keep only a hashed suppression",
        request=None,
        responses=ErasureOutput,
    )
    def post(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        erasure = services.contact_erase(contact=contact, source=f"api ({caller_identity(request)})")
        return Response(ErasureOutput(erasure).data)


class UnsubscribeInput(serializers.Serializer):
    detail = serializers.CharField(max_length=500, allow_blank=True, default="", help_text="Why, for the record.")


class ContactUnsubscribeApi(OrganizationApiView):
    @extend_schema(
        operation_id="contacts_unsubscribe",
        tags=["contacts"],
        summary="Unsubscribe: no more mail, every sequence left, the address suppressed",
        request=UnsubscribeInput,
        responses=ContactOutput,
    )
    def post(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        detail = _parsed(UnsubscribeInput, request.data)["detail"]
        services.contact_unsubscribe(contact=contact, source=f"api ({caller_identity(request)})", detail=detail)
        return _contact_answer(self.organization, contact_id)


# Lists ----------------------------------------------------------------------------------------


class ListOutput(serializers.ModelSerializer):
    contact_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = ContactList
        fields = ["id", "name", "description", "is_public", "created_at", "contact_count"]


class ListInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=2000, allow_blank=True, default="")
    is_public = serializers.BooleanField(
        default=False, help_text="Offered on subscribe forms without a list of their own and on the preference page."
    )


class ListCollectionApi(OrganizationApiView):
    ordering_fields = ("name", "created_at")

    @extend_schema(
        operation_id="lists_list",
        tags=["lists"],
        parameters=[ordering_parameter(*ordering_fields)],
        responses=ListOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.list_list(organization=self.organization), ListOutput)

    @extend_schema(operation_id="lists_create", tags=["lists"], request=ListInput, responses={201: ListOutput})
    @idempotent
    def post(self, request: Request) -> Response:
        contact_list = services.list_create(organization=self.organization, **_parsed(ListInput, request.data))
        contact_list = selectors.list_get(organization=self.organization, list_id=contact_list.pk)
        return Response(ListOutput(contact_list).data, status=status.HTTP_201_CREATED)


class ListItemApi(OrganizationApiView):
    @extend_schema(operation_id="lists_retrieve", tags=["lists"], responses=ListOutput)
    def get(self, request: Request, list_id: int) -> Response:
        return Response(ListOutput(selectors.list_get(organization=self.organization, list_id=list_id)).data)

    @extend_schema(operation_id="lists_update", tags=["lists"], request=ListInput, responses=ListOutput)
    def put(self, request: Request, list_id: int) -> Response:
        return self._update(request, list_id, partial=False)

    @extend_schema(
        operation_id="lists_partial_update", tags=["lists"], request=ListInput(partial=True), responses=ListOutput
    )
    def patch(self, request: Request, list_id: int) -> Response:
        return self._update(request, list_id, partial=True)

    def _update(self, request: Request, list_id: int, *, partial: bool) -> Response:
        contact_list = selectors.list_get(organization=self.organization, list_id=list_id)
        services.list_update(contact_list=contact_list, **_parsed(ListInput, request.data, partial=partial))
        return Response(ListOutput(selectors.list_get(organization=self.organization, list_id=list_id)).data)

    @extend_schema(operation_id="lists_destroy", tags=["lists"], responses={204: None})
    def delete(self, request: Request, list_id: int) -> Response:
        services.list_delete(contact_list=selectors.list_get(organization=self.organization, list_id=list_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ListContactsFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Contact.Status.choices, required=False)


class ListContactsApi(OrganizationApiView):
    ordering_fields = CONTACT_ORDERING

    @extend_schema(
        operation_id="lists_contacts_list",
        tags=["lists"],
        parameters=[ListContactsFilterInput, ordering_parameter(*CONTACT_ORDERING)],
        responses=ContactOutput(many=True),
    )
    def get(self, request: Request, list_id: int) -> Response:
        contact_list = selectors.list_get(organization=self.organization, list_id=list_id)
        filters = _parsed(ListContactsFilterInput, request.query_params)
        contacts = selectors.contacts_filter(organization=self.organization, list_id=contact_list.pk, **filters)
        return self.paginate(contacts, ContactOutput)


# Custom events --------------------------------------------------------------------------------

# Events dated further ahead than this are refused: a clock that far off is a bug to report.
EVENT_CLOCK_SKEW = dt.timedelta(days=1)
EVENT_PROPERTIES_MAX_BYTES = 16 * 1024


class EventInput(serializers.Serializer):
    """One custom event. Only documents the shape: items are checked by `_event_item`."""

    email = serializers.CharField(max_length=254, required=False, help_text="The contact's address; or contact_id.")
    contact_id = IdField(required=False, help_text="The contact's id; or email.")
    name = serializers.CharField(max_length=200, help_text='What happened, e.g. "purchased". Matched exactly.')
    properties = JSONObjectField(required=False, max_bytes=EVENT_PROPERTIES_MAX_BYTES)
    occurred_at = serializers.DateTimeField(
        required=False, help_text="ISO 8601; without an offset it is UTC; default: now. At most a day ahead."
    )


@extend_schema_field(EventInput(many=True))
class EventItemsField(serializers.ListField):
    """The events, each checked on its own afterwards: a bad event is rejected, not the batch."""


class EventBatchInput(serializers.Serializer):
    events = EventItemsField(min_length=1, max_length=services.EVENT_BATCH_LIMIT)


class ItemRejectionOutput(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the event in the batch, from 0.")
    errors = ItemError(many=True)


class EventIngestOutput(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events stored.")
    rejected = ItemRejectionOutput(many=True, help_text="Events not stored, and why.")


def _storable(text: str) -> bool:
    """Text PostgreSQL can store: no NUL, no lone surrogates (JSON may smuggle them in)."""
    try:
        check_json(text)
    except serializers.ValidationError:
        return False
    return True


def _event_item(index: int, item: Any, now: dt.datetime) -> services.NewContactEvent | services.ItemRejection:
    """One event of a batch, checked by hand: at 500 events a call, DRF fields cost more than
    the insert. Enforces what EventInput documents."""
    if not isinstance(item, dict):
        return services.ItemRejection(index, [{"field": "", "message": "Expected an event object.", "code": "invalid"}])
    errors = []
    email, contact_id = item.get("email"), item.get("contact_id")
    if (email is None) == (contact_id is None):
        errors.append(("email", "Give the contact's email or its contact_id (one of them).", "required"))
    elif email is not None and (not isinstance(email, str) or len(email) > 254):
        errors.append(("email", "Enter an address of at most 254 characters.", "invalid"))
    elif contact_id is not None and (type(contact_id) is not int or not 1 <= contact_id <= MAX_ID):
        errors.append(("contact_id", "Enter the id of a contact (a positive 64-bit integer).", "invalid"))
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not _storable(name):
        errors.append(("name", "Enter a name of 1 to 200 characters.", "invalid"))
    properties = item.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        errors.append(("properties", "Expected a JSON object of names to values.", "invalid"))
    else:
        try:
            check_json(properties)
            if len(json.dumps(properties, ensure_ascii=False)) > EVENT_PROPERTIES_MAX_BYTES:
                raise serializers.ValidationError(f"At most {EVENT_PROPERTIES_MAX_BYTES} characters of JSON.")
        except serializers.ValidationError as error:
            errors.append(("properties", str(error.detail[0]), "invalid"))
    occurred_at = item.get("occurred_at")
    if occurred_at is None:
        occurred_at = now
    else:
        try:
            occurred_at = dt.datetime.fromisoformat(occurred_at)
            if occurred_at.tzinfo is None:
                occurred_at = occurred_at.replace(tzinfo=dt.UTC)
            occurred_at = occurred_at.astimezone(dt.UTC)
            if occurred_at > now + EVENT_CLOCK_SKEW:
                errors.append(("occurred_at", "This is more than a day ahead of the server's clock.", "invalid"))
        except (TypeError, ValueError, OverflowError):
            errors.append(("occurred_at", "Enter a date and time in ISO 8601 (2026-01-31T09:30:00Z).", "invalid"))
    if errors:
        return services.ItemRejection(index, [{"field": f, "message": m, "code": c} for f, m, c in errors])
    return services.NewContactEvent(
        index=index,
        name=name.strip(),
        occurred_at=occurred_at,
        properties=properties,
        email=email,
        contact_id=contact_id,
    )


class EventFilterInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    contact_id = IdField(required=False)
    occurred_after = serializers.DateTimeField(required=False, help_text="At or after this time.")
    occurred_before = serializers.DateTimeField(required=False, help_text="Before this time.")


class EventCollectionApi(OrganizationApiView):
    ordering_fields = ("occurred_at", "received_at")

    @extend_schema(
        operation_id="events_list",
        tags=["events"],
        parameters=[EventFilterInput, ordering_parameter(*ordering_fields)],
        responses=CustomEventOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = _parsed(EventFilterInput, request.query_params)
        return self.paginate(
            selectors.custom_events_filter(organization=self.organization, **filters), CustomEventOutput
        )

    @extend_schema(
        operation_id="events_ingest",
        tags=["events"],
        summary=f"Report custom events: one event, or a batch of up to {services.EVENT_BATCH_LIMIT:,}",
        description=(
            "One event (an object with `name`) answers 201, or a problem: 400 when it is invalid, "
            '404 when its contact is not one of the organization\'s. A batch (`{"events": [...]}`) '
            "stores every valid event and answers 201 when all were stored, or 200 listing the "
            "rejected ones by index with their errors (a multi-status answer)."
        ),
        request=PolymorphicProxySerializer(
            component_name="EventIngest", serializers=[EventInput, EventBatchInput], resource_type_field_name=None
        ),
        responses={
            201: EventIngestOutput,
            200: OpenApiResponse(EventIngestOutput, description="Some events of the batch were rejected."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        now = timezone.now()
        body = request.data
        single = not (isinstance(body, dict) and "events" in body)
        items = [body] if single else _parsed(EventBatchInput, body)["events"]
        parsed = [_event_item(index, item, now) for index, item in enumerate(items)]
        rejected = [item for item in parsed if isinstance(item, services.ItemRejection)]
        if single and rejected:
            raise exceptions.ValidationError({error["field"]: [error["message"]] for error in rejected[0].errors})
        report = services.contact_events_ingest(
            organization=self.organization,
            events=[item for item in parsed if isinstance(item, services.NewContactEvent)],
        )
        if single and report.rejected:
            error = report.rejected[0].errors[0]
            if error["code"] == "not_found":
                raise exceptions.NotFound(f"{error['field']}: {error['message']}")
            raise exceptions.ValidationError({error["field"]: [error["message"]]})
        rejected = sorted([*rejected, *report.rejected], key=lambda rejection: rejection.index)
        answer = EventIngestOutput({"accepted": report.accepted, "rejected": rejected}).data
        return Response(answer, status=status.HTTP_200_OK if rejected else status.HTTP_201_CREATED)
