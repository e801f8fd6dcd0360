"""Sequences over the API: created with their steps, read, replaced (PUT) or patched, moved
through their states, and deleted; bad input is a clear problem that changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from api.tests.clients import key_client
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Sequence, Step
from sequences.tests.helpers import delay_step, draft_sequence, email_step, template
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

SEQUENCES = "/api/v1/email-sequences/"


@pytest.fixture
def organization():
    return OrganizationFactory()


@pytest.fixture
def client(organization):
    return key_client(organization)


def create(client, organization, **fields):
    body = {"name": "Welcome", "from_email": "team@example.com", **fields}
    return client.post(SEQUENCES, body, format="json")


def live_sequence(organization) -> Sequence:
    """An active sequence (email, delay, email, delay, email) with one contact waiting on the
    first delay."""
    sequence = draft_sequence(organization)
    email_step(sequence, "One")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Two")
    delay_step(sequence, dt.timedelta(days=1))
    email_step(sequence, "Three")
    services.sequence_activate(sequence=sequence)
    services.enrollment_create(sequence=sequence, contact=ContactFactory(organization=organization))
    engine.advance_due_enrollments()
    return sequence


def as_put_body(client, sequence_id: int) -> dict:
    body = client.get(f"{SEQUENCES}{sequence_id}/").json()
    return {key: value for key, value in body.items() if key not in ("id", "status", "created_at", "updated_at")}


def test_a_sequence_is_created_as_a_draft_with_its_steps_in_order(client, organization):
    welcome = template(organization)
    response = create(
        client,
        organization,
        send_days=[0, 1, 2, 3, 4],
        send_start_hour=9,
        send_end_hour=17,
        steps=[
            {"kind": "email", "template_id": welcome.pk},
            {"kind": "wait_until", "wait_until_time": "09:30", "wait_until_days": [0, 2]},
            {"kind": "condition", "condition": {"type": "clicked", "step": None}, "no_step": 4},
            {"kind": "exit", "name": "Done"},
        ],
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["send_days"] == [0, 1, 2, 3, 4]
    assert [step["position"] for step in body["steps"]] == [1, 2, 3, 4]
    assert body["steps"][1]["wait_until_time"] == "09:30:00" and body["steps"][1]["wait_until_days"] == [0, 2]
    assert body["steps"][2]["no_step"] == 4 and body["steps"][2]["yes_step"] is None
    stored = Sequence.objects.get(pk=body["id"])
    condition = stored.steps.get(position=3)
    assert condition.no_step == stored.steps.get(position=4)


def test_a_condition_names_an_email_step_of_the_same_request_by_position(client, organization):
    response = create(
        client,
        organization,
        steps=[
            {"kind": "email", "template_id": template(organization).pk},
            {"kind": "condition", "condition": {"type": "opened", "step": 1}},
        ],
    )

    assert response.status_code == 201, response.json()
    sequence = Sequence.objects.get(pk=response.json()["id"])
    first = sequence.steps.get(position=1)
    assert sequence.steps.get(position=2).condition == {"type": "opened", "step": first.pk}
    assert response.json()["steps"][1]["condition"] == {"type": "opened", "step": 1}


def test_every_sequence_route_answers_with_and_without_the_trailing_slash(client, organization):
    sequence = live_sequence(organization)
    for suffix in ("", "/subscribers", "/analytics"):
        for slash in ("", "/"):
            assert client.get(f"/api/v1/email-sequences/{sequence.pk}{suffix}{slash}").status_code == 200
    assert client.get("/api/v1/email-sequences").status_code == 200
    assert client.post(f"/api/v1/email-sequences/{sequence.pk}/pause/").status_code == 200
    assert client.post(f"/api/v1/email-sequences/{sequence.pk}/activate").status_code == 200


def test_the_list_filters_by_status_and_orders_by_name(client, organization):
    for name in ("Beta", "Alpha", "Gamma"):
        draft_sequence(organization, name=name)
    live_sequence(organization)

    drafts = client.get(SEQUENCES, {"status": "draft", "ordering": "name"}).json()["results"]
    assert [sequence["name"] for sequence in drafts] == ["Alpha", "Beta", "Gamma"]
    assert [s["status"] for s in client.get(SEQUENCES, {"status": "active"}).json()["results"]] == ["active"]
    assert client.get(SEQUENCES, {"status": "sleeping"}).status_code == 400
    assert client.get(SEQUENCES, {"ordering": "from_email"}).status_code == 400


def test_put_keeps_steps_named_by_id_creates_new_ones_and_moves_contacts_off_removed_ones(client, organization):
    sequence = live_sequence(organization)
    enrollment = Enrollment.objects.get(sequence=sequence)
    body = as_put_body(client, sequence.pk)
    one, first_delay, two, second_delay, three = body["steps"]
    assert enrollment.current_step_id == two["id"]
    body["steps"] = [one, first_delay, {"kind": "delay", "delay": "PT6H"}, second_delay, three]

    response = client.put(f"{SEQUENCES}{sequence.pk}", body, format="json")

    assert response.status_code == 200, response.json()
    steps = response.json()["steps"]
    kept = [one["id"], first_delay["id"], second_delay["id"], three["id"]]
    assert [step["id"] for step in steps[:2] + steps[3:]] == kept
    assert steps[2]["delay_seconds"] == 6 * 3600 and steps[2]["id"] not in kept
    assert not Step.objects.filter(pk=two["id"]).exists()
    enrollment.refresh_from_db()
    # The contact was due to get the removed email: it moves on to the step that followed it.
    assert enrollment.current_step_id == second_delay["id"]
    assert list(sequence.steps.order_by("position").values_list("position", flat=True)) == [1, 2, 3, 4, 5]


def test_put_can_reorder_steps(client, organization):
    sequence = live_sequence(organization)
    body = as_put_body(client, sequence.pk)
    body["steps"] = list(reversed(body["steps"][2:]))

    response = client.put(f"{SEQUENCES}{sequence.pk}/", body, format="json")

    assert response.status_code == 200, response.json()
    assert [step["name"] for step in response.json()["steps"]] == ["Three", "", "Two"]


def test_put_replaces_every_setting_and_needs_the_steps(client, organization):
    sequence = draft_sequence(organization, name="Old", reply_to="old@example.com", send_start_hour=8)

    missing_steps = client.put(
        f"{SEQUENCES}{sequence.pk}", {"name": "New", "from_email": "a@example.com"}, format="json"
    )
    response = client.put(
        f"{SEQUENCES}{sequence.pk}", {"name": "New", "from_email": "a@example.com", "steps": []}, format="json"
    )

    assert missing_steps.status_code == 400
    assert [error["field"] for error in missing_steps.json()["errors"]] == ["steps"]
    assert response.status_code == 200
    sequence.refresh_from_db()
    assert (sequence.name, sequence.reply_to, sequence.send_start_hour) == ("New", "", 0)


def test_patch_changes_only_the_settings_it_names_and_never_the_steps(client, organization):
    sequence = live_sequence(organization)

    response = client.patch(f"{SEQUENCES}{sequence.pk}", {"send_start_hour": 7, "track_clicks": False}, format="json")
    with_steps = client.patch(f"{SEQUENCES}{sequence.pk}", {"steps": []}, format="json")

    assert response.status_code == 200
    assert response.json()["send_start_hour"] == 7 and response.json()["track_clicks"] is False
    assert response.json()["status"] == "active" and len(response.json()["steps"]) == 5
    assert with_steps.status_code == 400 and sequence.steps.count() == 5


def test_a_bad_step_is_a_field_error_naming_its_place_and_changes_nothing(client, organization):
    welcome = template(organization)
    response = create(
        client,
        organization,
        steps=[{"kind": "email", "template_id": welcome.pk}, {"kind": "email"}],
    )

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["steps.1.template_id"]
    assert not Sequence.objects.exists()


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"kind": "delay"}], "steps.0.delay"),
        ([{"kind": "delay", "delay": "soon"}], "steps.0.delay"),
        ([{"kind": "delay", "delay": "P99999999999D"}], "steps.0.delay"),
        ([{"kind": "delay", "delay": "-P1D"}], "steps.0.delay"),
        ([{"kind": "delay", "delay": "P1D", "delay_seconds": 60}], "steps.0.delay_seconds"),
        ([{"kind": "delay", "delay_seconds": 2**70}], "steps.0.delay_seconds"),
        ([{"kind": "wait_until"}], "steps.0.wait_until_time"),
        ([{"kind": "condition", "condition": {"type": "weather"}}], "steps.0.condition"),
        ([{"kind": "condition", "condition": {"type": "opened", "step": 1}}], "steps.0.condition"),
        ([{"kind": "exit"}, {"kind": "condition", "condition": {"type": "opened", "step": 1}}], "steps.1.condition"),
        (
            [{"kind": "exit"}, {"kind": "condition", "condition": {"type": "clicked"}, "yes_step": 1}],
            "steps.1.yes_step",
        ),
        ([{"kind": "condition", "condition": {"type": "clicked"}, "no_step": 9}], "steps.0.no_step"),
        ([{"kind": "exit", "yes_step": 2}, {"kind": "exit"}], "steps.0.yes_step"),
        ([{"kind": "teleport"}], "steps.0.kind"),
        ([{"kind": "exit", "name": "a\x00b"}], "steps.0.name"),
    ],
)
def test_invalid_steps_are_refused_with_the_field_that_is_wrong(client, organization, steps, field):
    response = create(client, organization, steps=steps)

    assert response.status_code == 400, response.json()
    assert response.json()["errors"][0]["field"] == field
    assert not Sequence.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        [],
        "text",
        {"name": "x\x00", "from_email": "a@example.com"},
        {"name": "x", "from_email": "not an address"},
        {"name": "x", "from_email": "a@example.com", "send_start_hour": 2**80},
        {"name": "x", "from_email": "a@example.com", "send_start_hour": 20, "send_end_hour": 10},
        {"name": "x", "from_email": "a@example.com", "send_days": []},
        {"name": "x", "from_email": "a@example.com", "goal": {"type": "has_tag", "tag": "vip"}},
        {"name": "x", "from_email": "a@example.com", "goal": {"type": "property", "key": "k\x00"}},
        {"name": "x", "from_email": "a@example.com", "steps": {"kind": "exit"}},
        {"name": "x", "from_email": "a@example.com", "steps": [{"kind": "exit"}] * 101},
        {"name": "x", "from_email": "a@example.com", "reentry_policy": "always"},
    ],
)
def test_malformed_sequences_are_400_problems(client, organization, body):
    response = client.post(SEQUENCES, body, format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert not Sequence.objects.exists()


def test_a_taken_name_is_a_field_error(client, organization):
    draft_sequence(organization, name="Welcome")

    response = create(client, organization)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "name"


def test_activation_lists_what_keeps_a_sequence_from_starting(client, organization):
    empty = draft_sequence(organization)

    response = client.post(f"{SEQUENCES}{empty.pk}/activate")

    assert response.status_code == 400
    assert "The sequence has no steps." in response.json()["detail"]
    assert Sequence.objects.get(pk=empty.pk).status == Sequence.Status.DRAFT


def test_state_changes_that_do_not_apply_are_conflicts(client, organization):
    draft = draft_sequence(organization)
    archived = live_sequence(organization)
    assert client.post(f"{SEQUENCES}{archived.pk}/archive").json()["status"] == "archived"

    assert client.post(f"{SEQUENCES}{draft.pk}/pause").status_code == 409
    assert client.post(f"{SEQUENCES}{archived.pk}/activate").status_code == 409
    assert Enrollment.objects.get(sequence=archived).exit_reason == Enrollment.ExitReason.SEQUENCE_ARCHIVED


def test_an_active_sequence_is_deleted_only_once_paused(client, organization):
    sequence = live_sequence(organization)

    refused = client.delete(f"{SEQUENCES}{sequence.pk}")
    client.post(f"{SEQUENCES}{sequence.pk}/pause")
    deleted = client.delete(f"{SEQUENCES}{sequence.pk}")

    assert refused.status_code == 409 and "pause or archive" in refused.json()["detail"]
    assert deleted.status_code == 204
    assert not Sequence.objects.filter(pk=sequence.pk).exists() and not Enrollment.objects.exists()


def test_a_create_retried_with_the_same_idempotency_key_creates_once(client, organization):
    body = {"name": "Once", "from_email": "a@example.com", "steps": [{"kind": "exit"}]}

    first = client.post(SEQUENCES, body, format="json", HTTP_IDEMPOTENCY_KEY="seq-1")
    again = client.post(SEQUENCES, body, format="json", HTTP_IDEMPOTENCY_KEY="seq-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Sequence.objects.filter(organization=organization).count() == 1


def test_bodies_are_json_only(client, organization):
    response = client.post(SEQUENCES, {"name": "x", "from_email": "a@example.com"})

    assert response.status_code == 415
    assert not Sequence.objects.exists()
