"""A winner is declared only when the chosen test says so; guardrails stop harmful variants."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from analytics import live
from experiments import selectors, services
from experiments.models import Experiment
from experiments.services import VariantSpec
from experiments.tasks import experiments_evaluate
from experiments.tests.factories import experiment_of, fixed_settings, record_results, split_sequence, variant
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


def evaluate(sequence, django_capture_on_commit_callbacks) -> Experiment:
    with django_capture_on_commit_callbacks(execute=True):
        services.experiment_evaluate(experiment_id=experiment_of(sequence).pk)
    return experiment_of(sequence)


def ab(settings: services.ExperimentSettings):
    return split_sequence(
        OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="Better subject")], settings
    )


def test_the_fixed_test_waits_for_the_planned_sample_even_when_p_is_tiny(django_capture_on_commit_callbacks) -> None:
    sequence = ab(fixed_settings(sample_size_per_variant=2000))
    record_results(variant(sequence, "A"), delivered=600, clicked=30)
    record_results(variant(sequence, "B"), delivered=600, clicked=120)

    experiment = evaluate(sequence, django_capture_on_commit_callbacks)

    results = selectors.experiment_results(experiment=experiment)
    assert results["variants"][1]["p_value"] < 1e-10
    assert experiment.status == Experiment.Status.RUNNING and experiment.winner is None
    assert results["verdict"].startswith("Collecting the planned sample")
    assert [row["progress"] for row in results["variants"]] == [0.3, 0.3]


def test_the_fixed_test_decides_once_every_arm_has_its_sample(django_capture_on_commit_callbacks) -> None:
    sequence = ab(fixed_settings(sample_size_per_variant=500))
    record_results(variant(sequence, "A"), delivered=600, clicked=30)
    record_results(variant(sequence, "B"), delivered=600, clicked=120)

    experiment = evaluate(sequence, django_capture_on_commit_callbacks)

    assert experiment.status == Experiment.Status.DECIDED
    assert experiment.winner == variant(sequence, "B")
    assert "B wins" in experiment.decision


def test_the_fixed_test_is_read_once_at_its_sample_and_stops_without_a_winner(
    django_capture_on_commit_callbacks,
) -> None:
    """Read again and again as data keeps coming, a fixed-horizon test would find a winner far
    more often than alpha: without a significant difference at the planned sample, it stops."""
    sequence = ab(fixed_settings(sample_size_per_variant=500))
    record_results(variant(sequence, "A"), delivered=600, clicked=30)
    record_results(variant(sequence, "B"), delivered=600, clicked=36)

    experiment = evaluate(sequence, django_capture_on_commit_callbacks)

    assert experiment.status == Experiment.Status.STOPPED and experiment.winner is None
    assert experiment.decision.startswith("No winner: No significant difference.")
    # Stopped experiments are never evaluated again, so a later lucky streak declares nothing.
    record_results(variant(sequence, "B"), delivered=600, clicked=300)
    assert evaluate(sequence, django_capture_on_commit_callbacks).status == Experiment.Status.STOPPED


def test_the_sequential_test_decides_as_soon_as_its_p_value_is_below_alpha(django_capture_on_commit_callbacks) -> None:
    sequence = ab(services.ExperimentSettings(test=Experiment.Test.SEQUENTIAL))
    record_results(variant(sequence, "A"), delivered=400, clicked=20)
    record_results(variant(sequence, "B"), delivered=400, clicked=24)

    assert evaluate(sequence, django_capture_on_commit_callbacks).status == Experiment.Status.RUNNING

    record_results(variant(sequence, "A"), delivered=400, clicked=20)
    record_results(variant(sequence, "B"), delivered=400, clicked=100)
    experiment = evaluate(sequence, django_capture_on_commit_callbacks)

    assert experiment.status == Experiment.Status.DECIDED
    assert experiment.winner == variant(sequence, "B")
    assert "msprt" in experiment.decision


def test_with_more_arms_the_winner_must_beat_the_control_after_holm(django_capture_on_commit_callbacks) -> None:
    sequence = split_sequence(
        OrganizationFactory(),
        [VariantSpec(name="A"), VariantSpec(name="B", subject="B"), VariantSpec(name="C", subject="C")],
        fixed_settings(sample_size_per_variant=500),
    )
    record_results(variant(sequence, "A"), delivered=800, clicked=40)
    record_results(variant(sequence, "B"), delivered=800, clicked=52)
    record_results(variant(sequence, "C"), delivered=800, clicked=90)

    experiment = evaluate(sequence, django_capture_on_commit_callbacks)

    results = selectors.experiment_results(experiment=experiment)
    assert results["test_used"] == "chi_squared"
    by_name = {row["name"]: row for row in results["variants"]}
    assert by_name["B"]["p_adjusted"] >= by_name["B"]["p_value"]
    assert not by_name["B"]["significant"] and by_name["C"]["significant"]
    assert experiment.winner == variant(sequence, "C")
    assert by_name["C"]["probability_to_beat"] > 0.95
    assert by_name["C"]["expected_loss"] < by_name["A"]["expected_loss"]


def test_a_guardrail_stops_a_variant_with_more_unsubscribes_and_says_so(django_capture_on_commit_callbacks) -> None:
    sequence = split_sequence(
        OrganizationFactory(),
        [VariantSpec(name="A"), VariantSpec(name="B", subject="B"), VariantSpec(name="C", subject="C")],
        fixed_settings(sample_size_per_variant=5000),
    )
    record_results(variant(sequence, "A"), delivered=1000, clicked=50, unsubscribed=3)
    record_results(variant(sequence, "B"), delivered=1000, clicked=50, unsubscribed=25)
    record_results(variant(sequence, "C"), delivered=1000, clicked=50, unsubscribed=5, complained=1)

    async def evaluate_while_listening() -> tuple[Experiment, dict]:
        # One event loop for the whole conversation: the Redis pub/sub layer knows a channel
        # only in the loop that made it.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(live.organization_group(sequence.organization_id, "notifications"), channel)
        evaluated = await sync_to_async(evaluate)(sequence, django_capture_on_commit_callbacks)
        return evaluated, await asyncio.wait_for(layer.receive(channel), timeout=5)

    experiment, notification = async_to_sync(evaluate_while_listening)()

    stopped = variant(sequence, "B")
    assert not stopped.is_active
    assert stopped.stopped_reason.startswith("Guardrail: unsubscribe rate 2.50% against 0.30%")
    assert variant(sequence, "C").is_active
    assert experiment.status == Experiment.Status.RUNNING
    assert '"kind":"experiment_guardrail"' in notification["frame"]
    assert f'"variant_id":{stopped.pk}' in notification["frame"]


def test_a_guardrail_stops_a_variant_with_more_complaints(django_capture_on_commit_callbacks) -> None:
    sequence = ab(fixed_settings())
    record_results(variant(sequence, "A"), delivered=2000, complained=0)
    record_results(variant(sequence, "B"), delivered=2000, complained=25)

    evaluate(sequence, django_capture_on_commit_callbacks)

    assert "complaint rate" in variant(sequence, "B").stopped_reason


def test_guardrails_can_be_turned_off(django_capture_on_commit_callbacks) -> None:
    sequence = ab(fixed_settings(guardrails=False))
    record_results(variant(sequence, "A"), delivered=2000, complained=0)
    record_results(variant(sequence, "B"), delivered=2000, complained=25)

    evaluate(sequence, django_capture_on_commit_callbacks)

    assert variant(sequence, "B").is_active


def test_the_periodic_task_evaluates_every_running_experiment(django_capture_on_commit_callbacks) -> None:
    decided = ab(fixed_settings(sample_size_per_variant=100))
    record_results(variant(decided, "A"), delivered=200, clicked=5)
    record_results(variant(decided, "B"), delivered=200, clicked=60)
    waiting = ab(fixed_settings(sample_size_per_variant=100))

    with django_capture_on_commit_callbacks(execute=True):
        assert experiments_evaluate() == 2

    assert experiment_of(decided).status == Experiment.Status.DECIDED
    assert experiment_of(waiting).status == Experiment.Status.RUNNING


def test_results_warn_of_a_sample_ratio_mismatch() -> None:
    sequence = ab(fixed_settings())
    record_results(variant(sequence, "A"), delivered=1000)
    record_results(variant(sequence, "B"), delivered=780)

    results = selectors.experiment_results(experiment=experiment_of(sequence))

    assert results["srm"]["mismatch"] is True
    assert results["srm"]["warning"].startswith("Sample ratio mismatch")


def test_results_show_no_mismatch_when_assignment_follows_the_weights() -> None:
    sequence = ab(fixed_settings())
    record_results(variant(sequence, "A"), delivered=1000)
    record_results(variant(sequence, "B"), delivered=1030)

    results = selectors.experiment_results(experiment=experiment_of(sequence))

    assert results["srm"]["mismatch"] is False and results["srm"]["warning"] == ""


def test_guardrails_compare_with_the_first_email_when_the_goal_is_measured_against_a_holdout(
    django_capture_on_commit_callbacks,
) -> None:
    sequence = split_sequence(
        OrganizationFactory(),
        [VariantSpec(name="A"), VariantSpec(name="B", subject="B"), VariantSpec(name="None", is_holdout=True)],
        fixed_settings(metric=Experiment.Metric.GOAL),
    )
    record_results(variant(sequence, "A"), delivered=1000, unsubscribed=2)
    record_results(variant(sequence, "B"), delivered=1000, unsubscribed=20)
    record_results(variant(sequence, "None"), delivered=0, assigned=1000)

    experiment = evaluate(sequence, django_capture_on_commit_callbacks)

    assert not variant(sequence, "B").is_active
    assert variant(sequence, "A").is_active and variant(sequence, "None").is_active
    results = selectors.experiment_results(experiment=experiment)
    assert [row["is_control"] for row in results["variants"]] == [False, False, True]
