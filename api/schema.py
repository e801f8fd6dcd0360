"""OpenAPI generation: every operation documents its problem-detail answers too."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter

from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.problems import PROBLEM_CONTENT_TYPE, TITLES

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "retry_after": {"type": "integer"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                },
                "required": ["field", "message", "code"],
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}

# Answers any operation can give: bad input, no or wrong credentials, a role too low, an
# object of another organization, a method or media type the route does not take, a clash
# with current state, a reused idempotency key, throttling.
COMMON_PROBLEMS = ("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429")


class ProblemAwareAutoSchema(AutoSchema):
    def _problem_component(self) -> dict[str, Any]:
        component = ResolvedComponent(
            name="Problem", type=ResolvedComponent.SCHEMA, object="Problem", schema=PROBLEM_SCHEMA
        )
        self.registry.register_on_missing(component)
        return component.ref

    def get_description(self) -> str:
        # The base view's docstring is for developers, not for the people reading the API docs.
        view_doc = self.view.__class__.__dict__.get("__doc__")
        if not view_doc and not getattr(getattr(self.view, self.method.lower(), None), "__doc__", None):
            return ""
        return super().get_description()

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if not self._is_api_operation():
            return responses
        reference = self._problem_component()
        for code in COMMON_PROBLEMS:
            responses.setdefault(
                code,
                {
                    "description": TITLES.get(int(code), "Error"),
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": reference}},
                },
            )
        return responses

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        # X-Organization is described once, in the API's description: generated clients set it
        # per session, not per call.
        if self._is_api_operation() and self.method == "POST":
            parameters.append(
                OpenApiParameter(
                    IDEMPOTENCY_HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    required=False,
                    description="Retrying with the same key replays the first answer instead of acting twice.",
                )
            )
        return parameters

    def _is_api_operation(self) -> bool:
        return self.path.startswith("/api/v1/")


def ordering_parameter(*fields: str) -> Any:
    """The documented `ordering` query parameter of a list ordered by one of `fields`."""
    return OpenApiParameter(
        "ordering",
        str,
        OpenApiParameter.QUERY,
        required=False,
        enum=[value for field in fields for value in (field, f"-{field}")],
        description="Order by a field; a leading '-' reverses.",
    )


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: an organization key made by an admin or with `manage.py create_api_key`.",
        }
