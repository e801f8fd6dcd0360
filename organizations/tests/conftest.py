"""The cast of the tenancy tests: organization Alpha (whose staff look around the admin) and
organization Bravo (whose rows must stay invisible to them)."""

from __future__ import annotations

import pytest

from organizations.tests.tenant_world import Tenant, build_tenant


@pytest.fixture
def alpha(db) -> Tenant:
    return build_tenant("alpha")


@pytest.fixture
def bravo(db) -> Tenant:
    return build_tenant("bravo")
