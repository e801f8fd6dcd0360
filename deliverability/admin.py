from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from deliverability import dnscheck, services
from deliverability.models import BounceReport, SendingDomain
from organizations.admin import ReadOnlyTenantAdmin, TenantAdmin, TenantModelForm

# Sending domains ------------------------------------------------------------------------------


class SendingDomainAddForm(TenantModelForm):
    """Only the organization and the domain: the keys are made by the service on save."""

    class Meta:
        model = SendingDomain
        fields = ("organization", "domain")

    def clean_domain(self) -> str:
        return services.domain_normalize(self.cleaned_data["domain"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        organization, domain = cleaned.get("organization"), cleaned.get("domain")
        if organization and domain and SendingDomain.objects.for_org(organization).filter(domain=domain).exists():
            self.add_error("domain", f"{domain} is already a sending domain of {organization}.")
        return cleaned

    def _post_clean(self) -> None:
        # The model's own validation would demand the keys the service has yet to make.
        pass


@admin.register(SendingDomain)
class SendingDomainAdmin(TenantAdmin):
    """Private keys are never shown; the DNS records to publish and the last check are."""

    list_display = ("domain", "organization", "is_verified", "verified_at", "last_checked_at", "created_at")
    search_fields = ("domain",)
    actions = ["check_dns"]
    readonly_fields = (
        "domain",
        "dkim_selector_rsa",
        "dkim_selector_ed25519",
        "verified_at",
        "last_checked_at",
        "records_to_publish",
        "last_check_findings",
        "created_at",
    )

    def get_form(self, request: HttpRequest, obj: SendingDomain | None = None, **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = SendingDomainAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: SendingDomain | None = None) -> list[str]:
        if obj is None:
            return ["organization", "domain"]
        return ["organization", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: SendingDomain | None = None) -> tuple[str, ...]:
        return super().get_readonly_fields(request, obj) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: SendingDomain, form: forms.ModelForm, change: bool) -> None:
        if change:
            return  # nothing on an existing domain is edited by hand
        registered = services.sending_domain_register(
            organization=form.cleaned_data["organization"], domain=form.cleaned_data["domain"]
        )
        for model_field in SendingDomain._meta.concrete_fields:
            setattr(obj, model_field.attname, getattr(registered, model_field.attname))

    @admin.display(boolean=True, description="verified")
    def is_verified(self, obj: SendingDomain) -> bool:
        return obj.is_verified

    @admin.display(description="DNS records to publish")
    def records_to_publish(self, obj: SendingDomain) -> str:
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td><code>{}</code></td><td><code style='word-break:break-all'>{}</code></td></tr>",
                ((record.type, record.name, record.value) for record in dnscheck.records_to_publish(obj)),
            ),
        )

    @admin.display(description="last DNS check")
    def last_check_findings(self, obj: SendingDomain) -> str:
        findings = (obj.check_results or {}).get("findings", [])
        if not findings:
            return "Not checked yet."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li><strong>{}</strong>: {}</li>", ((item["severity"], item["message"]) for item in findings)
            ),
        )

    @admin.action(description="Check DNS now", permissions=["change"])
    def check_dns(self, request: HttpRequest, queryset: QuerySet) -> None:
        for sending_domain in queryset:
            if not self.has_change_permission(request, sending_domain):
                continue
            report = services.sending_domain_check(sending_domain=sending_domain)
            errors = [finding.message for finding in report.findings if finding.severity == dnscheck.ERROR]
            if report.verified:
                self.message_user(request, f"{sending_domain}: verified.", messages.SUCCESS)
            else:
                self.message_user(request, f"{sending_domain}: {' '.join(errors)}", messages.WARNING)

    def delete_model(self, request: HttpRequest, obj: SendingDomain) -> None:
        services.sending_domain_delete(sending_domain=obj)


# Bounce and complaint reports ------------------------------------------------------------------


@admin.register(BounceReport)
class BounceReportAdmin(ReadOnlyTenantAdmin):
    """What came back about our messages, as classified and applied. A wrongly suppressed
    address is put right on its suppression (lifted there), not here."""

    list_display = ("received_at", "classification", "source", "status", "reply", "reason", "contact", "message")
    list_filter = ("classification", "source", "reason")
    search_fields = ("contact__email", "status", "reply", "diagnostic")
    list_select_related = ("organization", "contact", "message")
    date_hierarchy = "received_at"
