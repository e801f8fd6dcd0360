"""Admin for organizations, and the base classes that scope every domain admin by organization.

Staff who are not superusers see only the rows of organizations they belong to, and what they
may change follows their membership role. Django's per-model permissions are not used for
domain models: membership roles are the one source of truth for what a person may do.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import models
from django.http import HttpRequest

from organizations.models import ApiKey, Membership, Organization
from organizations.services import api_key_revoke
from organizations.tenancy import TenantModel

admin.site.site_header = "emailseq administration"
admin.site.site_title = "emailseq"


def memberships_by_org(request: HttpRequest) -> dict[int, str]:
    """{organization id: role} for the requesting user, computed once per request."""
    cached = getattr(request, "_emailseq_memberships", None)
    if cached is None:
        user = request.user
        if not user.is_authenticated or not user.is_active:
            cached = {}
        else:
            cached = dict(Membership.objects.filter(user_id=user.pk).values_list("organization_id", "role"))
        request._emailseq_memberships = cached  # type: ignore[attr-defined]
    return cached


def org_ids_with_role(request: HttpRequest, roles: tuple[str, ...] | None = None) -> set[int]:
    return {org_id for org_id, role in memberships_by_org(request).items() if roles is None or role in roles}


class OrganizationListFilter(admin.SimpleListFilter):
    """Filter by organization, offering only the organizations the user belongs to."""

    title = "organization"
    parameter_name = "organization"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[int, str]]:
        organizations = Organization.objects.all()
        if not request.user.is_superuser:
            organizations = organizations.filter(pk__in=org_ids_with_role(request))
        return [(organization.pk, organization.name) for organization in organizations]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        if self.value() is None:
            return queryset
        try:
            organization_id = int(self.value())
        except ValueError:
            raise IncorrectLookupParameters("organization must be an id") from None
        return queryset.filter(organization_id=organization_id)


def _organization_id_of(form: forms.ModelForm) -> int | None:
    organization = form.cleaned_data.get("organization")
    if isinstance(organization, Organization):
        return organization.pk
    instance = form.instance
    if getattr(instance, "organization_id", None):
        return instance.organization_id
    # An inline form: its parent row (already attached by the formset) knows the organization.
    for field in instance._meta.concrete_fields:
        if field.is_relation and issubclass(field.related_model, TenantModel) and field.is_cached(instance):
            parent = field.get_cached_value(instance)
            if parent is not None and parent.organization_id:
                return parent.organization_id
    # A new inline row: the parent arrives only through the inline's parent-reference field.
    for form_field in form.fields.values():
        if isinstance(form_field, forms.models.InlineForeignKeyField):
            parent = form_field.parent_instance
            if isinstance(parent, TenantModel) and parent.organization_id:
                return parent.organization_id
    return None


class TenantModelForm(forms.ModelForm):
    """Rejects references from a row to rows of another organization."""

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        organization_id = _organization_id_of(self)
        if organization_id is None:
            return cleaned_data
        for name, value in list(cleaned_data.items()):
            related = list(value) if isinstance(value, (models.QuerySet, list, tuple)) else [value]
            for item in related:
                if isinstance(item, TenantModel) and item.organization_id != organization_id:
                    self.add_error(name, f"{item} belongs to another organization.")
                    break
        return cleaned_data


class TenantScopedFields:
    """Limits every choice of related tenant rows to the user's organizations."""

    def formfield_for_foreignkey(self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Organization and not request.user.is_superuser:
            kwargs["queryset"] = Organization.objects.filter(
                pk__in=org_ids_with_role(request, Membership.EDITING_ROLES)
            )
        elif issubclass(db_field.related_model, TenantModel):
            kwargs["queryset"] = db_field.related_model._default_manager.for_user(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: models.ManyToManyField, request: HttpRequest, **kwargs: Any) -> Any:
        if issubclass(db_field.related_model, TenantModel):
            kwargs["queryset"] = db_field.related_model._default_manager.for_user(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class TenantRolePermissions:
    """Admin permissions from membership roles: any member may view, editors may change."""

    def _allowed(self, request: HttpRequest, obj: TenantModel | None, roles: tuple[str, ...] | None) -> bool:
        if not request.user.is_active or not request.user.is_staff:
            return False
        if request.user.is_superuser:
            return True
        allowed = org_ids_with_role(request, roles)
        if obj is None:
            return bool(allowed)
        return obj.organization_id in allowed

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, None, None)

    def has_view_permission(self, request: HttpRequest, obj: TenantModel | None = None) -> bool:
        return self._allowed(request, obj, None)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._allowed(request, None, Membership.EDITING_ROLES)

    def has_change_permission(self, request: HttpRequest, obj: TenantModel | None = None) -> bool:
        return self._allowed(request, obj, Membership.EDITING_ROLES)

    def has_delete_permission(self, request: HttpRequest, obj: TenantModel | None = None) -> bool:
        return self._allowed(request, obj, Membership.EDITING_ROLES)


class TenantAdmin(TenantRolePermissions, TenantScopedFields, admin.ModelAdmin):
    form = TenantModelForm
    list_select_related = ("organization",)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).for_user(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: TenantModel | None = None) -> tuple[str, ...]:
        # A row never moves between organizations: its related rows would stay behind, visible
        # to the wrong people.
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, "organization") if obj is not None and "organization" not in fields else fields

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        return [OrganizationListFilter, *super().get_list_filter(request)]

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        for inline_form in formset.forms:
            instance = inline_form.instance
            if isinstance(instance, TenantModel) and not instance.organization_id:
                instance.organization_id = form.instance.organization_id
        super().save_formset(request, form, formset, change)


class TenantInline(TenantRolePermissions, TenantScopedFields):
    """Mixin for inlines of tenant rows; the parent admin fills in the organization."""

    form = TenantModelForm
    exclude = ("organization",)

    def has_add_permission(self, request: HttpRequest, obj: TenantModel | None = None) -> bool:  # type: ignore[override]
        return self._allowed(request, obj, Membership.EDITING_ROLES)


class ReadOnlyTenantAdmin(TenantAdmin):
    """For records of what happened (messages, events): visible, never edited by hand."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TenantModel | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: TenantModel | None = None) -> bool:
        # Only as part of deleting their contact, and only by superusers: history is not edited.
        return request.user.is_active and request.user.is_superuser


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


ORGANIZATION_FIELDSETS = (
    (None, {"fields": ("name", "slug", "postal_address", "timezone")}),
    (
        "Sending policies",
        {
            "fields": ("frequency_cap_daily", "frequency_cap_weekly", "sunset_days"),
            "description": "Marketing emails only; transactional sequences are exempt. Empty: no limit.",
        },
    ),
    ("Bounces and consent", {"fields": ("soft_bounce_limit", "soft_bounce_window_days", "double_opt_in")}),
)


class OrganizationAdminForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = [name for _title, options in ORGANIZATION_FIELDSETS for name in options["fields"]]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        daily, weekly = cleaned.get("frequency_cap_daily"), cleaned.get("frequency_cap_weekly")
        if daily is not None and weekly is not None and weekly < daily:
            self.add_error("frequency_cap_weekly", f"Must be at least the daily cap ({daily}).")
        return cleaned


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationAdminForm
    fieldsets = ORGANIZATION_FIELDSETS
    list_display = (
        "name",
        "slug",
        "timezone",
        "frequency_cap_daily",
        "frequency_cap_weekly",
        "sunset_days",
        "created_at",
    )
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=org_ids_with_role(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or bool(org_ids_with_role(request))

    def has_view_permission(self, request: HttpRequest, obj: Organization | None = None) -> bool:
        if request.user.is_superuser:
            return True
        allowed = org_ids_with_role(request)
        return bool(allowed) if obj is None else obj.pk in allowed

    def has_change_permission(self, request: HttpRequest, obj: Organization | None = None) -> bool:
        if request.user.is_superuser:
            return True
        allowed = org_ids_with_role(request, Membership.MANAGING_ROLES)
        return bool(allowed) if obj is None else obj.pk in allowed

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Organization | None = None) -> bool:
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = (OrganizationListFilter, "role")
    search_fields = ("user__username", "user__email", "organization__name")
    autocomplete_fields = ("user",)
    list_select_related = ("user", "organization")

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(organization_id__in=org_ids_with_role(request))

    def formfield_for_foreignkey(self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "organization" and not request.user.is_superuser:
            kwargs["queryset"] = Organization.objects.filter(
                pk__in=org_ids_with_role(request, Membership.MANAGING_ROLES)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or bool(org_ids_with_role(request))

    def has_view_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        if request.user.is_superuser:
            return True
        allowed = org_ids_with_role(request)
        return bool(allowed) if obj is None else obj.organization_id in allowed

    def _may_manage(self, request: HttpRequest, obj: Membership | None) -> bool:
        if request.user.is_superuser:
            return True
        allowed = org_ids_with_role(request, Membership.MANAGING_ROLES)
        return bool(allowed) if obj is None else obj.organization_id in allowed

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return self._may_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return self._may_manage(request, obj)


@admin.register(ApiKey)
class ApiKeyAdmin(TenantAdmin):
    """Keys are made through the API or `manage.py create_api_key` (the secret is shown once
    there); staff see them and revoke them here."""

    list_display = ("name", "prefix", "scope", "organization", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "scope", "created_by", "created_at", "last_used_at", "revoked_at")
    exclude = ("key_hash",)
    actions = ["revoke_keys"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return self._allowed(request, obj, Membership.MANAGING_ROLES)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return self._allowed(request, obj, Membership.MANAGING_ROLES)

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        allowed = org_ids_with_role(request, Membership.MANAGING_ROLES)
        for api_key in queryset:
            if request.user.is_superuser or api_key.organization_id in allowed:
                api_key_revoke(api_key=api_key)
