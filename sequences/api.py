"""REST operations on email sequences (with their steps, enrollments and analytics) and templates.

Each view parses with an input serializer, calls one service or selector, and renders with an
output serializer. Every lookup goes through the request's organization; ids of other
organizations' objects, in the URL or in the body, answer 404.

Steps refer to each other by position (1 for the first step), in request bodies and answers
alike: `yes_step`, `no_step` and the `step` of an opened/clicked condition name a place in the
`steps` list, so a sequence can be created with its branches in one request, and an answer can be
sent back as it is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.dateparse import parse_duration
from django.utils.duration import duration_iso_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from api.fields import IdField, JSONObjectField
from api.idempotency import idempotent
from api.permissions import Access
from api.problems import PROBLEM_CONTENT_TYPE, Conflict
from api.schema import PROBLEM_SCHEMA, ordering_parameter
from api.views import OrganizationApiView
from delivery import selectors as delivery_selectors
from delivery import services as delivery_services
from delivery.transports import Outcome, TransportUnavailable
from organizations.models import Organization
from sequences import selectors, services
from sequences.models import Enrollment, Sequence, Step, all_weekdays
from sequences.personalization import RenderError
from subscribers.addresses import normalize_email

MAX_STEPS = 100
MAX_DELAY = dt.timedelta(days=3650)
MAX_BODY_CHARACTERS = 1_000_000
SEQUENCES_TAG = ["email-sequences"]
TEMPLATES_TAG = ["templates"]


@contextlib.contextmanager
def state_conflicts_as_409() -> Iterator[None]:
    """A service's StateConflict clashes with the current state: a 409, not bad input."""
    try:
        yield
    except services.StateConflict as error:
        raise Conflict(" ".join(error.messages)) from None


class JsonApiView(OrganizationApiView):
    """Bodies are JSON only: steps nest, which form encodings cannot express."""

    parser_classes = [JSONParser]


def _status_filter(choices: type[Any]) -> OpenApiParameter:
    return OpenApiParameter("status", str, OpenApiParameter.QUERY, required=False, enum=list(choices.values))


# The sequence routes are regular expressions (to take the trailing slash or not): the type of
# their id is declared here.
SEQUENCE_ID = OpenApiParameter("sequence_id", int, OpenApiParameter.PATH, description="The sequence's id.")


# Fields ---------------------------------------------------------------------------------------


@extend_schema_field({"type": "string", "example": "P2DT4H", "description": "An ISO 8601 duration."})
class DurationField(serializers.Field):
    """An ISO 8601 duration such as P2D or PT4H30M; answers are always in that form."""

    default_error_messages = {
        "invalid": "Use an ISO 8601 duration, for example P2D (two days) or PT4H30M.",
        "range": f"A delay lasts at most {MAX_DELAY.days} days.",
    }

    def to_internal_value(self, data: Any) -> dt.timedelta:
        if not isinstance(data, str) or len(data) > 64:
            self.fail("invalid")
        try:
            value = parse_duration(data.strip())
        except (ValueError, OverflowError):
            value = None
        if value is None:
            self.fail("invalid")
        if abs(value) > MAX_DELAY:
            self.fail("range")
        return value

    def to_representation(self, value: dt.timedelta) -> str:
        return duration_iso_string(value)


def _reference_not_found(field: str, what: str, value: Any) -> exceptions.NotFound:
    return exceptions.NotFound(f"{field}: there is no {what} {value}.")


# Templates ------------------------------------------------------------------------------------


class TemplateOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    subject = serializers.CharField()
    html_body = serializers.CharField()
    text_body = serializers.CharField(help_text="Empty: the text part is derived from the HTML.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TemplateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    subject = serializers.CharField(max_length=500, help_text="Liquid, like the bodies.")
    html_body = serializers.CharField(max_length=MAX_BODY_CHARACTERS, help_text="Liquid markup.")
    text_body = serializers.CharField(
        max_length=MAX_BODY_CHARACTERS,
        allow_blank=True,
        default="",
        help_text="Leave empty to derive it from the HTML.",
    )


class SampleContactInput(serializers.Serializer):
    email = serializers.CharField(max_length=254, allow_blank=True, default="")
    first_name = serializers.CharField(max_length=150, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, allow_blank=True, default="")
    properties = JSONObjectField(default=dict)


class RenderForInput(serializers.Serializer):
    contact_id = IdField(required=False, help_text="Render for this contact of the organization.")
    contact = SampleContactInput(required=False, help_text="Or for these made-up contact data.")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "contact_id" in data and "contact" in data:
            raise serializers.ValidationError("Give contact_id or contact, not both.")
        return data

    def sample_contact(self, organization: Organization) -> delivery_selectors.SampleContact:
        data = self.validated_data
        if "contact_id" in data:
            contact = selectors.contact_get(organization=organization, contact_id=data["contact_id"])
            return delivery_selectors.SampleContact.of(contact)
        return delivery_selectors.SampleContact(**data.get("contact", {}))


class SendTestInput(RenderForInput):
    to = serializers.CharField(max_length=254, help_text="Where the one test email goes.")
    sequence_id = IdField(
        required=False, help_text="Send from this sequence's sender (default: a sequence using the template)."
    )

    def validate_to(self, value: str) -> str:
        try:
            return normalize_email(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None


class PreviewOutput(serializers.Serializer):
    subject = serializers.CharField()
    html = serializers.CharField()
    text = serializers.CharField()


class SendTestOutput(serializers.Serializer):
    to = serializers.CharField()
    sender = serializers.CharField(help_text="The From header.")
    subject = serializers.CharField()
    message_id = serializers.CharField(help_text="The Message-ID header.")
    route = serializers.CharField(help_text="The configured delivery route: smtp, capture, anymail or console.")
    response = serializers.CharField(help_text="What the route answered.")


class MailRouteRefused(exceptions.APIException):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "The mail server refused the test email."
    default_code = "mail_refused"


class MailRouteUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The mail route is unavailable."
    default_code = "mail_route_unavailable"


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=PROBLEM_SCHEMA, description=description)


@contextlib.contextmanager
def render_errors_as_400() -> Iterator[None]:
    try:
        yield
    except RenderError as error:
        raise serializers.ValidationError(f"The template failed to render: {error}") from None


class TemplateCollectionApi(JsonApiView):
    """The organization's email templates (subject and bodies in Liquid)."""

    ordering_fields = ("name", "created_at")

    @extend_schema(
        operation_id="templates_list",
        tags=TEMPLATES_TAG,
        parameters=[ordering_parameter(*ordering_fields)],
        responses=TemplateOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.template_list(organization=self.organization), TemplateOutput)

    @extend_schema(
        operation_id="templates_create", tags=TEMPLATES_TAG, request=TemplateInput, responses={201: TemplateOutput}
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = TemplateInput(data=request.data)
        data.is_valid(raise_exception=True)
        template = services.template_create(organization=self.organization, **data.validated_data)
        return Response(TemplateOutput(template).data, status=status.HTTP_201_CREATED)


class TemplateItemApi(JsonApiView):
    """One email template."""

    @extend_schema(operation_id="templates_retrieve", tags=TEMPLATES_TAG, responses=TemplateOutput)
    def get(self, request: Request, template_id: int) -> Response:
        template = selectors.template_get(organization=self.organization, template_id=template_id)
        return Response(TemplateOutput(template).data)

    @extend_schema(operation_id="templates_update", tags=TEMPLATES_TAG, request=TemplateInput, responses=TemplateOutput)
    def put(self, request: Request, template_id: int) -> Response:
        return self._update(template_id, partial=False)

    @extend_schema(
        operation_id="templates_partial_update", tags=TEMPLATES_TAG, request=TemplateInput, responses=TemplateOutput
    )
    def patch(self, request: Request, template_id: int) -> Response:
        return self._update(template_id, partial=True)

    def _update(self, template_id: int, *, partial: bool) -> Response:
        template = selectors.template_get(organization=self.organization, template_id=template_id)
        data = TemplateInput(data=self.request.data, partial=partial)
        data.is_valid(raise_exception=True)
        template = services.template_update(template=template, **data.validated_data)
        return Response(TemplateOutput(template).data)

    @extend_schema(
        operation_id="templates_destroy",
        tags=TEMPLATES_TAG,
        responses={204: None},
        description="Refused with 409 while a step of any sequence uses the template.",
    )
    def delete(self, request: Request, template_id: int) -> Response:
        template = selectors.template_get(organization=self.organization, template_id=template_id)
        with state_conflicts_as_409():
            services.template_delete(template=template)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplatePreviewApi(JsonApiView):
    """A template rendered for a contact."""

    # Renders without changing anything: a viewer may look.
    required_access = {"POST": Access.READ}

    @extend_schema(
        operation_id="templates_preview",
        tags=TEMPLATES_TAG,
        request=RenderForInput,
        responses=PreviewOutput,
        description=(
            "The subject, HTML and text a contact would get, rendered the way real sends are (footer "
            "included), but with links untracked. Without a contact, renders for an empty one."
        ),
    )
    def post(self, request: Request, template_id: int) -> Response:
        template = selectors.template_get(organization=self.organization, template_id=template_id)
        data = RenderForInput(data=request.data)
        data.is_valid(raise_exception=True)
        with render_errors_as_400():
            composed = delivery_selectors.template_compose(
                template=template,
                organization=self.organization,
                contact=data.sample_contact(self.organization),
                sender=delivery_selectors.Sender(email=settings.DEFAULT_FROM_EMAIL),
            )
        return Response(PreviewOutput({"subject": composed.subject, "html": composed.html, "text": composed.text}).data)


class TemplateTestSendApi(JsonApiView):
    """One test email of a template."""

    @extend_schema(
        operation_id="templates_test_send",
        tags=TEMPLATES_TAG,
        request=SendTestInput,
        responses={
            200: SendTestOutput,
            (502, PROBLEM_CONTENT_TYPE): _problem("The mail server refused the test email."),
            (503, PROBLEM_CONTENT_TYPE): _problem("The mail route is unavailable; try again later."),
        },
        description=(
            'Sends one email now through the configured route, subject prefixed "[Test] ", never tracked '
            "and not recorded as any contact's message. Rendered for contact_id or contact when given."
        ),
    )
    @idempotent
    def post(self, request: Request, template_id: int) -> Response:
        template = selectors.template_get(organization=self.organization, template_id=template_id)
        data = SendTestInput(data=request.data)
        data.is_valid(raise_exception=True)
        sequence = None
        if "sequence_id" in data.validated_data:
            sequence = selectors.sequence_for_reference(
                organization=self.organization, sequence_id=data.validated_data["sequence_id"], field_name="sequence_id"
            )
        with render_errors_as_400():
            try:
                composed, result = delivery_services.template_send_test(
                    template=template,
                    organization=self.organization,
                    to=data.validated_data["to"],
                    contact=data.sample_contact(self.organization),
                    sender=delivery_selectors.template_sender(template=template, sequence=sequence),
                )
            except TransportUnavailable as error:
                raise MailRouteUnavailable(f"The mail route is unavailable: {error}") from None
        if result.outcome is not Outcome.ACCEPTED:
            raise MailRouteRefused(f"The mail server refused the test email: {result.response}")
        answer = {
            "to": composed.recipient,
            "sender": composed.from_header,
            "subject": composed.subject,
            "message_id": composed.message_id_header,
            "route": settings.EMAIL.kind,
            "response": result.response,
        }
        return Response(SendTestOutput(answer).data)


# Sequences ------------------------------------------------------------------------------------


class StepInput(serializers.Serializer):
    id = IdField(required=False, help_text="An existing step of this sequence to keep (PUT); leave out for a new step.")
    kind = serializers.ChoiceField(choices=Step.Kind.choices)
    name = serializers.CharField(max_length=200, allow_blank=True, default="")
    template_id = IdField(allow_null=True, default=None, help_text="The template an email step sends.")
    delay = DurationField(allow_null=True, default=None, help_text="How long a delay step waits (ISO 8601, e.g. P2D).")
    delay_seconds = serializers.IntegerField(
        min_value=1, max_value=int(MAX_DELAY.total_seconds()), allow_null=True, default=None, help_text="Or in seconds."
    )
    wait_until_time = serializers.TimeField(
        allow_null=True, default=None, help_text="A wait-until step waits for this time of the contact's day."
    )
    wait_until_days = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6),
        max_length=7,
        default=all_weekdays,
        help_text="On these weekdays (0 is Monday).",
    )
    condition = JSONObjectField(
        allow_null=True,
        default=None,
        max_bytes=16 * 1024,
        help_text=(
            'A condition step\'s test, e.g. {"type": "opened", "step": 1} (step: the position of an earlier '
            'email step, or null for any), {"type": "has_tag", "tag": <tag id>}, or {"type": "property", '
            '"key": "plan", "operator": "equals", "value": "pro"}.'
        ),
    )
    yes_step = serializers.IntegerField(
        min_value=1,
        max_value=MAX_STEPS,
        allow_null=True,
        default=None,
        help_text="Position of a later step to go to when the condition holds (null: the next step).",
    )
    no_step = serializers.IntegerField(
        min_value=1,
        max_value=MAX_STEPS,
        allow_null=True,
        default=None,
        help_text="Position of a later step to go to otherwise.",
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        seconds = data.pop("delay_seconds")
        if seconds is None:
            return data
        # Both come back in answers (seconds rounded down): sending an answer back must work.
        if data["delay"] is None:
            data["delay"] = dt.timedelta(seconds=seconds)
        elif int(data["delay"].total_seconds()) != seconds:
            raise serializers.ValidationError({"delay_seconds": "Give delay or delay_seconds, not two different ones."})
        return data


def _tag_of(config: Any) -> int | None:
    if isinstance(config, dict) and config.get("type") == "has_tag":
        tag = config.get("tag")
        if isinstance(tag, int) and not isinstance(tag, bool):
            return tag
    return None


def _step_specs(
    steps: list[dict[str, Any]], *, organization: Organization, sequence: Sequence | None
) -> list[services.StepSpec]:
    """The steps of a request with the ids they name resolved in the organization (404 otherwise)."""
    templates = selectors.templates_by_id(
        organization=organization, ids=[step["template_id"] for step in steps if step["template_id"] is not None]
    )
    own_steps = {step.pk for step in sequence.steps.all()} if sequence is not None else set()
    tags = selectors.tag_ids_owned(
        organization=organization, ids=[tag for step in steps if (tag := _tag_of(step["condition"])) is not None]
    )
    specs = []
    for index, step in enumerate(steps):
        if step["template_id"] is not None and step["template_id"] not in templates:
            raise _reference_not_found(f"steps.{index}.template_id", "template", step["template_id"])
        if "id" in step and step["id"] not in own_steps:
            raise _reference_not_found(f"steps.{index}.id", "step in this sequence with id", step["id"])
        tag = _tag_of(step["condition"])
        if tag is not None and tag not in tags:
            raise _reference_not_found(f"steps.{index}.condition", "tag", tag)
        specs.append(
            services.StepSpec(
                id=step.get("id"),
                kind=step["kind"],
                name=step["name"],
                template=templates.get(step["template_id"]),
                delay=step["delay"],
                wait_until_time=step["wait_until_time"],
                wait_until_days=step["wait_until_days"],
                condition=step["condition"],
                yes_step=step["yes_step"],
                no_step=step["no_step"],
            )
        )
    return specs


class SequenceSettingsInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=10_000, allow_blank=True, default="")
    from_name = serializers.CharField(max_length=200, allow_blank=True, default="")
    from_email = serializers.EmailField(max_length=254)
    reply_to = serializers.EmailField(max_length=254, allow_blank=True, default="")
    send_days = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6),
        min_length=1,
        max_length=7,
        default=all_weekdays,
        help_text="Weekdays mail may go out (0 is Monday), in the contact's time zone.",
    )
    send_start_hour = serializers.IntegerField(min_value=0, max_value=23, default=0)
    send_end_hour = serializers.IntegerField(min_value=1, max_value=24, default=24)
    reentry_policy = serializers.ChoiceField(
        choices=Sequence.ReentryPolicy.choices, default=Sequence.ReentryPolicy.NEVER
    )
    track_opens = serializers.BooleanField(default=True)
    track_clicks = serializers.BooleanField(default=True)
    goal = JSONObjectField(
        allow_null=True,
        default=None,
        max_bytes=16 * 1024,
        help_text='Reaching it removes the contact: {"type": "has_tag", "tag": <tag id>} or a property comparison.',
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "steps" not in self.fields and "steps" in self.initial_data:
            raise serializers.ValidationError({"steps": "Steps are replaced with PUT, together with the settings."})
        tag = _tag_of(data.get("goal"))
        if tag is not None and not selectors.tag_ids_owned(organization=self.context["organization"], ids=[tag]):
            raise _reference_not_found("goal", "tag", tag)
        return data


class SequenceInput(SequenceSettingsInput):
    steps = StepInput(many=True, max_length=MAX_STEPS, help_text="In order; yes_step and no_step name positions.")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        data = super().validate(data)
        data["steps"] = _step_specs(
            data.get("steps", []), organization=self.context["organization"], sequence=self.context.get("sequence")
        )
        return data


class SequenceCreateInput(SequenceInput):
    steps = StepInput(many=True, max_length=MAX_STEPS, required=False, help_text="In order; may be added later.")


class StepOutput(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.SerializerMethodField(help_text="1 for the first step.")
    kind = serializers.ChoiceField(choices=Step.Kind.choices)
    name = serializers.CharField()
    template_id = serializers.IntegerField(allow_null=True)
    delay = DurationField(allow_null=True)
    delay_seconds = serializers.SerializerMethodField()
    wait_until_time = serializers.TimeField(allow_null=True)
    wait_until_days = serializers.ListField(child=serializers.IntegerField())
    condition = serializers.SerializerMethodField()
    yes_step = serializers.SerializerMethodField()
    no_step = serializers.SerializerMethodField()

    def _position(self, step_id: int | None) -> int | None:
        return self.context["positions"].get(step_id)

    @extend_schema_field(OpenApiTypes.INT)
    def get_position(self, step: Step) -> int | None:
        return self._position(step.pk)

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_delay_seconds(self, step: Step) -> int | None:
        return int(step.delay.total_seconds()) if step.delay is not None else None

    @extend_schema_field({"type": "object", "additionalProperties": {}, "nullable": True})
    def get_condition(self, step: Step) -> dict[str, Any] | None:
        condition = step.condition
        if isinstance(condition, dict) and condition.get("type") in ("opened", "clicked") and condition.get("step"):
            # null also when the step it named has been deleted since.
            return {**condition, "step": self._position(condition["step"])}
        return condition

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_yes_step(self, step: Step) -> int | None:
        return self._position(step.yes_step_id)

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_no_step(self, step: Step) -> int | None:
        return self._position(step.no_step_id)


class SequenceOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    status = serializers.ChoiceField(choices=Sequence.Status.choices)
    from_name = serializers.CharField()
    from_email = serializers.CharField()
    reply_to = serializers.CharField()
    send_days = serializers.ListField(child=serializers.IntegerField())
    send_start_hour = serializers.IntegerField()
    send_end_hour = serializers.IntegerField()
    reentry_policy = serializers.ChoiceField(choices=Sequence.ReentryPolicy.choices)
    track_opens = serializers.BooleanField()
    track_clicks = serializers.BooleanField()
    goal = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    steps = serializers.SerializerMethodField()

    @extend_schema_field({"type": "object", "additionalProperties": {}, "nullable": True})
    def get_goal(self, sequence: Sequence) -> dict[str, Any] | None:
        return sequence.goal

    @extend_schema_field(StepOutput(many=True))
    def get_steps(self, sequence: Sequence) -> list[dict[str, Any]]:
        steps = list(sequence.steps.all())
        positions = {step.pk: position for position, step in enumerate(steps, start=1)}
        return StepOutput(steps, many=True, context={"positions": positions}).data


class SequenceStatusFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Sequence.Status.choices, required=False)


class EnrollmentStatusFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Enrollment.Status.choices, required=False)


class SequenceCollectionApi(JsonApiView):
    """The organization's email sequences, each with its steps in order."""

    ordering_fields = ("name", "created_at")

    @extend_schema(
        operation_id="email_sequences_list",
        tags=SEQUENCES_TAG,
        parameters=[_status_filter(Sequence.Status), ordering_parameter(*ordering_fields)],
        responses=SequenceOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        query = SequenceStatusFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        sequences = selectors.sequence_list(organization=self.organization, **query.validated_data)
        return self.paginate(sequences, SequenceOutput)

    @extend_schema(
        operation_id="email_sequences_create",
        tags=SEQUENCES_TAG,
        request=SequenceCreateInput,
        responses={201: SequenceOutput},
        description="Creates a draft sequence, with its steps when given; activate it to start.",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = SequenceCreateInput(data=request.data, context={"organization": self.organization})
        data.is_valid(raise_exception=True)
        sequence = services.sequence_create(organization=self.organization, **data.validated_data)
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=sequence.pk)
        return Response(SequenceOutput(sequence).data, status=status.HTTP_201_CREATED)


class SequenceItemApi(JsonApiView):
    """One email sequence with its steps in order."""

    @extend_schema(
        operation_id="email_sequences_retrieve",
        tags=SEQUENCES_TAG,
        parameters=[SEQUENCE_ID],
        responses=SequenceOutput,
    )
    def get(self, request: Request, sequence_id: str) -> Response:
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
        return Response(SequenceOutput(sequence).data)

    @extend_schema(
        operation_id="email_sequences_update",
        tags=SEQUENCES_TAG,
        parameters=[SEQUENCE_ID],
        request=SequenceInput,
        responses=SequenceOutput,
        description=(
            "Replaces the settings and the steps. Steps with an id are updated in place (contacts on them "
            "stay), steps without one are created, and steps left out are removed: contacts waiting on a "
            "removed step move on to the step that followed it."
        ),
    )
    def put(self, request: Request, sequence_id: str) -> Response:
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
        data = SequenceInput(data=request.data, context={"organization": self.organization, "sequence": sequence})
        data.is_valid(raise_exception=True)
        services.sequence_update(sequence=sequence, **data.validated_data)
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=sequence.pk)
        return Response(SequenceOutput(sequence).data)

    @extend_schema(
        operation_id="email_sequences_partial_update",
        tags=SEQUENCES_TAG,
        parameters=[SEQUENCE_ID],
        request=SequenceSettingsInput,
        responses=SequenceOutput,
        description="Changes some settings; the steps only change with PUT.",
    )
    def patch(self, request: Request, sequence_id: str) -> Response:
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
        data = SequenceSettingsInput(data=request.data, partial=True, context={"organization": self.organization})
        data.is_valid(raise_exception=True)
        services.sequence_update(sequence=sequence, **data.validated_data)
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=sequence.pk)
        return Response(SequenceOutput(sequence).data)

    @extend_schema(
        operation_id="email_sequences_destroy",
        tags=SEQUENCES_TAG,
        parameters=[SEQUENCE_ID],
        responses={204: None},
        description=(
            "Deletes the sequence with its steps, enrollments and messages. Refused with 409 while it is "
            "active: pause or archive it first (archiving keeps the history)."
        ),
    )
    def delete(self, request: Request, sequence_id: str) -> Response:
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
        with state_conflicts_as_409():
            services.sequence_delete(sequence=sequence)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _transition_view(operation: str, service: Any, description: str) -> type[JsonApiView]:
    class SequenceTransitionApi(JsonApiView):
        """A change of a sequence's state."""

        @extend_schema(
            operation_id=f"email_sequences_{operation}",
            tags=SEQUENCES_TAG,
            parameters=[SEQUENCE_ID],
            request=None,
            responses=SequenceOutput,
            description=description,
        )
        def post(self, request: Request, sequence_id: str) -> Response:
            sequence = selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
            with state_conflicts_as_409():
                service(sequence=sequence)
            sequence = selectors.sequence_get(organization=self.organization, sequence_id=sequence.pk)
            return Response(SequenceOutput(sequence).data)

    SequenceTransitionApi.__name__ = SequenceTransitionApi.__qualname__ = f"Sequence{operation.title()}Api"
    return SequenceTransitionApi


SequenceActivateApi = _transition_view(
    "activate",
    services.sequence_activate,
    "Starts a draft or resumes a paused sequence (parked contacts continue where they were). 400 lists "
    "what keeps it from starting (no steps, a template that does not parse); 409 for an archived one.",
)
SequencePauseApi = _transition_view(
    "pause", services.sequence_pause, "Stops all sending at once; contacts keep their place. 409 unless active."
)
SequenceArchiveApi = _transition_view(
    "archive",
    services.sequence_archive,
    "Ends the sequence for good: active enrollments exit, unsent messages are cancelled, history is kept.",
)


class EnrollmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    contact_id = serializers.IntegerField()
    email = serializers.CharField(source="contact.email")
    status = serializers.ChoiceField(choices=Enrollment.Status.choices)
    exit_reason = serializers.CharField(
        help_text="Why it ended (exit_step, goal_reached, unsubscribed, ...); empty while active."
    )
    current_step_id = serializers.IntegerField(allow_null=True)
    next_run_at = serializers.DateTimeField(allow_null=True)
    enrolled_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class EnrollInput(serializers.Serializer):
    contact_ids = serializers.ListField(
        child=IdField(), min_length=1, max_length=settings.API_BULK_LIMIT, required=False
    )
    emails = serializers.ListField(
        child=serializers.CharField(max_length=320), min_length=1, max_length=settings.API_BULK_LIMIT, required=False
    )
    list_id = IdField(required=False, help_text="Every contact of this list.")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if len(data) != 1:
            raise serializers.ValidationError("Give exactly one of contact_ids, emails or list_id.")
        return data


SKIP_REASONS = (
    services.SkipReason.NOT_MAILABLE,
    services.SkipReason.AWAITING_CONFIRMATION,
    services.SkipReason.SUPPRESSED,
    services.SkipReason.ALREADY_ENROLLED,
    services.SkipReason.ALREADY_COMPLETED,
)


class SkipReasonsOutput(serializers.Serializer):
    not_mailable = serializers.IntegerField(help_text="Unsubscribed, bounced or complained.")
    awaiting_confirmation = serializers.IntegerField(
        help_text="Signed up through a double opt-in form and not confirmed yet."
    )
    suppressed = serializers.IntegerField(help_text="The address is on the suppression list.")
    already_enrolled = serializers.IntegerField(help_text="Already going through this sequence.")
    already_went_through = serializers.IntegerField(help_text="Went through it before and re-entry is not allowed.")
    unknown_email = serializers.IntegerField(help_text="No contact of the organization has this address.")
    invalid_email = serializers.IntegerField(help_text="Not an email address.")
    duplicate = serializers.IntegerField(help_text="Named more than once in the request.")


class EnrollReportOutput(serializers.Serializer):
    enrolled = serializers.IntegerField()
    skipped = serializers.IntegerField()
    skipped_reasons = SkipReasonsOutput()
    unknown_emails = serializers.ListField(child=serializers.CharField())
    invalid_emails = serializers.ListField(child=serializers.CharField())


class SequenceSubscribersApi(JsonApiView):
    """The contacts enrolled in a sequence."""

    @extend_schema(
        operation_id="email_sequences_subscribers_list",
        tags=SEQUENCES_TAG,
        parameters=[SEQUENCE_ID, _status_filter(Enrollment.Status)],
        responses=EnrollmentOutput(many=True),
    )
    def get(self, request: Request, sequence_id: str) -> Response:
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
        query = EnrollmentStatusFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        return self.paginate(selectors.enrollment_list(sequence=sequence, **query.validated_data), EnrollmentOutput)

    @extend_schema(
        operation_id="email_sequences_subscribers_create",
        tags=SEQUENCES_TAG,
        parameters=[SEQUENCE_ID],
        request=EnrollInput,
        responses={201: EnrollReportOutput},
        description=(
            "Enrolls contacts by id, by email or by list (one of them) and reports how many were enrolled "
            "and why the others were skipped. Contacts and lists of other organizations are 404; emails "
            "that are no contact's are skipped. 409 unless the sequence is active or paused."
        ),
    )
    @idempotent
    def post(self, request: Request, sequence_id: str) -> Response:
        sequence = selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
        data = EnrollInput(data=request.data)
        data.is_valid(raise_exception=True)
        candidates = selectors.enrollment_candidates(organization=self.organization, **data.validated_data)
        with state_conflicts_as_409():
            report = services.enrollments_create(sequence=sequence, contacts=candidates.contacts)
        reasons = {reason: report.skipped.get(reason, 0) for reason in SKIP_REASONS}
        reasons.update(
            unknown_email=len(candidates.unknown_emails),
            invalid_email=len(candidates.invalid_emails),
            duplicate=candidates.duplicates,
        )
        answer = {
            "enrolled": report.enrolled_count,
            "skipped": sum(report.skipped.values())
            + reasons["unknown_email"]
            + reasons["invalid_email"]
            + reasons["duplicate"],
            "skipped_reasons": reasons,
            "unknown_emails": candidates.unknown_emails,
            "invalid_emails": candidates.invalid_emails,
        }
        return Response(EnrollReportOutput(answer).data, status=status.HTTP_201_CREATED)
