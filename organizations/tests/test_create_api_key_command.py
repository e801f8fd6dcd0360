"""`manage.py create_api_key --org NAME --scopes read|write`: the new key alone on the last line,
working at once; a clear error and a failing exit status for an unknown organization or scope."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from conftest import REPO, process_env
from organizations.models import ApiKey
from organizations.tests.factories import OrganizationFactory


def create_api_key(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue().rstrip("\n").splitlines()


def tags_seen_with(raw: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client.get("/api/v1/tags/").status_code


@pytest.mark.django_db
@pytest.mark.parametrize("org", ["acme", "Acme Corp", "acme corp"])
def test_the_key_is_alone_on_the_last_line_and_works(org: str):
    organization = OrganizationFactory(name="Acme Corp", slug="acme")

    lines = create_api_key("--org", org, "--scopes", "write", "--name", "deploy script")

    raw = lines[-1]
    api_key = ApiKey.objects.get(organization=organization)
    assert raw.startswith(f"esk_{api_key.prefix}_") and " " not in raw
    assert (api_key.name, api_key.scope) == ("deploy script", ApiKey.Scope.WRITE)
    assert raw not in api_key.key_hash
    assert tags_seen_with(raw) == 200


@pytest.mark.django_db
def test_read_and_write_together_make_a_write_key():
    OrganizationFactory(slug="acme")

    create_api_key("--org", "acme", "--scopes", "read,write")

    assert ApiKey.objects.get().scope == ApiKey.Scope.WRITE


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--org", "nowhere", "--scopes", "read"], "No organization has the slug or name 'nowhere'"),
        (["--org", "acme", "--scopes", "admin"], "Unknown scope 'admin': use read or write"),
        (["--org", "Twins", "--scopes", "read"], "Several organizations are named 'Twins': give the slug"),
    ],
)
def test_an_unknown_organization_or_scope_is_a_clear_error_and_makes_no_key(args: list[str], message: str):
    OrganizationFactory(slug="acme")
    OrganizationFactory(name="Twins", slug="twin-1")
    OrganizationFactory(name="twins", slug="twin-2")

    with pytest.raises(CommandError, match=message):
        create_api_key(*args)

    assert not ApiKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_from_a_shell_the_last_line_is_the_key_and_a_mistake_exits_non_zero(tmp_path: Path):
    OrganizationFactory(slug="acme")
    env = process_env(tmp_path)

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "manage.py", "create_api_key", *args]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)

    made = manage("--org", "acme", "--scopes", "read")
    refused = manage("--org", "nowhere", "--scopes", "read")

    assert made.returncode == 0, made.stderr
    assert tags_seen_with(made.stdout.splitlines()[-1]) == 200
    assert refused.returncode != 0
    assert "No organization has the slug or name 'nowhere'" in refused.stderr
