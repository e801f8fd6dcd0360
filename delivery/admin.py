from __future__ import annotations

from django.contrib import admin

from delivery.models import Event, Message
from organizations.admin import ReadOnlyTenantAdmin


@admin.register(Message)
class MessageAdmin(ReadOnlyTenantAdmin):
    list_display = ("id", "contact", "sequence", "step", "status", "attempts", "sent_at", "subject")
    list_filter = ("status", ("sequence", admin.RelatedOnlyFieldListFilter))
    search_fields = ("recipient", "contact__email", "message_id_header", "subject")
    list_select_related = ("organization", "contact", "sequence", "step")
    date_hierarchy = "created_at"


@admin.register(Event)
class EventAdmin(ReadOnlyTenantAdmin):
    list_display = ("occurred_at", "type", "contact", "message", "is_machine", "machine_reason", "url")
    list_filter = ("type", "is_machine", "machine_reason")
    search_fields = ("contact__email", "url", "user_agent")
    list_select_related = ("organization", "contact", "message")
    date_hierarchy = "occurred_at"
