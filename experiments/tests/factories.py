"""Split steps and experiment results, built the way the product builds them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from analytics import services as analytics_services
from delivery.models import Event, Message
from experiments import services
from experiments.models import Assignment, Experiment, Variant
from organizations.models import Organization
from sequences import services as sequence_services
from sequences.models import Enrollment, Sequence, Step
from sequences.tests.factories import HTML, EmailTemplateFactory, SequenceFactory
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

BASE_SUBJECT = "Base subject for {{ contact.first_name }}"


def fixed_settings(**fields: Any) -> services.ExperimentSettings:
    """A fixed-sample click test of 1,000 per variant unless `fields` say otherwise."""
    fields.setdefault("sample_size_per_variant", 1000)
    return services.ExperimentSettings(**fields)


def split_sequence(
    organization: Organization,
    variants: list[services.VariantSpec],
    settings: services.ExperimentSettings | None = None,
    *,
    activate: bool = True,
) -> Sequence:
    """A sequence whose first step is a split test and whose second waits a week (so the
    enrollments that went through the split wait there)."""
    sequence = SequenceFactory(organization=organization, status=Sequence.Status.DRAFT, from_name="Base Sender")
    template = EmailTemplateFactory(organization=organization, subject=BASE_SUBJECT, html_body=HTML)
    step = sequence_services.step_create(sequence=sequence, kind=Step.Kind.SPLIT, template=template)
    sequence_services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(days=7))
    services.experiment_save(step=step, settings=settings or fixed_settings(), variants=variants)
    if activate:
        sequence_services.sequence_activate(sequence=sequence)
    return sequence


def split_step(sequence: Sequence) -> Step:
    return sequence.steps.get(kind=Step.Kind.SPLIT)


def experiment_of(sequence: Sequence) -> Experiment:
    return Experiment.objects.get(step__sequence=sequence)


def variant(sequence: Sequence, name: str) -> Variant:
    return Variant.objects.get(experiment__step__sequence=sequence, name=name)


def enroll(sequence: Sequence, count: int) -> list[Contact]:
    contacts = Contact.objects.bulk_create(ContactFactory.build_batch(count, organization=sequence.organization))
    sequence_services.enrollments_create(sequence=sequence, contacts=contacts)
    return contacts


def record_results(
    variant: Variant,
    *,
    delivered: int,
    clicked: int = 0,
    unsubscribed: int = 0,
    complained: int = 0,
    assigned: int | None = None,
) -> None:
    """`assigned` enrollments of the variant (default: as many as delivered), of which
    `delivered` got the mail, `clicked` clicked it (a person), `unsubscribed` and `complained`;
    written as rows with their analytics facts, then folded into the rollups."""
    assigned = delivered if assigned is None else assigned
    step = variant.experiment.step
    sequence = step.sequence
    organization_id = variant.organization_id
    now = timezone.now()
    contacts = Contact.objects.bulk_create(ContactFactory.build_batch(assigned, organization_id=organization_id))
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(
            organization_id=organization_id,
            sequence=sequence,
            contact=contact,
            status=Enrollment.Status.COMPLETED,
            enrolled_at=now,
            finished_at=now,
        )
        for contact in contacts
    )
    assignments = Assignment.objects.bulk_create(
        Assignment(
            organization_id=organization_id,
            experiment=variant.experiment,
            variant=variant,
            enrollment=enrollment,
            contact_id=enrollment.contact_id,
            assigned_at=now,
        )
        for enrollment in enrollments
    )
    messages = Message.objects.bulk_create(
        Message(
            organization_id=organization_id,
            enrollment=enrollment,
            step=step,
            sequence=sequence,
            contact_id=enrollment.contact_id,
            variant=variant,
            status=Message.Status.SENT,
            sent_at=now,
        )
        for enrollment in enrollments[:delivered]
    )
    events = []
    for kind, count in (
        (Event.Type.CLICK, clicked),
        (Event.Type.UNSUBSCRIBE, unsubscribed),
        (Event.Type.COMPLAINT, complained),
    ):
        events += [
            Event(
                organization_id=organization_id,
                message=message,
                contact_id=message.contact_id,
                type=kind,
                occurred_at=now,
                url="https://example.com/one" if kind == Event.Type.CLICK else "",
            )
            for message in messages[:count]
        ]
    events = Event.objects.bulk_create(events)
    analytics_services.facts_add(
        organization_id=organization_id, kind="assigned", object_ids=[a.pk for a in assignments]
    )
    analytics_services.facts_add(organization_id=organization_id, kind="message", object_ids=[m.pk for m in messages])
    analytics_services.facts_add(organization_id=organization_id, kind="event", object_ids=[e.pk for e in events])
    analytics_services.rollups_flush()


def two_variants(**first: Any) -> list[services.VariantSpec]:
    return [services.VariantSpec(name="A", **first), services.VariantSpec(name="B", subject="Subject B")]
