from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.http import HttpRequest

from delivery import routing
from delivery.models import DeliveryRoute, Event, Message
from organizations.admin import ReadOnlyTenantAdmin, TenantAdmin, TenantModelForm


@admin.register(Message)
class MessageAdmin(ReadOnlyTenantAdmin):
    list_display = ("id", "contact", "sequence", "step", "status", "attempts", "sent_at", "route", "subject")
    list_filter = (
        "status",
        ("sequence", admin.RelatedOnlyFieldListFilter),
        ("route", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("recipient", "contact__email", "message_id_header", "provider_message_id", "subject")
    list_select_related = ("organization", "contact", "sequence", "step", "route")
    date_hierarchy = "created_at"


@admin.register(Event)
class EventAdmin(ReadOnlyTenantAdmin):
    list_display = ("occurred_at", "type", "contact", "message", "is_machine", "machine_reason", "url")
    list_filter = ("type", "is_machine", "machine_reason")
    search_fields = ("contact__email", "url", "user_agent")
    list_select_related = ("organization", "contact", "message")
    date_hierarchy = "occurred_at"


class DeliveryRouteForm(TenantModelForm):
    """Shows the url with its secrets masked; sending the masked url back keeps the secrets."""

    class Meta:
        model = DeliveryRoute
        exclude = ("kind",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "url" in self.fields:
            self.initial["url"] = routing.url_masked(self.instance.url)

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if self.instance.pk and url == routing.url_masked(self.instance.url):
            url = self.instance.url
        try:
            self.instance.kind = routing.route_config_checked(url).kind
        except ImproperlyConfigured as error:
            raise forms.ValidationError(str(error).removeprefix("url: ")) from None
        return url


@admin.register(DeliveryRoute)
class DeliveryRouteAdmin(TenantAdmin):
    form = DeliveryRouteForm
    list_display = (
        "name",
        "organization",
        "kind",
        "priority",
        "is_active",
        "circuit",
        "failures_in_a_row",
        "probe_at",
        "throttled_until",
        "rate_factor",
    )
    list_filter = ("kind", "is_active", "circuit")
    search_fields = ("name",)
    ordering = ("organization", "priority", "id")
    actions = ["reset_circuits"]

    def get_readonly_fields(self, request: HttpRequest, obj: DeliveryRoute | None = None) -> tuple[str, ...]:
        # The state is the send path's; `url` is shown masked to whoever may not change it.
        fields = (*super().get_readonly_fields(request, obj), "kind", *routing.ROUTE_STATE_FIELDS, "masked_url")
        return fields

    def get_fields(self, request: HttpRequest, obj: DeliveryRoute | None = None) -> list[str]:
        fields = [name for name in super().get_fields(request, obj) if name != "masked_url"]
        if obj is not None and not self.has_change_permission(request, obj):
            fields = ["masked_url" if name == "url" else name for name in fields]
        return fields

    @admin.display(description="url")
    def masked_url(self, route: DeliveryRoute) -> str:
        return routing.url_masked(route.url)

    @admin.action(description="Close the circuit and restore the full rate of the selected routes")
    def reset_circuits(self, request: HttpRequest, queryset: QuerySet[DeliveryRoute]) -> None:
        routes = [route for route in queryset if self.has_change_permission(request, route)]
        for route in routes:
            routing.route_reset(route=route)
        self.message_user(request, f"{len(routes)} route(s) reset.", messages.SUCCESS)
