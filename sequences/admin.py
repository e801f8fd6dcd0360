from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from organizations.admin import TenantAdmin, TenantInline, TenantModelForm
from sequences import services
from sequences.models import EmailTemplate, Enrollment, Sequence, Step


@admin.register(EmailTemplate)
class EmailTemplateAdmin(TenantAdmin):
    list_display = ("name", "subject", "organization", "updated_at")
    search_fields = ("name", "subject")
    readonly_fields = ("created_at", "updated_at")


class StepInline(TenantInline, admin.StackedInline):
    model = Step
    fk_name = "sequence"
    extra = 0
    ordering = ("position",)
    fields = (
        ("position", "kind", "name"),
        "template",
        "delay",
        ("wait_until_time", "wait_until_days"),
        "condition",
        ("yes_step", "no_step"),
    )

    def get_formset(self, request: HttpRequest, obj: Sequence | None = None, **kwargs: Any) -> Any:
        # The parent sequence narrows the choices below; formfield_for_foreignkey runs while
        # the formset class is built, inside this call.
        request._sequence_being_edited = obj  # type: ignore[attr-defined]
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        sequence = getattr(request, "_sequence_being_edited", None)
        if db_field.name in ("yes_step", "no_step"):
            field.queryset = Step.objects.filter(sequence=sequence) if sequence else Step.objects.none()
        elif db_field.name == "template" and sequence is not None:
            field.queryset = field.queryset.filter(organization_id=sequence.organization_id)
        return field


@admin.register(Sequence)
class SequenceAdmin(TenantAdmin):
    list_display = ("name", "status", "organization", "from_email", "active_enrollments", "updated_at")
    list_filter = ("status",)
    search_fields = ("name", "from_email")
    readonly_fields = ("status", "created_at", "updated_at")
    ordering = ("name",)
    inlines = [StepInline]
    actions = ["activate", "pause", "archive"]
    fieldsets = (
        (None, {"fields": ("organization", "name", "description", "status")}),
        ("Sender", {"fields": ("from_name", "from_email", "reply_to")}),
        ("Sending", {"fields": ("send_days", "send_start_hour", "send_end_hour", "track_opens", "track_clicks")}),
        ("Entry and exit", {"fields": ("reentry_policy", "goal")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(active_count=Count("enrollments", filter=Q(enrollments__status=Enrollment.Status.ACTIVE)))
        )

    @admin.display(ordering="active_count", description="active contacts")
    def active_enrollments(self, obj: Sequence) -> int:
        return obj.active_count

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not Step:
            return super().save_formset(request, form, formset, change)
        # Removing a step moves the contacts waiting on it along: that is the service's job.
        # step_delete unsets the instance's pk, so formset.save() does not delete it again.
        for inline_form in formset.deleted_forms:
            if inline_form.instance.pk:
                services.step_delete(step=inline_form.instance)
        super().save_formset(request, form, formset, change)

    def _run(self, request: HttpRequest, queryset: QuerySet, action: Any, verb: str) -> None:
        done = 0
        for sequence in queryset:
            if not self.has_change_permission(request, sequence):
                continue
            try:
                action(sequence=sequence)
                done += 1
            except ValidationError as error:
                self.message_user(request, f"{sequence}: {' '.join(error.messages)}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} sequence(s).", messages.SUCCESS)

    @admin.action(description="Activate (or resume) the selected sequences")
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, services.sequence_activate, "Activated")

    @admin.action(description="Pause the selected sequences")
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, services.sequence_pause, "Paused")

    @admin.action(description="Archive the selected sequences (ends every enrollment)")
    def archive(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, services.sequence_archive, "Archived")


class EnrollmentForm(TenantModelForm):
    class Meta:
        model = Enrollment
        fields = ("organization", "sequence", "contact")

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        sequence, contact = cleaned_data.get("sequence"), cleaned_data.get("contact")
        if sequence and contact and not self.errors:
            refusal = services.enrollment_refusal(sequence=sequence, contact=contact)
            if refusal:
                raise ValidationError(refusal)
        return cleaned_data


@admin.register(Enrollment)
class EnrollmentAdmin(TenantAdmin):
    list_display = ("contact", "sequence", "status", "current_step", "next_run_at", "enrolled_at", "exit_reason")
    list_filter = ("status", "exit_reason", ("sequence", admin.RelatedOnlyFieldListFilter))
    search_fields = ("contact__email",)
    list_select_related = ("organization", "contact", "sequence", "current_step")
    raw_id_fields = ("contact",)
    actions = ["exit_enrollments"]

    def get_fields(self, request: HttpRequest, obj: Enrollment | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("organization", "sequence", "contact")
        return (
            "organization", "contact", "sequence", "status", "current_step", "next_run_at",
            "enrolled_at", "finished_at", "exit_reason",
        )  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Enrollment | None = None) -> tuple[str, ...]:
        return self.get_fields(request, obj) if obj else ()

    def get_form(self, request: HttpRequest, obj: Enrollment | None = None, **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = EnrollmentForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request: HttpRequest, obj: Enrollment, form: forms.ModelForm, change: bool) -> None:
        if change:
            return
        created = services.enrollment_create(sequence=obj.sequence, contact=obj.contact)
        obj.pk = created.pk
        obj._state.adding = False

    @admin.action(description="Take the selected contacts out of their sequence")
    def exit_enrollments(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(
            services.enrollment_exit(enrollment=enrollment)
            for enrollment in queryset
            if self.has_change_permission(request, enrollment)
        )
        self.message_user(request, f"{count} enrollment(s) ended.", messages.SUCCESS)
