"""Sequence routes answer with or without the trailing slash (the seed names have none);
template routes follow the rest of the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, path, re_path

from sequences import api

SEQUENCE = r"email-sequences/(?P<sequence_id>[0-9]{1,18})"


def either_slash(pattern: str, view: Callable[..., Any], name: str) -> URLPattern:
    return re_path(rf"^{pattern}/?$", view, name=name)


urlpatterns = [
    either_slash("email-sequences", api.SequenceCollectionApi.as_view(), "sequence-collection"),
    either_slash(SEQUENCE, api.SequenceItemApi.as_view(), "sequence-item"),
    either_slash(f"{SEQUENCE}/activate", api.SequenceActivateApi.as_view(), "sequence-activate"),
    either_slash(f"{SEQUENCE}/pause", api.SequencePauseApi.as_view(), "sequence-pause"),
    either_slash(f"{SEQUENCE}/archive", api.SequenceArchiveApi.as_view(), "sequence-archive"),
    either_slash(f"{SEQUENCE}/subscribers", api.SequenceSubscribersApi.as_view(), "sequence-subscribers"),
    path("templates/", api.TemplateCollectionApi.as_view(), name="template-collection"),
    path("templates/<id:template_id>/", api.TemplateItemApi.as_view(), name="template-item"),
    path("templates/<id:template_id>/preview/", api.TemplatePreviewApi.as_view(), name="template-preview"),
    path("templates/<id:template_id>/test-send/", api.TemplateTestSendApi.as_view(), name="template-test-send"),
]
