"""Helpers shared by the sequences tests: sequences built through the services (as staff build
them), ticks whose on-commit sends really run, and the mail that went out."""

from __future__ import annotations

import datetime as dt
import itertools
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from django.conf import settings

from organizations.models import Organization
from sequences import engine, services
from sequences.models import EmailTemplate, Sequence, Step
from sequences.tests.factories import SequenceFactory

UTC = dt.UTC
_names = itertools.count(1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def draft_sequence(organization: Organization, **fields: Any) -> Sequence:
    """A draft sequence: add steps, then `services.sequence_activate` it."""
    return SequenceFactory(organization=organization, status=Sequence.Status.DRAFT, **fields)


def template(
    organization: Organization,
    *,
    subject: str = "Hello {{ contact.first_name }}",
    html: str | None = None,
    text: str = "",
) -> EmailTemplate:
    return services.template_create(
        organization=organization,
        name=f"Template {next(_names)}",
        subject=subject,
        html_body=html if html is not None else f"<html><body><p>{subject}</p></body></html>",
        text_body=text,
    )


def email_step(sequence: Sequence, subject: str, *, html: str | None = None, position: int | None = None) -> Step:
    """An email step whose template has this subject (and, unless given, a body that repeats it)."""
    return services.step_create(
        sequence=sequence,
        kind=Step.Kind.EMAIL,
        template=template(sequence.organization, subject=subject, html=html),
        position=position,
        name=subject,
    )


def delay_step(sequence: Sequence, delay: dt.timedelta, *, position: int | None = None) -> Step:
    return services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=delay, position=position)


def tick(capture_on_commit: Any) -> engine.TickReport:
    """One scheduler pass, with the sends it hands over after commit really made."""
    with capture_on_commit(execute=True):
        return engine.tick()


def captured_mail(organization: Organization) -> list[EmailMessage]:
    """The messages the capture route stored for the organization, in the order the engine wrote
    them (by message id: file names do not order mail sent while the clock is frozen)."""
    folder = Path(settings.MAILBOX_DIR) / str(organization.pk)
    parser = BytesParser(policy=policy.default)
    mail = [parser.parsebytes(path.read_bytes()) for path in folder.glob("*.eml")]
    return sorted(mail, key=message_id)  # type: ignore[arg-type]


def message_id(mail: EmailMessage) -> int:
    """The id of the Message row a sent email came from (its Message-ID starts with it)."""
    return int(str(mail["Message-ID"]).strip("<").split(".", 1)[0])


def subjects_by_recipient(mail: list[EmailMessage]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for message in mail:
        result.setdefault(str(message["To"]), []).append(str(message["Subject"]))
    return result
