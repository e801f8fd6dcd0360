"""REST operations on subscribe forms and on a contact's consent records.

Views parse, call one service or selector scoped to the request's organization, and render. A
form's answer carries its hosted URL and the HTML to embed on another site.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.fields import IdField
from api.idempotency import idempotent
from api.schema import ordering_parameter
from api.views import OrganizationApiView
from subscribers import consent, links, selectors
from subscribers.models import ConsentRecord, SubscribeForm

FORMS_TAG = ["subscribe forms"]


class SubscribeFormOutput(serializers.ModelSerializer):
    list_id = serializers.IntegerField(source="contact_list_id", allow_null=True)
    hosted_url = serializers.SerializerMethodField(help_text="The hosted sign-up page; it also takes POSTs.")
    embed_html = serializers.SerializerMethodField(help_text="A form to paste into another site.")

    class Meta:
        model = SubscribeForm
        fields = [
            "id",
            "name",
            "token",
            "list_id",
            "consent_wording",
            "redirect_url",
            "is_active",
            "created_at",
            "hosted_url",
            "embed_html",
        ]

    def get_hosted_url(self, form: SubscribeForm) -> str:
        return links.subscribe_url(form.token)

    def get_embed_html(self, form: SubscribeForm) -> str:
        return consent.embed_snippet(form)


class SubscribeFormInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    consent_wording = serializers.CharField(
        max_length=5000, help_text="Shown next to the button and stored with each consent given."
    )
    list_id = IdField(
        allow_null=True,
        default=None,
        help_text="The list sign-ups join; null: they choose among the public lists.",
    )
    redirect_url = serializers.URLField(max_length=200, allow_blank=True, default="")
    is_active = serializers.BooleanField(default=True)


def _form_fields(organization: Any, data: dict[str, Any]) -> dict[str, Any]:
    if "list_id" in data:
        list_id = data.pop("list_id")
        data["contact_list"] = (
            selectors.lists_get_many(organization=organization, list_ids=[list_id], field="list_id")[0]
            if list_id is not None
            else None
        )
    return data


def _parsed(data: Any, *, partial: bool = False) -> dict[str, Any]:
    parser = SubscribeFormInput(data=data, partial=partial)
    parser.is_valid(raise_exception=True)
    return dict(parser.validated_data)


class SubscribeFormCollectionApi(OrganizationApiView):
    ordering_fields = ("name", "created_at")

    @extend_schema(
        operation_id="subscribe_forms_list",
        tags=FORMS_TAG,
        parameters=[ordering_parameter(*ordering_fields)],
        responses=SubscribeFormOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.subscribe_form_list(organization=self.organization), SubscribeFormOutput)

    @extend_schema(
        operation_id="subscribe_forms_create",
        tags=FORMS_TAG,
        request=SubscribeFormInput,
        responses={201: SubscribeFormOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        fields = _form_fields(self.organization, _parsed(request.data))
        form = consent.subscribe_form_create(organization=self.organization, **fields)
        form = selectors.subscribe_form_get(organization=self.organization, form_id=form.pk)
        return Response(SubscribeFormOutput(form).data, status=status.HTTP_201_CREATED)


class SubscribeFormItemApi(OrganizationApiView):
    @extend_schema(operation_id="subscribe_forms_retrieve", tags=FORMS_TAG, responses=SubscribeFormOutput)
    def get(self, request: Request, form_id: int) -> Response:
        form = selectors.subscribe_form_get(organization=self.organization, form_id=form_id)
        return Response(SubscribeFormOutput(form).data)

    @extend_schema(
        operation_id="subscribe_forms_update", tags=FORMS_TAG, request=SubscribeFormInput, responses=SubscribeFormOutput
    )
    def put(self, request: Request, form_id: int) -> Response:
        return self._update(request, form_id, partial=False)

    @extend_schema(
        operation_id="subscribe_forms_partial_update",
        tags=FORMS_TAG,
        request=SubscribeFormInput(partial=True),
        responses=SubscribeFormOutput,
    )
    def patch(self, request: Request, form_id: int) -> Response:
        return self._update(request, form_id, partial=True)

    def _update(self, request: Request, form_id: int, *, partial: bool) -> Response:
        form = selectors.subscribe_form_get(organization=self.organization, form_id=form_id)
        fields = _form_fields(self.organization, _parsed(request.data, partial=partial))
        consent.subscribe_form_update(form=form, **fields)
        form = selectors.subscribe_form_get(organization=self.organization, form_id=form_id)
        return Response(SubscribeFormOutput(form).data)

    @extend_schema(operation_id="subscribe_forms_destroy", tags=FORMS_TAG, responses={204: None})
    def delete(self, request: Request, form_id: int) -> Response:
        form = selectors.subscribe_form_get(organization=self.organization, form_id=form_id)
        consent.subscribe_form_delete(form=form)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConsentRecordOutput(serializers.ModelSerializer):
    contact_id = serializers.IntegerField(allow_null=True)
    actor = serializers.CharField(source="actor.get_username", allow_null=True, default=None)
    detail = serializers.JSONField()

    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "contact_id",
            "action",
            "source",
            "ip",
            "user_agent",
            "wording",
            "detail",
            "actor",
            "occurred_at",
        ]


class ContactConsentApi(OrganizationApiView):
    @extend_schema(
        operation_id="contacts_consent_list",
        tags=["contacts"],
        summary="The consent records of the contact's address, newest first (erased earlier contacts' included)",
        responses=ConsentRecordOutput(many=True),
    )
    def get(self, request: Request, contact_id: int) -> Response:
        contact = selectors.contact_get(organization=self.organization, contact_id=contact_id)
        records = selectors.consent_history(contact=contact).select_related("actor")
        return self.paginate(records, ConsentRecordOutput)
