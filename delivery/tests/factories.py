from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import factory
from django.conf import settings
from django.utils import timezone

from conftest import SmtpServer
from delivery import services as delivery_services
from delivery import signing
from delivery.models import DeliveryRoute, Event, Message
from delivery.services import SendReport
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences import services as sequence_services
from sequences.models import Enrollment, Sequence, Step
from sequences.tests.factories import HTML, EmailTemplateFactory, SequenceFactory
from subscribers.models import Contact
from subscribers.tests.factories import ContactFactory

# A human reader's browser (Apple Mail's privacy proxy would announce only "Mozilla/5.0").
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)


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


class DeliveryRouteFactory(factory.django.DjangoModelFactory):
    """A route of an organization (pass organization=...); an SMTP relay unless url says otherwise."""

    class Meta:
        model = DeliveryRoute

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Route {n}")
    kind = DeliveryRoute.Kind.SMTP
    url = "smtp://127.0.0.1:2525?timeout=10"
    priority = factory.Sequence(lambda n: n)


def route_to(server: SmtpServer, organization: Organization, **fields: object) -> DeliveryRoute:
    """A route of `organization` to a test SMTP server."""
    return DeliveryRouteFactory(organization=organization, url=f"{server.url}?timeout=10", **fields)


CORRELATION_HEADER = re.compile(rb"^X-Emailseq-ID: *([^\r\n]+)", re.MULTILINE | re.IGNORECASE)


def arrived_message_ids(server: SmtpServer) -> Counter[int]:
    """How many times each message arrived at the server, by its X-Emailseq-ID."""
    ids: Counter[int] = Counter()
    for mail in server.received:
        found = CORRELATION_HEADER.search(mail.data.split(b"\r\n\r\n", 1)[0])
        assert found is not None, "a message without X-Emailseq-ID"
        ids[signing.unsign("correlation", found.group(1).decode().strip())[0]] += 1
    return ids


def many_messages(organization: Organization, count: int) -> list[Message]:
    """`count` queued messages of one new sequence, written by the engine for as many new contacts."""
    sequence = email_sequence(organization, emails=2)
    contacts = Contact.objects.bulk_create(ContactFactory.build_batch(count, organization=organization))
    sequence_services.enrollments_create(sequence=sequence, contacts=contacts)
    engine.advance_due_enrollments(limit=count)
    return list(Message.objects.filter(sequence=sequence, status=Message.Status.QUEUED).order_by("id"))


def send_in_batches(messages: list[Message], *, size: int = 200) -> SendReport:
    """What send tasks do with these messages' ids, one batch of `size` after the other."""
    report = SendReport()
    for start in range(0, len(messages), size):
        report.add(send(*messages[start : start + size]))
    return report


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


# Sequences and messages written the way the product writes them ------------------------------


def email_sequence(
    organization: Organization,
    *,
    emails: int = 1,
    delay: dt.timedelta = dt.timedelta(days=1),
    subject: str = "{{ contact.first_name }}, email {n}",
    html_body: str = HTML,
    text_body: str = "",
    **sequence_fields: object,
) -> Sequence:
    """An active sequence of `emails` email steps with `delay` between them.

    `{n}` in the subject is replaced by the email's number, so each step's mail can be told apart.
    """
    sequence = SequenceFactory(organization=organization, status=Sequence.Status.DRAFT, **sequence_fields)
    for number in range(1, emails + 1):
        if number > 1:
            sequence_services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=delay)
        template = EmailTemplateFactory(
            organization=organization,
            subject=subject.replace("{n}", str(number)),
            html_body=html_body,
            text_body=text_body,
        )
        sequence_services.step_create(sequence=sequence, kind=Step.Kind.EMAIL, template=template)
    sequence_services.sequence_activate(sequence=sequence)
    return sequence


def write_messages(sequence: Sequence, *contacts: Contact) -> list[Message]:
    """Enroll the contacts and let the engine write their first messages.

    The engine hands the ids to the send tasks after commit; in a test that runs inside a
    transaction (the default) that hand-off never happens, which is exactly a lost dispatch:
    the messages stay queued until something sends them.
    """
    sequence_services.enrollments_create(sequence=sequence, contacts=contacts)
    engine.advance_due_enrollments()
    return list(
        Message.objects.filter(sequence=sequence, contact__in=contacts, status=Message.Status.QUEUED).order_by("id")
    )


def send(*messages: Message) -> SendReport:
    """What a send task does with these messages' ids."""
    return delivery_services.messages_send(message_ids=[message.pk for message in messages])


def email_step(sequence: Sequence, number: int = 1) -> Step:
    return sequence.steps.filter(kind=Step.Kind.EMAIL).order_by("position")[number - 1]


def queued_message(sequence: Sequence, contact: Contact, **fields: object) -> Message:
    """A queued message for the sequence's first email, its enrollment waiting at a later step."""
    step = email_step(sequence)
    enrollment = enrollment_for(
        sequence,
        contact,
        current_step=sequence.steps.filter(position__gt=step.position).order_by("position").first(),
        next_run_at=timezone.now() + dt.timedelta(days=30),
    )
    defaults = {
        "status": Message.Status.QUEUED,
        "sent_at": None,
        "links": [],
        "next_attempt_at": timezone.now() + dt.timedelta(seconds=settings.SEND_DISPATCH_GRACE_SECONDS),
    }
    defaults.update(fields)
    return MessageFactory(enrollment=enrollment, step=step, **defaults)


# The captured mailbox -------------------------------------------------------------------------


def captured_files(organization_id: int | None = None) -> list[Path]:
    root = Path(settings.MAILBOX_DIR)
    pattern = "*/*.eml" if organization_id is None else f"{organization_id}/*.eml"
    return sorted(root.glob(pattern), key=lambda path: path.name)


def captured_mail(organization_id: int | None = None) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(path.read_bytes()) for path in captured_files(organization_id)]  # type: ignore[misc]


def mail_to(messages: list[EmailMessage], address: str) -> EmailMessage:
    [found] = [message for message in messages if message["To"] == address]
    return found
