"""System checks for configuration mistakes that Django cannot see."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def mail_route_delivers(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.EMAIL.kind in ("capture", "console"):
        return [
            Warning(
                f"EMAIL_URL is not set to a real route: outgoing mail is {'captured' if settings.EMAIL.kind == 'capture' else 'printed'}, not delivered.",
                hint="Set EMAIL_URL to smtp://..., smtps://... or an email service provider (see README.md).",
                id="emailseq.W001",
            )
        ]
    return []


@register(deploy=True)
def base_url_is_public(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.BASE_URL_HOST in ("127.0.0.1", "localhost", "::1"):
        return [
            Warning(
                f"BASE_URL is {settings.BASE_URL}: links in emails (unsubscribe, tracking) will not work for recipients.",
                hint="Set BASE_URL to the public https:// origin of this installation.",
                id="emailseq.W002",
            )
        ]
    return []
