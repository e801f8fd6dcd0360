from __future__ import annotations

from django.contrib import admin

from experiments.models import Assignment, Experiment, Variant
from organizations.admin import ReadOnlyTenantAdmin, TenantAdmin, TenantInline


class VariantInline(TenantInline, admin.StackedInline):
    model = Variant
    fk_name = "experiment"
    extra = 0
    fields = (
        ("name", "weight", "is_holdout", "is_active"),
        "template",
        "subject",
        "from_name",
        "html_body",
        "text_body",
        "stopped_reason",
    )
    readonly_fields = ("stopped_reason",)


@admin.register(Experiment)
class ExperimentAdmin(TenantAdmin):
    list_display = ("__str__", "organization", "step", "metric", "test", "allocation", "status", "winner")
    list_filter = ("status", "metric", "test")
    search_fields = ("name",)
    list_select_related = ("organization", "step", "winner")
    raw_id_fields = ("step",)
    readonly_fields = ("status", "winner", "decided_at", "decision", "created_at")
    inlines = [VariantInline]
    fieldsets = (
        (None, {"fields": ("organization", "step", "name")}),
        ("Test", {"fields": ("metric", "test", "alpha", "power", "guardrails")}),
        ("Sample size", {"fields": ("baseline_rate", "minimum_detectable_effect", "sample_size_per_variant")}),
        ("Allocation", {"fields": ("allocation", "min_exploration_share")}),
        ("Decision", {"fields": ("status", "winner", "decided_at", "decision", "created_at")}),
    )


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyTenantAdmin):
    list_display = ("assigned_at", "experiment", "variant", "contact", "enrollment")
    list_filter = (("experiment", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("contact__email",)
    list_select_related = ("organization", "experiment", "variant", "contact", "enrollment")
    date_hierarchy = "assigned_at"
