"""Templates over the API: CRUD with Liquid checked (errors say where), no deleting a template a
step uses, and previews rendered the way real sends render them."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client
from organizations.tests.factories import OrganizationFactory
from sequences.models import EmailTemplate
from sequences.tests.helpers import draft_sequence, email_step, template
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

TEMPLATES = "/api/v1/templates/"
BODY = '<html><body><p>Hi {{ contact.first_name | default: "there" }}</p><a href="https://example.com/x">X</a></body></html>'


@pytest.fixture
def organization():
    return OrganizationFactory(name="Acme", postal_address="1 Road\nTown")


@pytest.fixture
def client(organization):
    return key_client(organization)


def test_a_template_is_created_read_listed_changed_and_deleted(client, organization):
    created = client.post(
        TEMPLATES, {"name": "Hello", "subject": "Hi {{ contact.first_name }}", "html_body": BODY}, format="json"
    )
    assert created.status_code == 201, created.json()
    url = f"{TEMPLATES}{created.json()['id']}/"
    template(organization)

    assert client.get(url).json()["subject"] == "Hi {{ contact.first_name }}"
    assert [row["name"] for row in client.get(TEMPLATES, {"ordering": "name"}).json()["results"]][0] == "Hello"
    replaced = client.put(url, {"name": "Hello 2", "subject": "Yo", "html_body": "<p>Yo</p>"}, format="json")
    patched = client.patch(url, {"text_body": "Yo, in text"}, format="json")
    assert replaced.status_code == patched.status_code == 200
    assert patched.json() | {"updated_at": None} == replaced.json() | {"updated_at": None, "text_body": "Yo, in text"}
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404


def test_liquid_errors_are_field_errors_that_say_where(client, organization):
    response = client.post(
        TEMPLATES,
        {"name": "Broken", "subject": "Hi {{ contact.first_name | shout }}", "html_body": "<p>\n{% if x %}open</p>"},
        format="json",
    )

    assert response.status_code == 400
    errors = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert errors["subject"].startswith("line 1, column ") and "unknown filter 'shout'" in errors["subject"]
    assert errors["html_body"].startswith("line 2, column 4: this 'if' is never closed")
    assert not EmailTemplate.objects.exists()


def test_a_taken_name_is_a_field_error(client, organization):
    EmailTemplate.objects.filter(pk=template(organization).pk).update(name="Taken")

    response = client.post(TEMPLATES, {"name": "Taken", "subject": "S", "html_body": "B"}, format="json")

    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "name"


def test_a_template_a_step_uses_cannot_be_deleted(client, organization):
    sequence = draft_sequence(organization, name="Onboarding")
    step = email_step(sequence, "Hello")

    response = client.delete(f"{TEMPLATES}{step.template_id}/")

    assert response.status_code == 409 and "Onboarding" in response.json()["detail"]
    assert EmailTemplate.objects.filter(pk=step.template_id).exists()


def test_a_preview_renders_for_a_contact_with_footer_and_untracked_links(client, organization):
    contact = ContactFactory(organization=organization, first_name="Zoë")
    hello = template(organization, subject="Hello {{ contact.first_name }}", html=BODY)

    response = client.post(f"{TEMPLATES}{hello.pk}/preview/", {"contact_id": contact.pk}, format="json")

    assert response.status_code == 200, response.json()
    preview = response.json()
    assert preview["subject"] == "Hello Zoë"
    assert "Hi Zoë" in preview["html"] and 'href="https://example.com/x"' in preview["html"]
    assert "/t/o/" not in preview["html"] and "/t/c/" not in preview["html"]
    assert "1 Road" in preview["html"] and "Unsubscribe" in preview["text"]
    assert "Hi Zoë" in preview["text"]


def test_a_preview_renders_for_made_up_contact_data_or_for_nobody(client, organization):
    hello = template(organization, subject="Plan: {{ contact.properties.plan | default: 'none' }}", html=BODY)
    url = f"{TEMPLATES}{hello.pk}/preview/"

    made_up = client.post(url, {"contact": {"first_name": "Ada", "properties": {"plan": "pro"}}}, format="json")
    nobody = client.post(url, {}, format="json")

    assert made_up.json()["subject"] == "Plan: pro" and "Hi Ada" in made_up.json()["html"]
    assert nobody.json()["subject"] == "Plan: none" and "Hi there" in nobody.json()["html"]
    assert client.post(url, {"contact": {"first_name": "A"}, "contact_id": 1}, format="json").status_code == 400


def test_a_template_that_fails_at_render_time_is_a_400_problem(client, organization, settings):
    settings.TEMPLATE_LOOP_LIMIT = 10
    looping = template(organization, html="{% for i in (1..50) %}{{ i }}{% endfor %}")

    response = client.post(f"{TEMPLATES}{looping.pk}/preview/", {}, format="json")

    assert response.status_code == 400
    assert "failed to render" in response.json()["detail"]


def test_previewing_for_a_contact_of_another_organization_is_not_found(client, organization):
    hello = template(organization)

    response = client.post(f"{TEMPLATES}{hello.pk}/preview/", {"contact_id": ContactFactory().pk}, format="json")

    assert response.status_code == 404 and "contact_id" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "x", "subject": "s", "html_body": "a\x00b"},
        {"name": "x", "subject": "s" * 501, "html_body": "b"},
        {"name": ["x"], "subject": "s", "html_body": "b"},
        {"name": "x", "subject": "{{", "html_body": "b"},
    ],
)
def test_malformed_templates_are_400_problems(client, body):
    response = client.post(TEMPLATES, body, format="json")

    assert response.status_code == 400
    assert not EmailTemplate.objects.exists()
