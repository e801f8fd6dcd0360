"""Every operation of the REST API, read off the URL configuration (not a hand-kept list)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

SKIPPED_PREFIXES = ("api/v1/auth/",)


@dataclass(frozen=True)
class Operation:
    name: str  # "api:<url name>"
    method: str
    route: str
    parameters: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}"


def _walk(patterns: list, prefix: str, namespace: str) -> list[tuple[str, str, URLPattern]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
        if isinstance(pattern, URLResolver):
            inner = (
                f"{namespace}:{pattern.namespace}"
                if pattern.namespace and namespace
                else pattern.namespace or namespace
            )
            found.extend(_walk(pattern.url_patterns, route, inner))
        else:
            found.append((route, namespace, pattern))
    return found


def api_operations() -> list[Operation]:
    operations = []
    for route, namespace, pattern in _walk(get_resolver().url_patterns, "", ""):
        if not route.startswith("api/v1/") or route.startswith(SKIPPED_PREFIXES):
            continue
        view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
        if view_class is None:
            continue
        name = f"{namespace}:{pattern.name}" if pattern.name else f"<unnamed {route}>"
        parameters = _parameters(route)
        for method in view_class.http_method_names:
            if method in ("options", "head", "trace") or not hasattr(view_class, method):
                continue
            operations.append(Operation(name=name, method=method.upper(), route=route, parameters=parameters))
    return sorted(set(operations), key=lambda operation: (operation.name, operation.method))


def _parameters(route: str) -> tuple[str, ...]:
    names = []
    for converter_name, regex_name in re.findall(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", route):
        names.append(converter_name or regex_name)
    return tuple(names)
