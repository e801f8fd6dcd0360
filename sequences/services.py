"""Writes on templates, sequences, steps and enrollments.

Editing a live sequence (documented for marketers in README.md):
- Changing a template or an email step's content: every message not yet sent uses the new
  content, including messages already queued (they are rendered when sent). Sent mail is
  never touched.
- Adding a step: contacts who have not yet reached its position go through it; contacts past it
  do not.
- Changing a delay or wait-until step: contacts already waiting keep the time computed when
  they arrived; later arrivals use the new value.
- Deleting a step: contacts waiting on it move on to the step that followed it; branches that
  pointed to it fall back to the next step. Its sent messages stay in the history.
- Moving steps: each contact continues from the step it is on, in the new order.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from delivery.models import Message
from sequences.conditions import property_matches
from sequences.models import EmailTemplate, Enrollment, Sequence, Step
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression

if TYPE_CHECKING:
    from organizations.models import Organization

# Shifting positions goes through this offset so no two steps share a position mid-update.
POSITION_SHIFT = 1_000_000


# Templates -----------------------------------------------------------------------------------


def template_create(
    *, organization: Organization, name: str, subject: str, html_body: str, text_body: str = ""
) -> EmailTemplate:
    template = EmailTemplate(
        organization=organization, name=name, subject=subject, html_body=html_body, text_body=text_body
    )
    template.full_clean()
    template.save()
    return template


def template_update(*, template: EmailTemplate, **fields: Any) -> EmailTemplate:
    for name in ("name", "subject", "html_body", "text_body"):
        if name in fields:
            setattr(template, name, fields.pop(name))
    if fields:
        raise TypeError(f"unknown template fields: {', '.join(fields)}")
    template.full_clean()
    template.save()
    return template


# Sequences -----------------------------------------------------------------------------------


def sequence_create(*, organization: Organization, name: str, from_email: str, **fields: Any) -> Sequence:
    sequence = Sequence(organization=organization, name=name, from_email=from_email, **fields)
    sequence.full_clean()
    sequence.save()
    return sequence


def _activation_problems(sequence: Sequence) -> list[str]:
    problems = []
    steps = list(sequence.steps.select_related("template"))
    if not steps:
        problems.append("The sequence has no steps.")
    for step in steps:
        if step.kind == Step.Kind.EMAIL:
            try:
                step.template.full_clean()
            except ValidationError as error:
                problems.append(f"Step {step.position}: template {step.template} is invalid: {error.messages}")
    return problems


@transaction.atomic
def sequence_activate(*, sequence: Sequence) -> Sequence:
    """Start a draft sequence, or resume a paused one."""
    locked = Sequence.objects.select_for_update(no_key=True).get(pk=sequence.pk)
    if locked.status == Sequence.Status.ACTIVE:
        sequence.status = locked.status
        return sequence
    if locked.status == Sequence.Status.ARCHIVED:
        raise ValidationError("An archived sequence cannot be activated again.")
    problems = _activation_problems(locked)
    if problems:
        raise ValidationError(problems)
    was_paused = locked.status == Sequence.Status.PAUSED
    _set_status(sequence, Sequence.Status.ACTIVE)
    if was_paused:
        now = timezone.now()
        # Parked contacts were due while paused: they continue now, from the step they were on.
        Enrollment.objects.filter(sequence=sequence, status=Enrollment.Status.ACTIVE, next_run_at__isnull=True).update(
            next_run_at=now
        )
        # Held messages were written before the pause; sending them now is no resend.
        Message.objects.filter(sequence=sequence, status=Message.Status.QUEUED, next_attempt_at__isnull=True).update(
            next_attempt_at=now
        )
    return sequence


def _set_status(sequence: Sequence, status: str) -> None:
    sequence.status = status
    sequence.updated_at = timezone.now()
    Sequence.objects.filter(pk=sequence.pk).update(status=status, updated_at=sequence.updated_at)


sequence_resume = sequence_activate


@transaction.atomic
def sequence_pause(*, sequence: Sequence) -> Sequence:
    """Stop all sending at once; contacts keep their place.

    Queued messages are held (their send tasks find the sequence paused and leave them);
    due enrollments are parked by the engine when it next meets them.
    """
    locked = Sequence.objects.select_for_update(no_key=True).get(pk=sequence.pk)
    if locked.status != Sequence.Status.ACTIVE:
        raise ValidationError(f"Only an active sequence can be paused; this one is {locked.status}.")
    _set_status(sequence, Sequence.Status.PAUSED)
    Message.objects.filter(sequence=sequence, status=Message.Status.QUEUED).update(next_attempt_at=None)
    return sequence


@transaction.atomic
def sequence_archive(*, sequence: Sequence) -> Sequence:
    Sequence.objects.select_for_update(no_key=True).get(pk=sequence.pk)
    _set_status(sequence, Sequence.Status.ARCHIVED)
    active = Enrollment.objects.filter(sequence=sequence, status=Enrollment.Status.ACTIVE)
    _end_enrollments(active, status=Enrollment.Status.EXITED, reason=Enrollment.ExitReason.SEQUENCE_ARCHIVED)
    # Messages held by an earlier pause may belong to enrollments that had already completed.
    Message.objects.filter(sequence=sequence, status=Message.Status.QUEUED).update(
        status=Message.Status.CANCELLED, response="sequence archived", next_attempt_at=None
    )
    return sequence


# Steps ---------------------------------------------------------------------------------------


@transaction.atomic
def step_create(*, sequence: Sequence, kind: str, position: int | None = None, **fields: Any) -> Step:
    """Add a step at `position` (default: the end), moving later steps down by one."""
    Sequence.objects.select_for_update(no_key=True).filter(pk=sequence.pk).first()
    last = sequence.steps.aggregate(last=Max("position"))["last"]
    end = 1 if last is None else last + 1
    if position is None or position >= end:
        position = end
    else:
        position = max(1, position)
        later = sequence.steps.filter(position__gte=position)
        later.update(position=F("position") + POSITION_SHIFT)
        sequence.steps.filter(position__gte=POSITION_SHIFT).update(position=F("position") - POSITION_SHIFT + 1)
    step = Step(organization_id=sequence.organization_id, sequence=sequence, kind=kind, position=position, **fields)
    step.full_clean()
    step.save()
    return step


def step_update(*, step: Step, **fields: Any) -> Step:
    for name, value in fields.items():
        if name in ("id", "sequence", "sequence_id", "organization", "organization_id", "position"):
            raise TypeError(f"{name} cannot be changed with step_update")
        setattr(step, name, value)
    step.full_clean()
    step.save()
    return step


def step_following(step: Step) -> Step | None:
    return Step.objects.filter(sequence_id=step.sequence_id, position__gt=step.position).order_by("position").first()


@transaction.atomic
def step_delete(*, step: Step) -> None:
    """Remove a step; contacts waiting on it move on to the step that followed it."""
    following = step_following(step)
    Enrollment.objects.filter(current_step=step, status=Enrollment.Status.ACTIVE).update(current_step=following)
    # Finished enrollments only remember it for history; that memory is not worth keeping a
    # deleted step around.
    Enrollment.objects.filter(current_step=step).exclude(status=Enrollment.Status.ACTIVE).update(current_step=None)
    step.delete()


# Enrollments ---------------------------------------------------------------------------------


@dataclass
class EnrollmentReport:
    enrolled: list[Enrollment] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def enrolled_count(self) -> int:
        return len(self.enrolled)


class SkipReason:
    NOT_MAILABLE = "not_mailable"
    SUPPRESSED = "suppressed"
    ALREADY_ENROLLED = "already_enrolled"
    ALREADY_COMPLETED = "already_went_through"
    OTHER_ORGANIZATION = "other_organization"


def _sequence_refusal(sequence: Sequence) -> str | None:
    if sequence.status not in (Sequence.Status.ACTIVE, Sequence.Status.PAUSED):
        return f"Contacts can only be enrolled into an active or paused sequence, not a {sequence.status} one."
    if not sequence.steps.exists():
        return "The sequence has no steps."
    return None


def _eligible(sequence: Sequence, contacts: Iterable[Contact], report: EnrollmentReport) -> list[Contact]:
    """The contacts that may be enrolled now; the others are counted in report.skipped by reason."""
    candidates: dict[int, Contact] = {}
    for contact in contacts:
        if contact.organization_id != sequence.organization_id:
            report.skipped[SkipReason.OTHER_ORGANIZATION] += 1
        elif contact.status != Contact.Status.ACTIVE:
            report.skipped[SkipReason.NOT_MAILABLE] += 1
        else:
            candidates[contact.pk] = contact
    if not candidates:
        return []
    suppressed = set(
        Suppression.objects.filter(
            organization_id=sequence.organization_id,
            email_hash__in=[email_hash(contact.email) for contact in candidates.values()],
        ).values_list("email_hash", flat=True)
    )
    previous = Enrollment.objects.filter(sequence=sequence, contact_id__in=list(candidates))
    if sequence.reentry_policy == Sequence.ReentryPolicy.AFTER_EXIT:
        previous = previous.filter(status=Enrollment.Status.ACTIVE)
    # A contact with an active enrollment counts as "already enrolled" whatever else it has.
    already: dict[int, bool] = {}
    for contact_id, status in previous.values_list("contact_id", "status"):
        already[contact_id] = already.get(contact_id, False) or status == Enrollment.Status.ACTIVE
    eligible = []
    for contact_id, contact in candidates.items():
        if email_hash(contact.email) in suppressed:
            report.skipped[SkipReason.SUPPRESSED] += 1
        elif contact_id in already:
            report.skipped[SkipReason.ALREADY_ENROLLED if already[contact_id] else SkipReason.ALREADY_COMPLETED] += 1
        else:
            eligible.append(contact)
    return eligible


def enrollment_refusal(*, sequence: Sequence, contact: Contact) -> str | None:
    """Why the contact cannot be enrolled into the sequence now, or None when it can."""
    refusal = _sequence_refusal(sequence)
    if refusal:
        return refusal
    report = EnrollmentReport()
    if _eligible(sequence, [contact], report):
        return None
    reason = next(iter(report.skipped))
    return f"{contact} cannot be enrolled: {reason.replace('_', ' ')}."


def enrollments_create(
    *, sequence: Sequence, contacts: Iterable[Contact], now: dt.datetime | None = None
) -> EnrollmentReport:
    """Enroll contacts into a sequence, skipping (and counting, by reason) those who may not be.

    Contacts are enrolled at the first step, due at once; into a paused sequence they are
    parked until it resumes.
    """
    now = now or timezone.now()
    refusal = _sequence_refusal(sequence)
    if refusal:
        raise ValidationError(refusal)
    first_step = sequence.steps.order_by("position").first()
    report = EnrollmentReport()
    rows = [
        Enrollment(
            organization_id=sequence.organization_id,
            sequence=sequence,
            contact=contact,
            current_step=first_step,
            next_run_at=now if sequence.status == Sequence.Status.ACTIVE else None,
            enrolled_at=now,
        )
        for contact in _eligible(sequence, contacts, report)
    ]
    try:
        with transaction.atomic():
            report.enrolled = Enrollment.objects.bulk_create(rows, batch_size=1000)
    except IntegrityError:
        # Someone enrolled some of these contacts at the same moment: go one by one.
        for row in rows:
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                report.enrolled.append(row)
            except IntegrityError:
                row.pk = None
                report.skipped[SkipReason.ALREADY_ENROLLED] += 1
    return report


def enrollment_create(*, sequence: Sequence, contact: Contact, now: dt.datetime | None = None) -> Enrollment:
    report = enrollments_create(sequence=sequence, contacts=[contact], now=now)
    if not report.enrolled:
        reason = next(iter(report.skipped))
        raise ValidationError(f"{contact} cannot be enrolled: {reason.replace('_', ' ')}.", code=reason)
    return report.enrolled[0]


def _end_enrollments(enrollments: Any, *, status: str, reason: str) -> int:
    """End the given active enrollments and cancel their messages that are not sent yet."""
    now = timezone.now()
    ids = list(enrollments.filter(status=Enrollment.Status.ACTIVE).values_list("id", flat=True))
    if not ids:
        return 0
    ended = Enrollment.objects.filter(id__in=ids, status=Enrollment.Status.ACTIVE).update(
        status=status, exit_reason=reason, finished_at=now, next_run_at=None, current_step=None
    )
    Message.objects.filter(enrollment_id__in=ids, status=Message.Status.QUEUED).update(
        status=Message.Status.CANCELLED, response=f"enrollment ended: {reason}", next_attempt_at=None
    )
    return ended


def enrollments_end_for_contact(*, contact: Contact, reason: str) -> int:
    """Exit every active enrollment of the contact at once (unsubscribe, bounce, complaint)."""
    return _end_enrollments(
        Enrollment.objects.filter(contact_id=contact.pk), status=Enrollment.Status.EXITED, reason=reason
    )


def enrollment_exit(*, enrollment: Enrollment, reason: str = Enrollment.ExitReason.REMOVED) -> bool:
    return bool(
        _end_enrollments(Enrollment.objects.filter(pk=enrollment.pk), status=Enrollment.Status.EXITED, reason=reason)
    )


def enrollments_fail(*, enrollment_ids: Iterable[int], reason: str) -> int:
    ids = list(enrollment_ids)
    # When the failed email was the last step, the enrollment has completed meanwhile: the
    # failure is still its outcome.
    Enrollment.objects.filter(id__in=ids, status=Enrollment.Status.COMPLETED).update(
        status=Enrollment.Status.FAILED, exit_reason=reason
    )
    return _end_enrollments(Enrollment.objects.filter(id__in=ids), status=Enrollment.Status.FAILED, reason=reason)


# Goals ---------------------------------------------------------------------------------------


def goal_reached(goal: dict[str, Any], *, properties: dict[str, Any], tag_ids: set[int]) -> bool:
    if goal["type"] == "has_tag":
        return goal["tag"] in tag_ids
    return property_matches(properties, goal)


def goals_check_for_contact(*, contact: Contact) -> int:
    """Exit the contact from every sequence whose goal it now meets. Returns how many."""
    enrollments = list(
        Enrollment.objects.filter(contact_id=contact.pk, status=Enrollment.Status.ACTIVE)
        .filter(sequence__goal__isnull=False)
        .select_related("sequence")
    )
    if not enrollments:
        return 0
    tag_ids = set(contact.tags.values_list("id", flat=True))
    reached = [
        enrollment.pk
        for enrollment in enrollments
        if enrollment.sequence.goal
        and goal_reached(enrollment.sequence.goal, properties=contact.properties, tag_ids=tag_ids)
    ]
    return _end_enrollments(
        Enrollment.objects.filter(id__in=reached),
        status=Enrollment.Status.EXITED,
        reason=Enrollment.ExitReason.GOAL_REACHED,
    )
