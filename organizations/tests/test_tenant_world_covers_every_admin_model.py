"""The tenancy tests walk every organization-scoped model in the admin: the world they build must
hold a row of each, or a newly registered model would escape them unnoticed."""

from __future__ import annotations

from organizations.tests.tenant_world import Tenant, organization_scoped_admins


def test_the_tenant_world_has_a_row_of_every_organization_scoped_admin_model(alpha: Tenant) -> None:
    scoped = {model for model, _ in organization_scoped_admins()}

    missing = sorted(model._meta.label for model in scoped - set(alpha.rows))
    assert missing == [], f"add a row of {missing} to organizations/tests/tenant_world.py"
    assert {"subscribers.Contact", "sequences.Sequence", "delivery.Message", "organizations.Membership"} <= {
        model._meta.label for model in scoped
    }
