"""Acceptance: every way the admin offers related rows to pick (autocomplete, select boxes,
many-to-many pickers, inline forms) offers the own organization's rows and none of another's."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client

from organizations.models import Organization
from organizations.tenancy import TenantModel
from organizations.tests.tenant_world import Tenant, admin_url, organization_scoped_admins

SCOPED = organization_scoped_admins()
SCOPED_IDS = [model._meta.label for model, _ in SCOPED]


def autocomplete_sources() -> list[tuple[type, str]]:
    """(model, field) for every relation from an organization's row to a searchable scoped admin."""
    sources = []
    for model in apps.get_models():
        if not any(model_field.name == "organization" for model_field in model._meta.fields):
            continue
        for model_field in model._meta.get_fields():
            if not (model_field.concrete and (model_field.many_to_one or model_field.many_to_many)):
                continue
            remote = model_field.related_model
            remote_admin = admin.site._registry.get(remote)
            if remote_admin is None or not remote_admin.search_fields:
                continue
            if remote is Organization or issubclass(remote, TenantModel):
                sources.append((model, model_field.name))
    return sorted(sources, key=lambda source: (source[0]._meta.label, source[1]))


SOURCES = autocomplete_sources()


def test_the_autocomplete_sources_include_the_contacts_tags_and_lists() -> None:
    labels = {f"{model._meta.label}.{name}" for model, name in SOURCES}

    assert {"subscribers.Contact.tags", "subscribers.Contact.lists", "sequences.Enrollment.contact"} <= labels


@pytest.mark.parametrize(("model", "field_name"), SOURCES, ids=[f"{m._meta.label}.{f}" for m, f in SOURCES])
def test_autocomplete_offers_the_own_organizations_rows_and_none_of_another(
    client: Client, alpha: Tenant, bravo: Tenant, model, field_name: str
) -> None:
    remote = model._meta.get_field(field_name).related_model
    client.force_login(alpha.owner)

    def offered(term: str) -> set[str]:
        response = client.get(
            "/admin/autocomplete/",
            {
                "app_label": model._meta.app_label,
                "model_name": model._meta.model_name,
                "field_name": field_name,
                "term": term,
            },
        )
        assert response.status_code == 200
        return {result["id"] for result in response.json()["results"]}

    everything = offered("")
    assert str(alpha.row(remote).pk) in everything
    assert str(bravo.row(remote).pk) not in everything
    assert offered("bravo") == set()


def choice_fields(response) -> list[tuple[str, object]]:
    """(name, field) for every choice of rows on the page: the main form and every inline form."""
    # An inline form's hidden primary key is no choice: the formset only ever edits rows of
    # its parent, and ignores any other id posted to it.
    forms = [(response.context["adminform"].form, None)]
    for inline_admin_formset in response.context.get("inline_admin_formsets", []):
        formset = inline_admin_formset.formset
        forms.extend((form, formset.model._meta.pk.name) for form in [*formset.forms, formset.empty_form])
    return [
        (f"{type(form).__name__}.{name}", form_field)
        for form, hidden_pk in forms
        for name, form_field in form.fields.items()
        if hasattr(form_field, "queryset") and name != hidden_pk
    ]


def assert_offers_only_own_rows(name: str, queryset, alpha: Tenant, bravo: Tenant) -> None:
    remote = queryset.model
    if remote is get_user_model():
        return  # Accounts are not organization data: any person may be made a member.
    if remote is Organization:
        assert list(queryset) == [alpha.organization], name
        return
    assert issubclass(remote, TenantModel), f"{name} offers {remote._meta.label}, which has no organization"
    assert not queryset.filter(organization=bravo.organization).exists(), name


@pytest.mark.parametrize(("model", "model_admin"), SCOPED, ids=SCOPED_IDS)
@pytest.mark.parametrize("page", ["add", "change"])
def test_form_choices_offer_the_own_organizations_rows_and_none_of_another(
    client: Client, alpha: Tenant, bravo: Tenant, model, model_admin, page: str
) -> None:
    client.force_login(alpha.owner)
    url = admin_url(model, "add") if page == "add" else admin_url(model, "change", alpha.row(model).pk)

    response = client.get(url)

    if page == "add" and response.status_code == 403:
        # Only records nobody adds by hand (messages, events, imports, idempotency records, bounce
        # reports, consent records, experiment assignments), keys (made where their secret can be shown once) and
        # organizations refuse the page.
        assert model._meta.label in (
            "deliverability.BounceReport",
            "subscribers.ConsentRecord",
            "delivery.Message",
            "delivery.Event",
            "organizations.Organization",
            "organizations.ApiKey",
            "subscribers.ContactEvent",
            "subscribers.ContactImport",
            "api.IdempotencyRecord",
            "experiments.Assignment",
        )
        return
    assert response.status_code == 200
    assert "bravo" not in response.content.decode().lower()
    for name, form_field in choice_fields(response):
        assert_offers_only_own_rows(name, form_field.queryset, alpha, bravo)


def test_the_contact_form_offers_the_own_tags_and_lists_only(client: Client, alpha: Tenant, bravo: Tenant) -> None:
    client.force_login(alpha.owner)

    response = client.get("/admin/subscribers/contact/add/")

    form = response.context["adminform"].form
    assert [tag.name for tag in form.fields["tags"].queryset] == ["alpha-tag"]
    assert [contact_list.name for contact_list in form.fields["lists"].queryset] == ["alpha list"]
    assert [organization.name for organization in form.fields["organization"].queryset] == ["Alpha Org"]


def test_the_step_inline_offers_the_own_templates_only(client: Client, alpha: Tenant, bravo: Tenant) -> None:
    sequence = alpha.row(apps.get_model("sequences.Sequence"))
    client.force_login(alpha.owner)

    response = client.get(admin_url(type(sequence), "change", sequence.pk))

    step_forms = response.context["inline_admin_formsets"][0].formset
    assert [step.instance.name for step in step_forms.forms] == ["alpha step"]
    assert [template.name for template in step_forms.empty_form.fields["template"].queryset] == ["alpha template"]
