"""Thompson sampling sends more contacts to the leading subject line, never fewer than the
exploration floor to the others; a holdout keeps its weight's share."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from experiments import services
from experiments.models import Assignment, Experiment
from experiments.services import VariantSpec
from experiments.tests.factories import enroll, experiment_of, record_results, split_sequence, variant
from organizations.tests.factories import OrganizationFactory
from sequences import engine

pytestmark = pytest.mark.django_db

THOMPSON = services.ExperimentSettings(
    test=Experiment.Test.SEQUENTIAL, allocation=Experiment.Allocation.THOMPSON, min_exploration_share=0.3
)


def test_the_losing_subject_keeps_the_exploration_floor() -> None:
    sequence = split_sequence(
        OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="Weak subject")], THOMPSON
    )
    record_results(variant(sequence, "A"), delivered=1000, clicked=300)
    record_results(variant(sequence, "B"), delivered=1000, clicked=10)
    Assignment.objects.all().delete()  # only the new assignments below are counted

    experiment = experiment_of(sequence)
    shares = services.allocation_shares(experiment=experiment, variants=list(experiment.variants.order_by("id")))
    assert shares == pytest.approx([0.85, 0.15], abs=1e-9)  # B is hopeless: exactly its floor, 0.3 / 2

    enroll(sequence, 1500)
    engine.advance_due_enrollments(limit=1500)

    counts = Counter(Assignment.objects.values_list("variant__name", flat=True))
    assert abs(counts["B"] - 1500 * 0.15) <= 4.5 * math.sqrt(1500 * 0.15 * 0.85)


def test_the_holdout_keeps_its_weight_share_under_thompson_sampling() -> None:
    sequence = split_sequence(
        OrganizationFactory(),
        [
            VariantSpec(name="A", weight=2),
            VariantSpec(name="B", weight=2, subject="Weak subject"),
            VariantSpec(name="Holdout", weight=1, is_holdout=True),
        ],
        THOMPSON,
    )
    record_results(variant(sequence, "A"), delivered=1000, clicked=300)
    record_results(variant(sequence, "B"), delivered=1000, clicked=10)

    experiment = experiment_of(sequence)
    shares = services.allocation_shares(experiment=experiment, variants=list(experiment.variants.order_by("id")))

    assert shares == pytest.approx([0.8 * 0.85, 0.8 * 0.15, 0.2], abs=1e-9)


def test_without_data_thompson_sampling_splits_evenly() -> None:
    sequence = split_sequence(
        OrganizationFactory(), [VariantSpec(name="A"), VariantSpec(name="B", subject="Other")], THOMPSON
    )
    experiment = experiment_of(sequence)

    shares = services.allocation_shares(experiment=experiment, variants=list(experiment.variants.order_by("id")))

    assert shares == pytest.approx([0.5, 0.5], abs=0.03)
