"""Personalization with Liquid, sandboxed and bounded.

Templates are written by marketers, so they are untrusted code. Liquid resolves names only by
item lookup on the values we put in the context, and the context holds only plain dicts, lists,
strings and numbers built here: there is no object whose attributes could lead to Python
internals, settings, files or the environment. `include` and `render` are removed (there is no
loader), and loop iterations, output size and nesting are capped, which bounds rendering time.
Liquid checks sizes only after a value is built, so the filters that can build a value far
larger than their inputs (replace, join, times) first work out the size of their result.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from liquid import Environment
from liquid.exceptions import LiquidError, OutputStreamLimitError
from liquid.stream import TokenStream
from liquid.token import Token

# Tags that need a template loader (files); with none configured they can only fail.
REMOVED_TAGS = ("include", "render")
# Python's own limit on converting integers to text; beyond it multiplication gets slow.
NUMBER_DIGITS_LIMIT = 4300


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _replace_size(value: Any, old: Any = "", new: Any = "", *args: Any, **kwargs: Any) -> int:
    text, old_text, new_text = _text(value), _text(old), _text(new)
    hits = text.count(old_text) if old_text else len(text) + 1
    return len(text) + hits * max(0, len(new_text) - len(old_text))


def _join_size(value: Any, separator: Any = " ", *args: Any, **kwargs: Any) -> int:
    items = value if isinstance(value, (list, tuple)) else [value]
    return sum(len(_text(item)) for item in items) + len(_text(separator)) * max(0, len(items) - 1)


def _digits(value: Any) -> int:
    return abs(value).bit_length() * 31 // 100 + 1 if isinstance(value, int) else len(_text(value))


def _times_size(value: Any, other: Any = 1, *args: Any, **kwargs: Any) -> int:
    return _digits(value) + _digits(other)


def _bounded(
    name: str, original: Callable[..., Any], size: Callable[..., int], limit: Callable[[], int]
) -> Callable[..., Any]:
    @functools.wraps(original)  # keeps the with_environment flag that join needs
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        if size(value, *args, **kwargs) > limit():
            raise OutputStreamLimitError(f"the result of {name} would be too large", token=None)
        return original(value, *args, **kwargs)

    return bounded


class SandboxedEnvironment(Environment):
    context_depth_limit = 10
    block_nesting_limit = 30
    local_namespace_limit = 200_000

    def __init__(self) -> None:
        super().__init__(autoescape=False, strict_filters=True)
        for tag in REMOVED_TAGS:
            self.tags.pop(tag, None)
        output_limit = lambda: settings.TEMPLATE_OUTPUT_LIMIT_BYTES  # noqa: E731
        for name, size, limit in (
            ("replace", _replace_size, output_limit),
            ("join", _join_size, output_limit),
            ("times", _times_size, lambda: NUMBER_DIGITS_LIMIT),
        ):
            self.filters[name] = _bounded(name, self.filters[name], size, limit)


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


def _error_position(error: LiquidError, source: str) -> tuple[int, int, str]:
    """Where a syntax error is (line, column) and how to say it, even when Liquid's own token
    carries no position.

    Errors found at the end of an expression point at a synthetic token; the innermost parser
    frame still holds the token stream, whose current token is the statement being parsed. An
    unclosed block is found at the end of the file: point at its opening tag instead.
    """
    message = getattr(error, "message", str(error))

    def known(token: Token | None) -> bool:
        return token is not None and token.start_index >= 0 and token.source == source

    if known(error.token):
        return (*_line_and_column(source, error.token.start_index), message)
    frames = [frame for frame, _line in traceback.walk_tb(error.__traceback__)]
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, TokenStream) and known(value.current):
                return (*_line_and_column(source, value.current.start_index), message)
    for frame in reversed(frames):
        opening = frame.f_locals.get("token")
        if frame.f_code.co_name == "parse" and isinstance(opening, Token) and known(opening):
            name = opening.value.split()[0] if opening.value.strip() else "block"
            return (*_line_and_column(source, opening.start_index), f"this '{name}' is never closed ({message})")
    return (*_line_and_column(source, len(source)), message)


def template_problems(source: str) -> list[TemplateProblem]:
    """Syntax errors and unknown filters in a template source, with line and column."""
    env = environment()
    try:
        template = env.from_string(source)
    except LiquidError as error:
        return [TemplateProblem(*_error_position(error, source))]
    problems = []
    for name, spans in template.analyze().filters.items():
        if name not in env.filters:
            for span in spans:
                line, column = span.line_col(source)
                problems.append(TemplateProblem(line, column + 1, f"unknown filter {name!r}"))
    return sorted(problems, key=lambda problem: (problem.line, problem.column))


class RenderError(Exception):
    """A template failed at render time (a limit was hit, or a filter failed)."""


# Templates made only of text and `{{ a.b }}` / `{{ a.b | default: "x" }}` (the vast
# majority of email templates) are rendered by plain string assembly: about seven times
# cheaper than Liquid's renderer, with the same result. Anything else goes to Liquid.
SIMPLE_OUTPUT = re.compile(
    r"""\{\{\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)\s*"""
    r"""(?:\|\s*default\s*:\s*(?:"([^"{}]*)"|'([^'{}]*)')\s*)?\}\}"""
)
LIQUID_PROPERTIES = {"size", "first", "last"}


class _NotSimple(Exception):
    """A value the fast path does not stringify the way Liquid does: let Liquid render."""


def _simple_parts(source: str) -> list[str | tuple[tuple[str, ...], str]] | None:
    """Text and (path, default) outputs, or None when the template needs Liquid."""
    if "{%" in source:
        return None
    parts: list[str | tuple[tuple[str, ...], str]] = []
    position = 0
    for match in SIMPLE_OUTPUT.finditer(source):
        path = tuple(match.group(1).split("."))
        if LIQUID_PROPERTIES.intersection(path):
            return None
        parts.append(source[position : match.start()])
        parts.append((path, match.group(2) if match.group(2) is not None else match.group(3) or ""))
        position = match.end()
    parts.append(source[position:])
    if any("{{" in part for part in parts if isinstance(part, str)):
        return None  # an output the pattern does not cover
    return parts


def _simple_value(context: dict[str, Any], path: tuple[str, ...], default: str) -> str:
    value: Any = context
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return default
        value = value[name]
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # as Liquid prints numbers; a default never replaces them, even 0
    raise _NotSimple


class CompiledTemplate:
    """A parsed template, ready to render many times."""

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._template = environment().from_string(source)
        except LiquidError as error:
            # A stored template that no longer parses (written around validation, or after a
            # Liquid upgrade) fails its messages; it must not crash the batch.
            raise RenderError(getattr(error, "message", str(error))) from error
        # A template without any markup renders to itself: skip the renderer entirely.
        self.is_static = "{{" not in source and "{%" not in source
        self._simple = _simple_parts(source)

    def render(self, context: dict[str, Any]) -> str:
        if self.is_static:
            return self.source
        if self._simple is not None:
            try:
                output = "".join(
                    part if isinstance(part, str) else _simple_value(context, *part) for part in self._simple
                )
            except _NotSimple:
                pass
            else:
                limit = settings.TEMPLATE_OUTPUT_LIMIT_BYTES
                if len(output) * 4 > limit and len(output.encode("utf-8")) > limit:
                    raise RenderError("output stream limit reached")
                return output
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
    first_name, last_name = _clean(first_name), _clean(last_name)
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
    if isinstance(value, str):
        return _clean(value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return _clean(str(value))


# Control characters that the composer uses as link markers; never meaningful in contact data.
_MARKER_CHARACTERS = dict.fromkeys(range(0x1C, 0x20))


def _clean(text: str) -> str:
    return text.translate(_MARKER_CHARACTERS) if text and not text.isprintable() else text
