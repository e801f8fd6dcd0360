"""REST operations on CSV imports of contacts and CSV exports of them."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api.fields import IdField, JSONObjectField
from api.idempotency import idempotent
from api.pagination import CursorPage
from api.schema import ordering_parameter
from api.views import OrganizationApiView
from subscribers import exporting, importing
from subscribers.models import Contact, ContactImport, ImportRejection

IMPORT_FIELDS_HELP = (
    "email, first_name, last_name, timezone, tags (names separated by commas or semicolons) or properties.<name>"
)


@extend_schema_field({"type": "string", "description": "A JSON object: column header -> field."})
class MappingField(JSONObjectField):
    """A JSON object sent as a form field's text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(binary=True, **kwargs)


class ImportInput(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=True,
        help_text="A CSV file: UTF-8 (a byte order mark is fine), the first row naming the columns.",
    )
    mapping = MappingField(
        required=False,
        help_text=f"Column header -> field ({IMPORT_FIELDS_HELP}). Default: the columns named like a field. "
        "Unmapped columns are ignored; one column must map to email.",
    )
    list_id = IdField(required=False, allow_null=True, help_text="Add every imported contact to this list.")
    existing = serializers.ChoiceField(
        choices=ContactImport.Existing.choices,
        default=ContactImport.Existing.SKIP,
        help_text="skip: leave contacts that already exist as they are (not added to the list either); "
        "update: fill in their non-empty cells, merge properties, add them to the list and tags.",
    )
    consent_source = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Where these contacts gave consent; default “import:<file name>”.",
    )


class ImportOutput(serializers.ModelSerializer):
    list_id = IdField(source="contact_list_id", allow_null=True, read_only=True)
    mapping = serializers.DictField(child=serializers.CharField(), read_only=True)
    bytes_processed = serializers.IntegerField(source="byte_offset", read_only=True)
    percentage = serializers.SerializerMethodField()
    created = serializers.IntegerField(source="created_count", read_only=True)
    updated = serializers.IntegerField(source="updated_count", read_only=True)
    skipped = serializers.IntegerField(source="skipped_count", read_only=True)
    rejected = serializers.IntegerField(source="rejected_count", read_only=True)

    class Meta:
        model = ContactImport
        fields = [
            "id",
            "status",
            "filename",
            "file_size",
            "bytes_processed",
            "percentage",
            "rows_processed",
            "created",
            "updated",
            "skipped",
            "rejected",
            "error",
            "mapping",
            "list_id",
            "existing",
            "consent_source",
            "created_at",
            "started_at",
            "finished_at",
        ]

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_percentage(self, contact_import: ContactImport) -> float:
        """How much of the file is done, by bytes (0 to 100)."""
        if contact_import.status == ContactImport.Status.COMPLETED:
            return 100.0
        if not contact_import.file_size:
            return 0.0
        return round(min(100.0, 100 * contact_import.byte_offset / contact_import.file_size), 1)


class RejectionOutput(serializers.ModelSerializer):
    class Meta:
        model = ImportRejection
        fields = ["id", "line", "reason", "raw"]


class ImportCollectionApi(OrganizationApiView):
    """CSV imports of contacts, newest first; uploading one starts it in the background."""

    parser_classes = [MultiPartParser]
    ordering_fields = ("created_at",)

    @extend_schema(
        operation_id="imports_list",
        tags=["imports"],
        parameters=[ordering_parameter(*ordering_fields)],
        responses=ImportOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginate(importing.contact_import_list(organization=self.organization), ImportOutput)

    @extend_schema(
        operation_id="imports_create",
        tags=["imports"],
        request={"multipart/form-data": ImportInput},
        responses={201: ImportOutput},
        description="Upload a CSV of contacts. The header and mapping are checked at once; the rows are "
        "imported in the background: follow the import's status and counts, and read its rejected rows.",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = ImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        contact_import = importing.contact_import_create(
            organization=self.organization,
            upload=data.validated_data["file"],
            mapping=data.validated_data.get("mapping"),
            list_id=data.validated_data.get("list_id"),
            existing=data.validated_data["existing"],
            consent_source=data.validated_data["consent_source"],
            created_by=request.user,
        )
        return Response(ImportOutput(contact_import).data, status=status.HTTP_201_CREATED)


class ImportItemApi(OrganizationApiView):
    """One import: its status, how much of the file is done, its counts and its error if it failed."""

    @extend_schema(operation_id="imports_retrieve", tags=["imports"], responses=ImportOutput)
    def get(self, request: Request, import_id: int) -> Response:
        contact_import = importing.contact_import_get(organization=self.organization, import_id=import_id)
        return Response(ImportOutput(contact_import).data)


class RejectionPage(CursorPage):
    ordering = ("line",)


class ImportRejectionCollectionApi(OrganizationApiView):
    """The rows an import could not take, by line (the header is line 1), with the reason and the row."""

    pagination_class = RejectionPage
    ordering_fields = ("line",)

    @extend_schema(
        operation_id="imports_rejections_list",
        tags=["imports"],
        parameters=[ordering_parameter(*ordering_fields)],
        responses=RejectionOutput(many=True),
    )
    def get(self, request: Request, import_id: int) -> Response:
        contact_import = importing.contact_import_get(organization=self.organization, import_id=import_id)
        return self.paginate(importing.import_rejection_list(contact_import=contact_import), RejectionOutput)


class CsvRenderer(BaseRenderer):
    """Lets clients ask for text/csv. Exports stream their own response; only problems get here."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data)


class ContactExportQuery(serializers.Serializer):
    list_id = IdField(required=False, help_text="Only the contacts of this list.")
    tag_id = IdField(required=False, help_text="Only the contacts with this tag.")
    status = serializers.ChoiceField(
        choices=Contact.Status.choices, required=False, help_text="Only contacts in this status."
    )


class ContactExportApi(OrganizationApiView):
    """The organization's contacts as a CSV file, streamed; optionally of one list, tag or status."""

    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        operation_id="exports_contacts",
        tags=["exports"],
        parameters=[ContactExportQuery],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="Columns email, first_name, last_name, status, timezone, created_at, lists, tags, then "
                "properties.<name> for every property name among the exported contacts. A cell that starts with "
                "=, +, -, @, a tab or a carriage return gets a leading ' so that spreadsheets do not run it.",
            )
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = ContactExportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        export = exporting.contact_export(organization=self.organization, **query.validated_data)
        response = StreamingHttpResponse(export.lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response
