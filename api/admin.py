from __future__ import annotations

from django.contrib import admin

from api.models import IdempotencyRecord
from organizations.admin import ReadOnlyTenantAdmin


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "organization", "caller", "key", "method", "path", "status_code")
    search_fields = ("key", "path", "caller")
    list_filter = ("method", "status_code")
