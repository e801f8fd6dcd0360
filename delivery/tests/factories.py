from __future__ import annotations

import factory
from django.utils import timezone

from delivery.models import Event, Message
from sequences.models import Enrollment


class MessageFactory(factory.django.DjangoModelFactory):
    """A message for an existing enrollment (pass enrollment=...)."""

    class Meta:
        model = Message

    organization = factory.SelfAttribute("enrollment.organization")
    sequence = factory.SelfAttribute("enrollment.sequence")
    contact = factory.SelfAttribute("enrollment.contact")
    status = Message.Status.SENT
    sent_at = factory.LazyFunction(timezone.now)
    links = factory.LazyFunction(lambda: ["https://example.com/one", "https://example.com/two"])


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    organization = factory.SelfAttribute("message.organization")
    contact = factory.SelfAttribute("message.contact")
    type = Event.Type.OPEN
    occurred_at = factory.LazyFunction(timezone.now)


def enrollment_for(sequence, contact, **fields) -> Enrollment:
    return Enrollment.objects.create(
        organization=sequence.organization,
        sequence=sequence,
        contact=contact,
        current_step=fields.pop("current_step", sequence.steps.order_by("position").first()),
        next_run_at=fields.pop("next_run_at", timezone.now()),
        enrolled_at=fields.pop("enrolled_at", timezone.now()),
        **fields,
    )
