from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from organizations.admin import ReadOnlyTenantAdmin, TenantAdmin, TenantInline, TenantModelForm
from sequences import services as sequence_services
from subscribers import consent, links, services
from subscribers.addresses import email_hash, normalize_email
from subscribers.models import (
    ConsentRecord,
    Contact,
    ContactEvent,
    ContactImport,
    ContactList,
    ImportRejection,
    SubscribeForm,
    Suppression,
    Tag,
)


@admin.register(ContactList)
class ContactListAdmin(TenantAdmin):
    list_display = ("name", "organization", "contact_count", "created_at")
    list_filter = ("is_public",)
    search_fields = ("name",)
    ordering = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(contact_count=Count("contacts"))

    @admin.display(ordering="contact_count", description="contacts")
    def contact_count(self, obj: ContactList) -> int:
        return obj.contact_count


@admin.register(Tag)
class TagAdmin(ContactListAdmin):
    list_filter = ()


class ContactForm(TenantModelForm):
    class Meta:
        model = Contact
        fields = "__all__"

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])

    def clean_properties(self) -> dict[str, Any]:
        properties = self.cleaned_data.get("properties")
        if properties is not None and not isinstance(properties, dict):
            raise ValidationError("Properties must be a JSON object of names to values.")
        return properties or {}


@admin.register(Contact)
class ContactAdmin(TenantAdmin):
    form = ContactForm
    list_display = ("email", "first_name", "last_name", "status", "organization", "created_at")
    list_filter = ("status", ("lists", admin.RelatedOnlyFieldListFilter), ("tags", admin.RelatedOnlyFieldListFilter))
    search_fields = ("email", "first_name", "last_name")
    readonly_fields = ("status", "status_changed_at", "created_at", "updated_at")
    filter_horizontal = ("lists", "tags")
    actions = ["unsubscribe_contacts", "resubscribe_contacts"]
    fieldsets = (
        (None, {"fields": ("organization", "email", "first_name", "last_name", "timezone", "properties")}),
        ("Status", {"fields": ("status", "status_changed_at")}),
        ("Consent", {"fields": ("consent_source", "consented_at", "consent_ip")}),
        ("Membership", {"fields": ("lists", "tags")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def save_model(self, request: HttpRequest, obj: Contact, form: forms.ModelForm, change: bool) -> None:
        if change:
            fields = {name: form.cleaned_data[name] for name in services.CONTACT_FIELDS if name in form.changed_data}
            services.contact_update(contact=obj, **fields)
            return
        created = services.contact_create(
            organization=obj.organization,
            email=obj.email,
            first_name=obj.first_name,
            last_name=obj.last_name,
            properties=obj.properties,
            timezone_name=obj.timezone,
            consent_source=obj.consent_source or f"added in admin by {request.user}",
            consent_ip=obj.consent_ip,
            consented_at=obj.consented_at,
            actor=request.user,
        )
        obj.pk, obj.status, obj.consented_at = created.pk, created.status, created.consented_at
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Tags may have changed: a tag that is a sequence goal takes the contact out of it.
        sequence_services.goals_check_for_contact(contact=form.instance)

    @admin.action(description="Unsubscribe the selected contacts")
    def unsubscribe_contacts(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(
            services.contact_unsubscribe(contact=contact, source=f"admin: {request.user}", actor=request.user)
            for contact in queryset
            if self.has_change_permission(request, contact)
        )
        self.message_user(request, f"Unsubscribed {count} contact(s).", messages.SUCCESS)

    @admin.action(description="Resubscribe the selected contacts (they gave consent again)")
    def resubscribe_contacts(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for contact in queryset:
            if self.has_change_permission(request, contact):
                services.contact_resubscribe(contact=contact, source=f"admin: {request.user}", actor=request.user)
                count += 1
        self.message_user(request, f"Resubscribed {count} contact(s).", messages.SUCCESS)


class SuppressionForm(TenantModelForm):
    email = forms.EmailField(help_text="Only its SHA-256 hash is stored.")

    class Meta:
        model = Suppression
        fields = ("organization", "reason", "detail")

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])


@admin.register(Suppression)
class SuppressionAdmin(TenantAdmin):
    list_display = ("email_hash", "reason", "organization", "created_at")
    list_filter = ("reason",)
    search_fields = ("email_hash",)

    def get_form(self, request: HttpRequest, obj: Suppression | None = None, **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = SuppressionForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Suppression | None = None) -> tuple[str, ...]:
        return ("email_hash", "reason", "created_at") if obj else ()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Staff search by address; only the hash is stored, so search by the address's hash.
        if "@" in search_term:
            try:
                return queryset.filter(email_hash=email_hash(normalize_email(search_term))), False
            except ValidationError:
                return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    def save_model(self, request: HttpRequest, obj: Suppression, form: forms.ModelForm, change: bool) -> None:
        if change:
            obj.save(update_fields=["detail"])
            return
        created = services.suppression_add(
            organization=form.cleaned_data["organization"],
            email=form.cleaned_data["email"],
            reason=form.cleaned_data["reason"],
            detail=form.cleaned_data.get("detail") or f"added in admin by {request.user}",
            source=f"admin: {request.user}",
            actor=request.user,
        )
        obj.pk = created.pk
        obj._state.adding = False
        contact = Contact.objects.filter(organization=created.organization, email=form.cleaned_data["email"]).first()
        if contact is not None:
            detail = f"suppressed in admin by {request.user}"
            source = f"admin: {request.user}"
            if created.reason == Suppression.Reason.BOUNCED:
                services.contact_mark_bounced(contact=contact, detail=detail, source=source, actor=request.user)
            elif created.reason == Suppression.Reason.COMPLAINED:
                services.contact_mark_complained(contact=contact, detail=detail, source=source, actor=request.user)
            else:
                services.contact_unsubscribe(contact=contact, source=detail, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        services.suppression_lift(suppression=obj, source=f"admin: {request.user}", actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for suppression in queryset:
            services.suppression_lift(suppression=suppression, source=f"admin: {request.user}", actor=request.user)


@admin.register(ContactEvent)
class ContactEventAdmin(ReadOnlyTenantAdmin):
    list_display = ("occurred_at", "name", "contact", "organization", "received_at")
    list_filter = ("name",)
    search_fields = ("name", "contact__email")
    list_select_related = ("organization", "contact")
    date_hierarchy = "occurred_at"


class ImportRejectionInline(TenantInline, admin.TabularInline):
    model = ImportRejection
    fields = ("line", "reason", "raw")
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ContactImport)
class ContactImportAdmin(ReadOnlyTenantAdmin):
    list_display = (
        "filename",
        "organization",
        "status",
        "rows_processed",
        "created_count",
        "updated_count",
        "skipped_count",
        "rejected_count",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("filename", "token")
    inlines = [ImportRejectionInline]


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyTenantAdmin):
    """The consent ledger: append-only, so nobody adds, changes or deletes a record here."""

    list_display = ("occurred_at", "action", "source", "contact", "organization", "ip")
    list_filter = ("action",)
    search_fields = ("email_hash", "source", "contact__email")
    list_select_related = ("organization", "contact")
    date_hierarchy = "occurred_at"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # An erased contact's records keep only the address's hash: search by address finds them.
        if "@" in search_term:
            try:
                return queryset.filter(email_hash=email_hash(normalize_email(search_term))), False
            except ValidationError:
                return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)


class SubscribeFormForm(TenantModelForm):
    redirect_url = forms.URLField(
        required=False, assume_scheme="https", help_text="Where the browser goes after signing up."
    )

    class Meta:
        model = SubscribeForm
        fields = ("organization", "name", "contact_list", "consent_wording", "redirect_url", "is_active")


@admin.register(SubscribeForm)
class SubscribeFormAdmin(TenantAdmin):
    form = SubscribeFormForm
    list_display = ("name", "organization", "contact_list", "is_active", "hosted_url", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "token")
    readonly_fields = ("hosted_url", "embed_code", "created_at")

    @admin.display(description="hosted page")
    def hosted_url(self, obj: SubscribeForm) -> str:
        return links.subscribe_url(obj.token) if obj.pk else ""

    @admin.display(description="HTML to embed")
    def embed_code(self, obj: SubscribeForm) -> str:
        return consent.embed_snippet(obj) if obj.pk else ""

    def save_model(self, request: HttpRequest, obj: SubscribeForm, form: forms.ModelForm, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in consent.FORM_FIELDS if name in form.cleaned_data}
        if change:
            consent.subscribe_form_update(form=obj, **fields)
            return
        created = consent.subscribe_form_create(organization=form.cleaned_data["organization"], **fields)
        obj.pk, obj.token, obj.created_at = created.pk, created.token, created.created_at
        obj._state.adding = False
