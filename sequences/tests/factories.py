from __future__ import annotations

import datetime as dt

import factory

from organizations.tests.factories import OrganizationFactory
from sequences.models import EmailTemplate, Sequence, Step

HTML = """<html><body>
<p>Hello {{ contact.first_name | default: "there" }},</p>
<p><a href="https://example.com/one">One</a> and <a href="https://example.com/two?a=1&amp;b=2">Two</a></p>
</body></html>"""


class EmailTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EmailTemplate

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Template {n}")
    subject = "Hi {{ contact.first_name }}"
    html_body = HTML


class SequenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sequence

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Sequence {n}")
    status = Sequence.Status.ACTIVE
    from_name = "Sender"
    from_email = "sender@example.com"


class StepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Step

    sequence = factory.SubFactory(SequenceFactory)
    organization = factory.SelfAttribute("sequence.organization")
    position = factory.Sequence(lambda n: n + 1)
    kind = Step.Kind.DELAY
    delay = dt.timedelta(days=1)
