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
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from analytics import services as analytics_services
from deliverability import selectors as deliverability_selectors
from delivery.models import Message
from sequences.conditions import property_matches
from sequences.models import EmailTemplate, Enrollment, Sequence, Step, all_weekdays
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression

if TYPE_CHECKING:
    from organizations.models import Organization

# Shifting positions goes through this offset so no two steps share a position mid-update.
POSITION_SHIFT = 1_000_000
ENROLLMENT_CHUNK = 5_000


class StateConflict(ValidationError):
    """The operation clashes with the current state of a row (pausing a draft, deleting an active
    sequence, a template still in use): interfaces answer it as a conflict, not as bad input."""


def _name_taken(what: str) -> ValidationError:
    return ValidationError({"name": f"A {what} with this name already exists."})


def _save_named(row: EmailTemplate | Sequence, what: str, **save: Any) -> None:
    """Save a row whose name is unique in its organization (callers full_clean it without the
    constraints): a name taken, even by a concurrent request, is an error on "name"."""
    try:
        with transaction.atomic():
            row.save(**save)
    except IntegrityError:
        others = type(row).objects.filter(organization_id=row.organization_id, name=row.name).exclude(pk=row.pk)
        if others.exists():
            raise _name_taken(what) from None
        raise


# Templates -----------------------------------------------------------------------------------


def template_create(
    *, organization: Organization, name: str, subject: str, html_body: str, text_body: str = ""
) -> EmailTemplate:
    template = EmailTemplate(
        organization=organization, name=name, subject=subject, html_body=html_body, text_body=text_body
    )
    template.full_clean(validate_constraints=False)
    _save_named(template, "template")
    return template


def template_update(*, template: EmailTemplate, **fields: Any) -> EmailTemplate:
    for name in ("name", "subject", "html_body", "text_body"):
        if name in fields:
            setattr(template, name, fields.pop(name))
    if fields:
        raise TypeError(f"unknown template fields: {', '.join(fields)}")
    template.full_clean(validate_constraints=False)
    _save_named(template, "template")
    return template


@transaction.atomic
def template_delete(*, template: EmailTemplate) -> None:
    """Delete a template no step uses (a step's template is RESTRICTed in the database too)."""
    users = list(
        Step.objects.filter(template=template).order_by("sequence__name").values_list("sequence__name", flat=True)
    )
    if users:
        names = ", ".join(dict.fromkeys(users))
        raise StateConflict(f"This template is used by steps of: {names}. Change or remove those steps first.")
    template.delete()


# Sequences -----------------------------------------------------------------------------------


SEQUENCE_SETTINGS = (
    "name",
    "description",
    "from_name",
    "from_email",
    "reply_to",
    "send_days",
    "send_start_hour",
    "send_end_hour",
    "reentry_policy",
    "track_opens",
    "track_clicks",
    "goal",
)


@transaction.atomic
def sequence_create(
    *, organization: Organization, name: str, from_email: str, steps: Iterable[StepSpec] = (), **fields: Any
) -> Sequence:
    """Create a draft sequence, with its steps when given (see steps_replace)."""
    sequence = Sequence(organization=organization, name=name, from_email=from_email, **fields)
    sequence.full_clean(validate_constraints=False)
    _save_named(sequence, "sequence")
    steps = list(steps)
    if steps:
        steps_replace(sequence=sequence, steps=steps)
    return sequence


@transaction.atomic
def sequence_update(*, sequence: Sequence, steps: Iterable[StepSpec] | None = None, **fields: Any) -> Sequence:
    """Change a sequence's settings (any of SEQUENCE_SETTINGS); with `steps`, replace its steps
    too, in the same transaction. The status only changes through activate, pause and archive."""
    unknown = set(fields) - set(SEQUENCE_SETTINGS)
    if unknown:
        raise TypeError(f"unknown sequence settings: {', '.join(sorted(unknown))}")
    locked = Sequence.objects.select_for_update(no_key=True).get(pk=sequence.pk)
    sequence.status = locked.status
    for name, value in fields.items():
        setattr(sequence, name, value)
    sequence.full_clean(validate_constraints=False)
    sequence.updated_at = timezone.now()
    _save_named(sequence, "sequence", update_fields=[*fields, "updated_at"])
    if steps is not None:
        steps_replace(sequence=sequence, steps=list(steps))
    return sequence


@transaction.atomic
def sequence_delete(*, sequence: Sequence) -> None:
    """Delete a sequence that is not active, with its steps, enrollments and messages.

    An active sequence is refused: it may be sending this very moment. Pause or archive it
    first (archiving keeps its history; deleting does not).
    """
    locked = Sequence.objects.select_for_update().get(pk=sequence.pk)
    if locked.status == Sequence.Status.ACTIVE:
        raise StateConflict("An active sequence cannot be deleted: pause or archive it first.")
    locked.delete()


def _activation_problems(sequence: Sequence) -> list[str]:
    problems = []
    steps = list(sequence.steps.select_related("template"))
    if not steps:
        problems.append("The sequence has no steps.")
    email_templates = []
    for step in steps:
        if step.kind in (Step.Kind.EMAIL, Step.Kind.SPLIT):
            try:
                step.template.full_clean()
            except ValidationError as error:
                problems.append(f"Step {step.position}: template {step.template} is invalid: {error.messages}")
            else:
                email_templates.append((step.position, step.template))
    # Compliance: sender domain verified, an unsubscribe link in every email, a postal address.
    problems += deliverability_selectors.activation_problems(
        organization=sequence.organization, from_email=sequence.from_email, email_templates=email_templates
    )
    return problems


@transaction.atomic
def sequence_activate(*, sequence: Sequence) -> Sequence:
    """Start a draft sequence, or resume a paused one."""
    locked = Sequence.objects.select_for_update(no_key=True).get(pk=sequence.pk)
    if locked.status == Sequence.Status.ACTIVE:
        sequence.status = locked.status
        return sequence
    if locked.status == Sequence.Status.ARCHIVED:
        raise StateConflict("An archived sequence cannot be activated again.")
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
        raise StateConflict(f"Only an active sequence can be paused; this one is {locked.status}.")
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
    held = Message.objects.filter(sequence=sequence, status=Message.Status.QUEUED)
    analytics_services.facts_add_for(kind="message", queryset=held)
    held.update(status=Message.Status.CANCELLED, response="sequence archived", next_attempt_at=None)
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


@dataclass(frozen=True)
class StepSpec:
    """One step as a whole-sequence edit describes it (steps_replace).

    `id` names an existing step of the sequence to keep (None: a new step). `yes_step`,
    `no_step` and the `step` of an opened/clicked condition are positions (1-based) in the list
    of specs, since the steps they name may not exist yet.
    """

    kind: str
    id: int | None = None
    name: str = ""
    template: EmailTemplate | None = None
    delay: dt.timedelta | None = None
    wait_until_time: dt.time | None = None
    wait_until_days: list[int] = field(default_factory=all_weekdays)
    condition: dict[str, Any] | None = None
    yes_step: int | None = None
    no_step: int | None = None


# Model field names that the API spells differently.
_SPEC_FIELD_NAMES = {"template": "template_id"}


def _step_errors(index: int, error: ValidationError) -> ValidationError:
    """`error` of the step at `index`, keyed by its place in the list: steps.<index>.<field>."""
    prefix = f"steps.{index}"
    if not hasattr(error, "error_dict"):
        return ValidationError({prefix: error.messages})
    return ValidationError(
        {
            prefix if name == "__all__" else f"{prefix}.{_SPEC_FIELD_NAMES.get(name, name)}": messages
            for name, messages in error.message_dict.items()
        }
    )


def _condition_with_step_id(spec: StepSpec, index: int, specs: list[StepSpec], saved: list[Step]) -> Any:
    condition = spec.condition
    if not isinstance(condition, dict) or condition.get("type") not in ("opened", "clicked"):
        return condition
    target = condition.get("step")
    if target is None:
        return condition
    if (
        not isinstance(target, int)
        or isinstance(target, bool)
        or not 1 <= target <= index
        or specs[target - 1].kind != Step.Kind.EMAIL
    ):
        raise ValidationError(
            {f"steps.{index}.condition": "'step' must be the position (from 1) of an earlier email step."}
        )
    return {**condition, "step": saved[target - 1].pk}


@transaction.atomic
def steps_replace(*, sequence: Sequence, steps: list[StepSpec]) -> list[Step]:
    """Make the sequence's steps exactly `steps`, in that order.

    Steps named by id are updated in place, so contacts on them stay where they are; steps
    without an id are created; existing steps left out are removed through step_delete, which
    moves the contacts waiting on them to the step that followed (in the old order). Editing a
    live sequence otherwise behaves as the module docstring says. Raises ValidationError keyed
    steps.<index>.<field> for the first step that is not valid, and changes nothing then.
    """
    Sequence.objects.select_for_update(no_key=True).filter(pk=sequence.pk).first()
    existing = {step.pk: step for step in sequence.steps.order_by("position")}
    kept: set[int] = set()
    for index, spec in enumerate(steps):
        if spec.id is not None and (spec.id not in existing or spec.id in kept):
            problem = "appears twice" if spec.id in kept else "is not a step of this sequence"
            raise ValidationError({f"steps.{index}.id": f"Step {spec.id} {problem}."})
        if spec.id is not None:
            kept.add(spec.id)
        if spec.template is not None and spec.template.organization_id != sequence.organization_id:
            raise ValidationError({f"steps.{index}.template_id": "The template belongs to another organization."})
    for step_id, step in existing.items():
        if step_id not in kept:
            step_delete(step=step)
    # Kept steps make way first: their final positions may be taken by each other.
    sequence.steps.update(position=F("position") + POSITION_SHIFT)
    saved: list[Step] = []
    for index, spec in enumerate(steps):
        step = existing[spec.id] if spec.id is not None else Step(organization_id=sequence.organization_id)
        step.sequence = sequence
        step.position = index + 1
        step.kind = spec.kind
        step.name = spec.name
        step.template = spec.template
        step.delay = spec.delay
        step.wait_until_time = spec.wait_until_time
        step.wait_until_days = spec.wait_until_days
        step.condition = _condition_with_step_id(spec, index, steps, saved)
        # Branches lead to later steps, which may not exist yet: set once all are saved.
        step.yes_step = step.no_step = None
        try:
            step.full_clean()
        except ValidationError as error:
            raise _step_errors(index, error) from None
        step.save()
        saved.append(step)
    for index, (spec, step) in enumerate(zip(steps, saved, strict=True)):
        if spec.yes_step is None and spec.no_step is None:
            continue
        for name in ("yes_step", "no_step"):
            target = getattr(spec, name)
            if target is not None and not 1 <= target <= len(saved):
                raise ValidationError({f"steps.{index}.{name}": f"There is no step at position {target}."})
            setattr(step, name, saved[target - 1] if target is not None else None)
        try:
            step.full_clean()
        except ValidationError as error:
            raise _step_errors(index, error) from None
        step.save(update_fields=["yes_step", "no_step"])
    return saved


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
    # Signed up through a form and not confirmed yet (double opt-in): no mail until confirmed.
    AWAITING_CONFIRMATION = "awaiting_confirmation"
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
        elif contact.status == Contact.Status.PENDING:
            report.skipped[SkipReason.AWAITING_CONFIRMATION] += 1
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
        raise StateConflict(refusal)
    first_step = sequence.steps.order_by("position").first()
    report = EnrollmentReport()
    if isinstance(contacts, QuerySet):
        contacts = contacts.iterator(chunk_size=ENROLLMENT_CHUNK)
    contacts = iter(contacts)
    # In chunks: the eligibility checks look contacts up with IN (...), whose size databases
    # cap (SQLite at 32,766 values), and a whole list of contacts need not sit in memory.
    while chunk := list(itertools.islice(contacts, ENROLLMENT_CHUNK)):
        rows = [
            Enrollment(
                organization_id=sequence.organization_id,
                sequence=sequence,
                contact=contact,
                current_step=first_step,
                next_run_at=now if sequence.status == Sequence.Status.ACTIVE else None,
                enrolled_at=now,
            )
            for contact in _eligible(sequence, chunk, report)
        ]
        _enrollments_insert(rows, report)
    return report


def _enrolled_facts(rows: list[Enrollment]) -> None:
    if rows:
        analytics_services.facts_add(
            organization_id=rows[0].organization_id, kind="enrolled", object_ids=[row.pk for row in rows]
        )


def _enrollments_insert(rows: list[Enrollment], report: EnrollmentReport) -> None:
    try:
        with transaction.atomic():
            created = Enrollment.objects.bulk_create(rows, batch_size=1000)
            _enrolled_facts(created)
            report.enrolled += created
    except IntegrityError:
        # Someone enrolled some of these contacts at the same moment: go one by one.
        for row in rows:
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                    _enrolled_facts([row])
                report.enrolled.append(row)
            except IntegrityError:
                row.pk = None
                report.skipped[SkipReason.ALREADY_ENROLLED] += 1


def enrollment_create(*, sequence: Sequence, contact: Contact, now: dt.datetime | None = None) -> Enrollment:
    report = enrollments_create(sequence=sequence, contacts=[contact], now=now)
    if not report.enrolled:
        reason = next(iter(report.skipped))
        raise ValidationError(f"{contact} cannot be enrolled: {reason.replace('_', ' ')}.", code=reason)
    return report.enrolled[0]


@transaction.atomic
def _end_enrollments(enrollments: Any, *, status: str, reason: str) -> int:
    """End the given active enrollments and cancel their messages that are not sent yet."""
    now = timezone.now()
    # Locked, so that exactly these are ended here: a goal is counted once per enrollment.
    ids = list(enrollments.filter(status=Enrollment.Status.ACTIVE).select_for_update().values_list("id", flat=True))
    if not ids:
        return 0
    ended = Enrollment.objects.filter(id__in=ids, status=Enrollment.Status.ACTIVE).update(
        status=status, exit_reason=reason, finished_at=now, next_run_at=None, current_step=None
    )
    if reason == Enrollment.ExitReason.GOAL_REACHED:
        enrollments_goal_facts(Enrollment.objects.filter(id__in=ids))
    unsent = Message.objects.filter(enrollment_id__in=ids, status=Message.Status.QUEUED)
    analytics_services.facts_add_for(kind="message", queryset=unsent)
    unsent.update(status=Message.Status.CANCELLED, response=f"enrollment ended: {reason}", next_attempt_at=None)
    return ended


def enrollments_goal_facts(enrollments: QuerySet) -> None:
    """Note, for the analytics, that these enrollments have just reached their goal."""
    analytics_services.facts_add_for(kind="goal", queryset=enrollments)


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


def goal_reached(
    goal: dict[str, Any], *, properties: dict[str, Any], tag_ids: set[int], event_names: Iterable[str] = ()
) -> bool:
    """Whether a contact meets a sequence goal; `event_names` are the names of the custom events
    the contact has had since the enrollment began (only event goals look at them)."""
    if goal["type"] == "has_tag":
        return goal["tag"] in tag_ids
    if goal["type"] == "event":
        return goal["name"] in event_names
    return property_matches(properties, goal)


def goals_check_for_contact(*, contact: Contact) -> int:
    """Exit the contact from every sequence whose goal it now meets. Returns how many."""
    return goals_check_for_contacts(contact_ids=[contact.pk])


def _exit_goal_reached(enrollment_ids: list[int]) -> int:
    return _end_enrollments(
        Enrollment.objects.filter(id__in=enrollment_ids),
        status=Enrollment.Status.EXITED,
        reason=Enrollment.ExitReason.GOAL_REACHED,
    )


def goals_check_for_contacts(*, contact_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """goals_check_for_contact for many contacts at once, in a few queries whatever their number."""
    now = now or timezone.now()
    enrollments = list(
        Enrollment.objects.filter(contact_id__in=list(contact_ids), status=Enrollment.Status.ACTIVE)
        .filter(sequence__goal__isnull=False)
        .values_list("id", "contact_id", "enrolled_at", "sequence__goal")
    )
    if not enrollments:
        return 0
    concerned = {contact_id for _, contact_id, _, _ in enrollments}
    goal_types = {goal["type"] for *_, goal in enrollments}
    properties = dict(Contact.objects.filter(id__in=concerned).values_list("id", "properties"))
    tags: dict[int, set[int]] = {}
    if "has_tag" in goal_types:
        for contact_id, tag_id in Contact.tags.through.objects.filter(contact_id__in=concerned).values_list(
            "contact_id", "tag_id"
        ):
            tags.setdefault(contact_id, set()).add(tag_id)
    events_met: dict[int, set[str]] = {}
    if "event" in goal_types:
        events_met = events_since_enrollment(
            enrollment_ids=[enrollment_id for enrollment_id, *_, goal in enrollments if goal["type"] == "event"],
            names={goal["name"] for *_, goal in enrollments if goal["type"] == "event"},
            now=now,
        )
    reached = [
        enrollment_id
        for enrollment_id, contact_id, _, goal in enrollments
        if goal_reached(
            goal,
            properties=properties.get(contact_id) or {},
            tag_ids=tags.get(contact_id, set()),
            event_names=events_met.get(enrollment_id, ()),
        )
    ]
    return _exit_goal_reached(reached) if reached else 0


def events_since_enrollment(*, enrollment_ids: list[int], names: set[str], now: dt.datetime) -> dict[int, set[str]]:
    """Enrollment id -> which of these custom events its contact has had since it began (until now)."""
    found: dict[int, set[str]] = {}
    # One filter() call: the name and the time apply to the same event row.
    for enrollment_id, name in (
        Enrollment.objects.filter(
            id__in=enrollment_ids,
            contact__custom_events__name__in=names,
            contact__custom_events__occurred_at__gte=F("enrolled_at"),
            contact__custom_events__occurred_at__lte=now,
        )
        .values_list("id", "contact__custom_events__name")
        .distinct()
    ):
        found.setdefault(enrollment_id, set()).add(name)
    return found


NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def goals_check_for_events(
    *, organization_id: int, events: Iterable[tuple[int, str, dt.datetime]], now: dt.datetime | None = None
) -> int:
    """Exit the contacts whose new custom events (contact id, name, occurred at) meet the event
    goal of a sequence they are in: an event dated after the enrollment began.

    Only sequences whose goal names one of these events are looked at, so ingesting events no
    goal mentions costs one small query.
    """
    now = now or timezone.now()
    latest: dict[tuple[int, str], dt.datetime] = {}
    for contact_id, name, occurred_at in events:
        if occurred_at <= now:
            latest[(contact_id, name)] = max(occurred_at, latest.get((contact_id, name), occurred_at))
    if not latest:
        return 0
    goal_names = {
        sequence_id: goal["name"]
        for sequence_id, goal in Sequence.objects.filter(
            organization_id=organization_id, goal__type="event", goal__name__in={name for _, name in latest}
        ).values_list("id", "goal")
    }
    if not goal_names:
        return 0
    enrollments = Enrollment.objects.filter(
        sequence_id__in=list(goal_names),
        status=Enrollment.Status.ACTIVE,
        contact_id__in=list({contact_id for contact_id, _ in latest}),
    ).values_list("id", "sequence_id", "contact_id", "enrolled_at")
    reached = [
        enrollment_id
        for enrollment_id, sequence_id, contact_id, enrolled_at in enrollments
        if latest.get((contact_id, goal_names[sequence_id]), NEVER) >= enrolled_at
    ]
    return _exit_goal_reached(reached) if reached else 0
