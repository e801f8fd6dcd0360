"""Personalization with Liquid, sandboxed and bounded.

Templates are written by marketers, so they are untrusted code. Liquid resolves names only by
item lookup on the values we put in the context, and the context holds only plain dicts, lists,
strings and numbers built here: there is no object whose attributes could lead to Python
internals, settings, files or the environment. `include` and `render` are removed (there is no
loader), and loop iterations, output size and nesting are capped, which bounds rendering time.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from liquid import Environment
from liquid.exceptions import LiquidError
from liquid.stream import TokenStream

# Tags that need a template loader (files); with none configured they can only fail.
REMOVED_TAGS = ("include", "render")


class SandboxedEnvironment(Environment):
    context_depth_limit = 10
    block_nesting_limit = 30
    local_namespace_limit = 200_000

    def __init__(self) -> None:
        super().__init__(autoescape=False, strict_filters=True)
        for tag in REMOVED_TAGS:
            self.tags.pop(tag, None)


_environment: SandboxedEnvironment | None = None


def environment() -> SandboxedEnvironment:
    global _environment
    if _environment is None:
        _environment = SandboxedEnvironment()
    # Liquid reads the limits from the environment at render time; refreshing them here lets a
    # changed setting apply without a restart.
    _environment.loop_iteration_limit = settings.TEMPLATE_LOOP_LIMIT
    _environment.output_stream_limit = settings.TEMPLATE_OUTPUT_LIMIT_BYTES
    return _environment


@dataclass(frozen=True)
class TemplateProblem:
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def _line_and_column(source: str, index: int) -> tuple[int, int]:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return line, column


def _error_position(error: LiquidError, source: str) -> tuple[int, int]:
    """Where a syntax error is, even when Liquid's own token carries no position.

    Errors found at the end of an expression or of the file point at a synthetic token; the
    innermost parser frame still holds the token stream, whose current token is the statement
    or tag being parsed.
    """
    token = error.token
    if token is not None and token.start_index >= 0 and token.source == source:
        return _line_and_column(source, token.start_index)
    for frame, _line in reversed(list(traceback.walk_tb(error.__traceback__))):
        for value in frame.f_locals.values():
            if isinstance(value, TokenStream):
                current = value.current
                if current.start_index >= 0 and current.source == source:
                    return _line_and_column(source, current.start_index)
    return _line_and_column(source, len(source))


def template_problems(source: str) -> list[TemplateProblem]:
    """Syntax errors and unknown filters in a template source, with line and column."""
    env = environment()
    try:
        template = env.from_string(source)
    except LiquidError as error:
        line, column = _error_position(error, source)
        return [TemplateProblem(line, column, getattr(error, "message", str(error)))]
    problems = []
    for name, spans in template.analyze().filters.items():
        if name not in env.filters:
            for span in spans:
                line, column = span.line_col(source)
                problems.append(TemplateProblem(line, column + 1, f"unknown filter {name!r}"))
    return sorted(problems, key=lambda problem: (problem.line, problem.column))


def validate_template_source(source: str) -> None:
    problems = template_problems(source)
    if problems:
        raise ValidationError([str(problem) for problem in problems])


class RenderError(Exception):
    """A template failed at render time (a limit was hit, or a filter failed)."""


class CompiledTemplate:
    """A parsed template, ready to render many times."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = environment().from_string(source)
        # A template without any markup renders to itself: skip the renderer entirely.
        self.is_static = "{{" not in source and "{%" not in source

    def render(self, context: dict[str, Any]) -> str:
        if self.is_static:
            return self.source
        try:
            return self._template.render(**context)
        except LiquidError as error:
            raise RenderError(getattr(error, "message", str(error))) from error
        except (ValueError, TypeError, ArithmeticError, RecursionError) as error:
            raise RenderError(str(error)) from error


def contact_context(
    *,
    email: str,
    first_name: str,
    last_name: str,
    properties: dict[str, Any] | None,
    timezone: str,
) -> dict[str, Any]:
    """The `contact` variable. Only plain values: see the module docstring."""
    return {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "full_name": " ".join(part for part in (first_name, last_name) if part),
        "timezone": timezone,
        "properties": _plain(properties or {}),
    }


def organization_context(*, name: str, postal_address: str) -> dict[str, Any]:
    return {"name": name, "postal_address": postal_address}


def _plain(value: Any, depth: int = 0) -> Any:
    """Copy JSON-like data, dropping anything that is not a plain JSON value."""
    if depth > 8:
        return None
    if isinstance(value, dict):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
