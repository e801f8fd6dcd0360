"""The experiment of a split step over the API: set up, read, change, delete, results, and
the sample-size calculator. Other organizations' steps and templates are 404."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client, role_client
from experiments.models import Experiment, Variant
from experiments.services import VariantSpec
from experiments.tests.factories import (
    enroll,
    experiment_of,
    record_results,
    split_sequence,
    split_step,
    variant,
)
from organizations.models import ApiKey, Membership
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences.models import Sequence, Step
from sequences.tests.factories import EmailTemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sequence() -> Sequence:
    return split_sequence(OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="B")])


def url(sequence: Sequence, step: Step | None = None, suffix: str = "") -> str:
    step = step or split_step(sequence)
    return f"/api/v1/email-sequences/{sequence.pk}/steps/{step.pk}/experiment{suffix}"


def body(**fields) -> dict:
    data = {
        "name": "Subject lines",
        "metric": "click",
        "test": "fixed",
        "baseline_rate": 0.05,
        "minimum_detectable_effect": 0.02,
        "variants": [
            {"name": "Plain", "weight": 1},
            {"name": "Emoji", "weight": 1, "subject": "🎉 {{ contact.first_name }}"},
        ],
    }
    data.update(fields)
    return data


def errors_of(response) -> dict[str, str]:
    return {error["field"]: error["message"] for error in response.json()["errors"]}


def test_an_experiment_is_created_read_changed_and_deleted(sequence: Sequence) -> None:
    client = role_client(sequence.organization)
    template = EmailTemplateFactory(organization=sequence.organization)

    created = client.put(url(sequence), body(), format="json")

    assert created.status_code == 200, created.content
    data = created.json()
    assert [variant["name"] for variant in data["variants"]] == ["Plain", "Emoji"]
    assert data["sample_size_per_variant"] is None and data["status"] == "running"
    assert client.get(url(sequence)).json() == data

    plain, emoji = data["variants"]
    changed = client.put(
        url(sequence),
        body(
            test="sequential",
            variants=[
                {"id": emoji["id"], "name": "Emoji", "subject": "🎉 {{ contact.first_name }}", "weight": 3},
                {"name": "Other template", "template_id": template.pk},
                {"name": "Nobody", "is_holdout": True},
            ],
        ),
        format="json",
    )

    assert changed.status_code == 200, changed.content
    variants = changed.json()["variants"]
    assert [(v["name"], v["weight"], v["template_id"]) for v in variants] == [
        ("Emoji", 3, None),
        ("Other template", 1, template.pk),
        ("Nobody", 1, None),
    ]
    assert variants[0]["id"] == emoji["id"]
    assert not Variant.objects.filter(pk=plain["id"]).exists()

    assert client.delete(url(sequence)).status_code == 204
    assert not Experiment.objects.filter(step__sequence=sequence).exists()
    assert client.get(url(sequence)).status_code == 404


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"variants": [{"name": "Only"}]}, "variants", "at least two arms"),
        ({"variants": [{"name": "A"}, {"name": "H", "is_holdout": True}]}, "variants", "no opens or clicks"),
        (
            {
                "variants": [
                    {"name": "A"},
                    {"name": "B"},
                    {"name": "H1", "is_holdout": True},
                    {"name": "H2", "is_holdout": True},
                ]
            },
            "variants",
            "At most one holdout",
        ),
        ({"variants": [{"name": "A", "weight": 0}, {"name": "B"}]}, "variants.0.weight", ""),
        ({"variants": [{"name": "A"}, {"name": "A"}]}, "variants.1.name", "different"),
        ({"variants": [{"name": "A"}, {"name": "H", "is_holdout": True, "subject": "x"}]}, "variants.1", "no email"),
        ({"variants": [{"name": "A"}, {"name": "B", "subject": "{{ broken"}]}, "variants.1.subject", ""),
        ({"alpha": 0.7}, "alpha", "below 0.5"),
        (
            {"baseline_rate": None, "minimum_detectable_effect": None},
            "sample_size_per_variant",
            "needs its sample size",
        ),
        ({"minimum_detectable_effect": None}, "minimum_detectable_effect", "together"),
        ({"metric": "revenue"}, "metric", ""),
    ],
)
def test_bad_experiments_are_refused_with_field_errors(sequence: Sequence, changes: dict, field: str, message: str):
    response = role_client(sequence.organization).put(url(sequence), body(**changes), format="json")

    assert response.status_code == 400, response.content
    errors = errors_of(response)
    assert field in errors, errors
    assert message in errors[field]


def test_a_holdout_with_one_variant_is_fine_when_the_metric_is_the_goal(sequence: Sequence) -> None:
    variants = [{"name": "Email"}, {"name": "Nothing", "is_holdout": True}]

    response = role_client(sequence.organization).put(
        url(sequence), body(metric="goal", variants=variants), format="json"
    )

    assert response.status_code == 200, response.content


def test_only_a_split_step_has_an_experiment(sequence: Sequence) -> None:
    delay = sequence.steps.get(kind=Step.Kind.DELAY)

    response = role_client(sequence.organization).put(url(sequence, delay), body(), format="json")

    assert response.status_code == 400
    assert "Only a split step" in response.json()["detail"]


def test_variants_cannot_change_once_contacts_are_assigned(sequence: Sequence) -> None:
    enroll(sequence, 5)
    engine.advance_due_enrollments()
    client = role_client(sequence.organization)
    current = client.get(url(sequence)).json()
    a, b = current["variants"]

    reweighted = client.put(url(sequence), body(variants=[{**a, "weight": 5}, b]), format="json")
    added = client.put(url(sequence), body(variants=[a, b, {"name": "C", "subject": "C"}]), format="json")
    renamed = client.put(
        url(sequence), body(variants=[{**a, "name": "Control"}, {**b, "is_active": False}]), format="json"
    )

    assert reweighted.status_code == 409 and "weight" in reweighted.json()["detail"]
    assert added.status_code == 409
    assert renamed.status_code == 200, renamed.content
    assert variant(sequence, "B").stopped_reason == "Stopped by a person."


def test_another_organizations_step_and_template_are_not_found(sequence: Sequence) -> None:
    ours = split_sequence(OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="B")])
    client = key_client(ours.organization, ApiKey.Scope.WRITE)
    their_template = EmailTemplateFactory(organization=sequence.organization)
    before = list(Variant.objects.filter(experiment__step__sequence=sequence).values())

    assert client.get(url(sequence)).status_code == 404
    assert client.get(url(sequence, suffix="/results")).status_code == 404
    assert client.put(url(sequence), body(), format="json").status_code == 404
    assert client.delete(url(sequence)).status_code == 404
    # Their step under our sequence's id is no better.
    assert (
        client.get(f"/api/v1/email-sequences/{ours.pk}/steps/{split_step(sequence).pk}/experiment").status_code == 404
    )
    with_their_template = body(variants=[{"name": "A"}, {"name": "B", "template_id": their_template.pk}])
    assert client.put(url(ours), with_their_template, format="json").status_code == 404
    assert list(Variant.objects.filter(experiment__step__sequence=sequence).values()) == before


def test_viewers_read_and_marketers_write(sequence: Sequence) -> None:
    viewer = role_client(sequence.organization, Membership.Role.VIEWER)

    assert viewer.get(url(sequence)).status_code == 200
    assert viewer.get(url(sequence, suffix="/results")).status_code == 200
    assert viewer.put(url(sequence), body(), format="json").status_code == 403
    assert viewer.delete(url(sequence)).status_code == 403
    assert key_client(sequence.organization, ApiKey.Scope.READ).delete(url(sequence)).status_code == 403
    assert experiment_of(sequence).name == ""


def test_results_show_counts_rates_and_the_test(sequence: Sequence) -> None:
    Experiment.objects.filter(step__sequence=sequence).update(sample_size_per_variant=400)
    record_results(variant(sequence, "A"), delivered=500, clicked=25, unsubscribed=1)
    record_results(variant(sequence, "B"), delivered=500, clicked=60)

    response = role_client(sequence.organization, Membership.Role.VIEWER).get(url(sequence, suffix="/results"))

    assert response.status_code == 200, response.content
    results = response.json()
    assert results["test_used"] == "z" and results["sample_reached"] is True
    assert results["leading_id"] == variant(sequence, "B").pk
    a, b = results["variants"]
    assert a["is_control"] and not b["is_control"]
    assert a["counts"]["delivered"] == 500 and a["counts"]["unsubscribed"] == 1
    assert (a["rate"], b["rate"]) == (0.05, 0.12)
    assert b["difference"] == pytest.approx(0.07)
    assert b["p_value"] < 0.001 and b["significant"]
    assert b["probability_to_beat"] > 0.99 and a["probability_to_beat"] < 0.01
    assert results["srm"]["mismatch"] is False
    assert results["status"] == "running"  # the decision is the periodic evaluation's


def test_the_calculator_gives_the_sample_per_variant() -> None:
    client = role_client(OrganizationFactory(), Membership.Role.VIEWER)

    response = client.get("/api/v1/experiments/sample-size/?baseline_rate=0.05&minimum_detectable_effect=0.01")

    assert response.status_code == 200, response.content
    # The textbook figure for 5% -> 6% at alpha 0.05, power 0.8 (two-sided): about 8,150 per arm.
    assert 8000 <= response.json()["sample_size_per_variant"] <= 8300
    stricter = client.get(
        "/api/v1/experiments/sample-size/?baseline_rate=0.05&minimum_detectable_effect=0.01&alpha=0.01&power=0.9"
    ).json()
    assert stricter["sample_size_per_variant"] > response.json()["sample_size_per_variant"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "baseline_rate"),
        ("baseline_rate=0.05", "minimum_detectable_effect"),
        ("baseline_rate=1.5&minimum_detectable_effect=0.01", "baseline_rate"),
        ("baseline_rate=0.05&minimum_detectable_effect=0.99", "minimum_detectable_effect"),
        ("baseline_rate=0.05&minimum_detectable_effect=0.01&power=1", "power"),
        ("baseline_rate=nan&minimum_detectable_effect=0.01", "baseline_rate"),
    ],
)
def test_the_calculator_refuses_bad_input(query: str, field: str) -> None:
    response = role_client(OrganizationFactory()).get(f"/api/v1/experiments/sample-size/?{query}")

    assert response.status_code == 400, response.content
    assert field in errors_of(response)


def test_the_split_step_is_accepted_by_the_sequence_api() -> None:
    organization = OrganizationFactory()
    template = EmailTemplateFactory(organization=organization)
    client = role_client(organization)

    response = client.post(
        "/api/v1/email-sequences/",
        {
            "name": "With a test",
            "from_email": "news@example.com",
            "steps": [{"kind": "split", "template_id": template.pk}],
        },
        format="json",
    )
    without_template = client.post(
        "/api/v1/email-sequences/",
        {"name": "Broken", "from_email": "news@example.com", "steps": [{"kind": "split"}]},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["steps"][0]["kind"] == "split"
    assert without_template.status_code == 400
    assert "steps.0.template_id" in errors_of(without_template)
