"""Sequences and templates stay inside their organization: another organization's ids, in the
URL or in the body, are 404 and change nothing. Viewers and read keys read; writing needs a
marketer or a write key."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client, role_client
from organizations.models import ApiKey, Membership
from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.models import EmailTemplate, Sequence, Step
from sequences.tests.helpers import draft_sequence, email_step
from subscribers.tests.factories import ContactFactory, TagFactory

pytestmark = pytest.mark.django_db

SEQUENCES = "/api/v1/email-sequences/"


@pytest.fixture
def ours():
    return OrganizationFactory()


@pytest.fixture
def theirs() -> Sequence:
    """Another organization's active sequence with one email step."""
    sequence = draft_sequence(OrganizationFactory(), name="Theirs")
    email_step(sequence, "Their hello")
    return services.sequence_activate(sequence=sequence)


def their_routes(sequence: Sequence) -> list[tuple[str, str, dict]]:
    item = f"{SEQUENCES}{sequence.pk}"
    template_url = f"/api/v1/templates/{sequence.steps.get().template_id}/"
    settings = {"name": "Mine now", "from_email": "a@example.com"}
    return [
        ("get", item, {}),
        ("put", item, {**settings, "steps": []}),
        ("patch", item, {"name": "Mine now"}),
        ("delete", item, {}),
        ("post", f"{item}/activate", {}),
        ("post", f"{item}/pause", {}),
        ("post", f"{item}/archive", {}),
        ("get", f"{item}/subscribers", {}),
        ("post", f"{item}/subscribers", {"contact_ids": [1]}),
        ("get", f"{item}/analytics", {}),
        ("get", template_url, {}),
        ("put", template_url, {"name": "x", "subject": "x", "html_body": "x"}),
        ("patch", template_url, {"name": "x"}),
        ("delete", template_url, {}),
        ("post", f"{template_url}preview/", {}),
        ("post", f"{template_url}test-send/", {"to": "a@example.com"}),
    ]


def test_another_organizations_sequences_and_templates_are_not_found_by_any_route(ours, theirs):
    client = key_client(ours)

    for method, url, body in their_routes(theirs):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.json())
    theirs.refresh_from_db()
    assert (theirs.name, theirs.status, theirs.steps.count()) == ("Theirs", Sequence.Status.ACTIVE, 1)
    assert client.get(SEQUENCES).json()["results"] == []
    assert client.get("/api/v1/templates/").json()["results"] == []


def test_a_template_of_another_organization_in_a_step_is_not_found(ours, theirs):
    their_template = theirs.steps.get().template_id
    mine = draft_sequence(ours)
    body = {"name": "x", "from_email": "a@example.com", "steps": [{"kind": "email", "template_id": their_template}]}

    created = key_client(ours).post(SEQUENCES, body, format="json")
    replaced = key_client(ours).put(f"{SEQUENCES}{mine.pk}", body, format="json")

    assert created.status_code == replaced.status_code == 404
    assert "steps.0.template_id" in created.json()["detail"]
    assert Sequence.objects.filter(organization=ours).count() == 1 and not mine.steps.exists()


def test_a_step_of_another_sequence_cannot_be_taken_over_by_a_put(ours, theirs):
    mine = draft_sequence(ours)
    their_step = theirs.steps.get()
    body = {"name": "x", "from_email": "a@example.com", "steps": [{"id": their_step.pk, "kind": "exit"}]}

    response = key_client(ours).put(f"{SEQUENCES}{mine.pk}", body, format="json")

    assert response.status_code == 404 and "steps.0.id" in response.json()["detail"]
    their_step.refresh_from_db()
    assert (their_step.sequence_id, their_step.kind) == (theirs.pk, Step.Kind.EMAIL)


def test_tags_of_another_organization_in_a_goal_or_condition_are_not_found(ours):
    their_tag = TagFactory()
    client = key_client(ours)
    mine = draft_sequence(ours)
    goal = {"type": "has_tag", "tag": their_tag.pk}

    in_goal = client.post(SEQUENCES, {"name": "x", "from_email": "a@example.com", "goal": goal}, format="json")
    patched = client.patch(f"{SEQUENCES}{mine.pk}", {"goal": goal}, format="json")
    in_condition = client.post(
        SEQUENCES,
        {"name": "y", "from_email": "a@example.com", "steps": [{"kind": "condition", "condition": goal}]},
        format="json",
    )

    assert (in_goal.status_code, patched.status_code, in_condition.status_code) == (404, 404, 404)
    assert "goal" in in_goal.json()["detail"] and "steps.0.condition" in in_condition.json()["detail"]
    mine.refresh_from_db()
    assert mine.goal is None and Sequence.objects.count() == 1


def test_an_own_tag_makes_a_goal(ours):
    tag = TagFactory(organization=ours)

    response = key_client(ours).post(
        SEQUENCES,
        {"name": "x", "from_email": "a@example.com", "goal": {"type": "has_tag", "tag": tag.pk}},
        format="json",
    )

    assert response.status_code == 201 and response.json()["goal"] == {"type": "has_tag", "tag": tag.pk}


def test_a_viewer_reads_but_cannot_create_change_or_enroll(ours):
    sequence = draft_sequence(ours)
    email_step(sequence, "Hello")
    viewer = role_client(ours, Membership.Role.VIEWER)
    item = f"{SEQUENCES}{sequence.pk}"

    assert viewer.get(SEQUENCES).status_code == 200
    assert viewer.get(item).status_code == viewer.get(f"{item}/analytics").status_code == 200
    assert viewer.get(f"{item}/subscribers").status_code == 200
    assert viewer.post(SEQUENCES, {"name": "x", "from_email": "a@example.com"}, format="json").status_code == 403
    assert viewer.patch(item, {"name": "x"}, format="json").status_code == 403
    assert viewer.post(f"{item}/activate").status_code == 403
    assert viewer.delete(item).status_code == 403
    templates = "/api/v1/templates/"
    assert viewer.post(templates, {"name": "t", "subject": "s", "html_body": "b"}, format="json").status_code == 403
    assert viewer.get(templates).status_code == 200
    assert Sequence.objects.get().status == Sequence.Status.DRAFT and EmailTemplate.objects.count() == 1


def test_a_read_key_reads_analytics_but_cannot_enroll(ours):
    sequence = draft_sequence(ours)
    email_step(sequence, "Hello")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=ours)
    read_key = key_client(ours, ApiKey.Scope.READ)

    analytics = read_key.get(f"{SEQUENCES}{sequence.pk}/analytics")
    enroll = read_key.post(f"{SEQUENCES}{sequence.pk}/subscribers", {"contact_ids": [contact.pk]}, format="json")

    assert analytics.status_code == 200 and enroll.status_code == 403
    assert not sequence.enrollments.exists()


def test_a_marketer_creates_sequences_and_templates(ours):
    marketer = role_client(ours, Membership.Role.MARKETER)
    created = marketer.post("/api/v1/templates/", {"name": "t", "subject": "s", "html_body": "b"}, format="json")

    response = marketer.post(
        SEQUENCES,
        {
            "name": "x",
            "from_email": "a@example.com",
            "steps": [{"kind": "email", "template_id": created.json()["id"]}],
        },
        format="json",
    )

    assert created.status_code == response.status_code == 201
    assert Sequence.objects.get(organization=ours).steps.get().template_id == created.json()["id"]
