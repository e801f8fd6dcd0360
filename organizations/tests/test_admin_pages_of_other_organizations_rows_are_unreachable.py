"""Acceptance: the change, history and delete pages of another organization's rows are out of
reach (the admin answers as if the row did not exist), and neither a form post nor a bulk
action can touch such a row."""

from __future__ import annotations

import pytest
from django.test import Client

from organizations.models import Organization
from organizations.tests.tenant_world import Tenant, admin_url, organization_scoped_admins
from sequences.models import Enrollment, Sequence
from subscribers.models import Contact, Suppression, Tag

SCOPED = organization_scoped_admins()
SCOPED_IDS = [model._meta.label for model, _ in SCOPED]


@pytest.mark.parametrize(("model", "model_admin"), SCOPED, ids=SCOPED_IDS)
@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_pages_of_another_organizations_row_redirect_to_the_admin_index(
    client: Client, alpha: Tenant, bravo: Tenant, model, model_admin, view: str
) -> None:
    client.force_login(alpha.owner)

    own = client.get(admin_url(model, view, alpha.row(model).pk))
    other = client.get(admin_url(model, view, bravo.row(model).pk))

    if own.status_code == 403:
        # Read-only records (messages, events) cannot be deleted at all, whoever's they are.
        assert view == "delete"
        assert other.status_code == 403
        return
    assert own.status_code == 200
    assert other.status_code == 302
    assert other["Location"] == "/admin/"
    assert "bravo" not in client.get(other["Location"]).content.decode().lower()


def test_posting_a_change_to_another_organizations_contact_changes_nothing(
    client: Client, alpha: Tenant, bravo: Tenant
) -> None:
    target = bravo.row(Contact)
    client.force_login(alpha.owner)

    response = client.post(
        admin_url(Contact, "change", target.pk),
        {"organization": alpha.organization.pk, "email": "stolen@alpha.example", "first_name": "Stolen"},
    )

    assert response.status_code == 302
    target.refresh_from_db()
    assert (target.organization_id, target.email) == (bravo.organization.pk, "bravo-person@bravo.example")


def test_posting_a_delete_of_another_organization_changes_nothing(client: Client, alpha: Tenant, bravo: Tenant) -> None:
    client.force_login(alpha.owner)

    client.post(admin_url(Organization, "delete", bravo.organization.pk), {"post": "yes"})
    client.post(admin_url(Contact, "delete", bravo.row(Contact).pk), {"post": "yes"})

    assert Organization.objects.filter(pk=bravo.organization.pk).exists()
    assert Contact.objects.filter(pk=bravo.row(Contact).pk).exists()


def snapshot(row) -> dict | None:
    current = type(row).objects.filter(pk=row.pk).first()
    if current is None:
        return None
    return {field.attname: getattr(current, field.attname) for field in type(row)._meta.concrete_fields}


@pytest.mark.parametrize(
    ("model", "action"),
    [
        (Tag, "delete_selected"),
        (Contact, "unsubscribe_contacts"),
        (Suppression, "delete_selected"),
        (Sequence, "archive"),
        (Enrollment, "exit_enrollments"),
    ],
)
def test_a_bulk_action_acts_on_the_own_rows_selected_and_leaves_another_organizations_alone(
    client: Client, alpha: Tenant, bravo: Tenant, model, action: str
) -> None:
    own, other = alpha.row(model), bravo.row(model)
    own_before, other_before = snapshot(own), snapshot(other)
    client.force_login(alpha.owner)

    client.post(
        admin_url(model, "changelist"),
        {"action": action, "_selected_action": [own.pk, other.pk], "index": "0", "post": "yes"},
    )

    assert snapshot(own) != own_before
    assert snapshot(other) == other_before
