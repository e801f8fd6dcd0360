from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import CursorPagination


class CursorPage(CursorPagination):
    """Opaque cursors: stable under inserts, and as fast on page 10,000 as on page 1."""

    page_size_query_param = "page_size"
    max_page_size = settings.API_MAX_PAGE_SIZE
    ordering = "-id"
