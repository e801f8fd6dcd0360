from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from organizations.tenancy import TenantModel
from sequences.conditions import validate_condition, validate_goal
from sequences.personalization import template_problems

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def validate_weekdays(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(day, int) and 0 <= day <= 6 for day in value):
        raise ValidationError("Weekdays are a list of numbers from 0 (Monday) to 6 (Sunday).")
    if len(set(value)) != len(value):
        raise ValidationError("Each weekday may appear once.")


def all_weekdays() -> list[int]:
    return list(range(7))


class EmailTemplate(TenantModel):
    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=500)
    html_body = models.TextField(help_text='Liquid markup, e.g. {{ contact.first_name | default: "there" }}.')
    text_body = models.TextField(blank=True, help_text="Leave empty to derive the text version from the HTML.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="template_name_unique_per_org")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        for field in ("subject", "html_body", "text_body"):
            problems = template_problems(getattr(self, field) or "")
            if problems:
                errors[field] = [str(problem) for problem in problems]
        if errors:
            raise ValidationError(errors)


class Sequence(TenantModel):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ARCHIVED = "archived", "Archived"

    class ReentryPolicy(models.TextChoices):
        NEVER = "never", "Never: a contact goes through the sequence once"
        AFTER_EXIT = "after_exit", "Again, once the previous enrollment has ended"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    from_name = models.CharField(max_length=200, blank=True)
    from_email = models.EmailField()
    reply_to = models.EmailField(blank=True)
    send_days = models.JSONField(
        default=all_weekdays, validators=[validate_weekdays], help_text="Weekdays mail may go out, 0 is Monday."
    )
    send_start_hour = models.PositiveSmallIntegerField(default=0, help_text="Contact's local time, inclusive.")
    send_end_hour = models.PositiveSmallIntegerField(default=24, help_text="Contact's local time, exclusive.")
    reentry_policy = models.CharField(max_length=16, choices=ReentryPolicy.choices, default=ReentryPolicy.NEVER)
    track_opens = models.BooleanField(default=True)
    track_clicks = models.BooleanField(default=True)
    is_transactional = models.BooleanField(
        default=False,
        help_text="Receipts, password resets and the like: exempt from frequency caps and the sunset policy.",
    )
    goal = models.JSONField(
        null=True, blank=True, validators=[validate_goal], help_text="Reaching it removes the contact. See docs."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="sequence_name_unique_per_org"),
            models.CheckConstraint(
                condition=Q(send_start_hour__gte=0)
                & Q(send_end_hour__lte=24)
                & Q(send_start_hour__lt=models.F("send_end_hour")),
                name="sequence_send_window_is_ordered",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "active", "paused", "archived"]), name="sequence_status_is_known"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.send_days:
            raise ValidationError({"send_days": "Choose at least one weekday."})
        if not (0 <= self.send_start_hour < self.send_end_hour <= 24):
            raise ValidationError({"send_end_hour": "The window must start before it ends, within 0-24."})


class Step(TenantModel):
    class Kind(models.TextChoices):
        EMAIL = "email", "Send email"
        DELAY = "delay", "Wait for a duration"
        WAIT_UNTIL = "wait_until", "Wait until a time of day"
        CONDITION = "condition", "Branch on a condition"
        EXIT = "exit", "Exit the sequence"
        SPLIT = "split", "Split test: send one variant of an email"

    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True)
    # RESTRICT: a template in use cannot be deleted, unless its steps go with it (a whole
    # organization being deleted).
    template = models.ForeignKey(EmailTemplate, null=True, blank=True, on_delete=models.RESTRICT, related_name="steps")
    delay = models.DurationField(null=True, blank=True)
    wait_until_time = models.TimeField(null=True, blank=True)
    wait_until_days = models.JSONField(default=all_weekdays, blank=True, validators=[validate_weekdays])
    condition = models.JSONField(null=True, blank=True)
    # Branch targets must come later in the sequence (no loops); empty means the next step.
    yes_step = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    no_step = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["sequence", "position"]
        constraints = [
            models.UniqueConstraint(fields=["sequence", "position"], name="step_position_unique_per_sequence"),
            models.CheckConstraint(
                condition=~Q(kind__in=["email", "split"]) | Q(template__isnull=False),
                name="email_and_split_steps_have_a_template",
            ),
            models.CheckConstraint(
                condition=~Q(kind="delay") | Q(delay__gt=dt.timedelta(0)), name="delay_step_has_positive_delay"
            ),
            models.CheckConstraint(
                condition=~Q(kind="wait_until") | Q(wait_until_time__isnull=False), name="wait_until_step_has_time"
            ),
            models.CheckConstraint(
                condition=~Q(kind="condition") | Q(condition__isnull=False), name="condition_step_has_condition"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["email", "delay", "wait_until", "condition", "exit", "split"]),
                name="step_kind_is_known_v2",
            ),
        ]

    def __str__(self) -> str:
        label = self.name or self.get_kind_display()
        return f"{self.position}. {label}"

    def _validate_condition_target(self) -> None:
        """An opened/clicked condition may only name an earlier email step of its own sequence."""
        step_id = self.condition.get("step") if self.condition["type"] in ("opened", "clicked") else None
        if step_id is None:
            return
        target = Step.objects.filter(pk=step_id, sequence_id=self.sequence_id, kind=self.Kind.EMAIL).first()
        if target is None or target.position >= self.position:
            raise ValidationError("The condition must name an earlier email step of this sequence.")

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind in (self.Kind.EMAIL, self.Kind.SPLIT) and not self.template_id:
            errors["template"] = "An email or split step needs a template."
        if self.kind == self.Kind.DELAY and (self.delay is None or self.delay <= dt.timedelta(0)):
            errors["delay"] = "A delay step needs a positive duration."
        if self.kind == self.Kind.WAIT_UNTIL:
            if self.wait_until_time is None:
                errors["wait_until_time"] = "A wait-until step needs a time of day."
            if not self.wait_until_days:
                errors["wait_until_days"] = "Choose at least one weekday."
        if self.kind == self.Kind.CONDITION:
            try:
                validate_condition(self.condition)
                self._validate_condition_target()
            except ValidationError as error:
                errors["condition"] = error.messages[0]
        for field in ("yes_step", "no_step"):
            target = getattr(self, field)
            if target is None:
                continue
            if self.kind != self.Kind.CONDITION:
                errors[field] = "Only condition steps branch."
            elif target.sequence_id != self.sequence_id:
                errors[field] = "A branch must lead to a step of the same sequence."
            elif target.position <= self.position:
                errors[field] = "A branch must lead to a later step (sequences have no loops)."
        if errors:
            raise ValidationError(errors)


class Enrollment(TenantModel):
    """One contact's way through one sequence: the unit of work the engine claims."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        EXITED = "exited", "Exited"
        FAILED = "failed", "Failed"

    class ExitReason(models.TextChoices):
        EXIT_STEP = "exit_step", "Reached an exit step"
        GOAL_REACHED = "goal_reached", "Reached the goal"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        NOT_MAILABLE = "not_mailable", "Contact not mailable"
        REMOVED = "removed", "Removed by staff"
        SEQUENCE_ARCHIVED = "sequence_archived", "Sequence archived"
        RENDER_FAILED = "render_failed", "Template failed to render"
        SEND_FAILED = "send_failed", "Delivery failed"
        SUNSET = "sunset", "Sunset: no human open or click for too long"

    contact = models.ForeignKey("subscribers.Contact", on_delete=models.CASCADE, related_name="enrollments")
    # Every advance rewrites every index of this table (next_run_at is indexed, so no update is
    # HOT): no index of its own on sequence, which (sequence, status) covers, nor on
    # current_step, which only deleting a step looks up.
    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="enrollments", db_index=False)
    # The step to run when next_run_at arrives; null once the enrollment has ended. RESTRICT:
    # a single step is removed through services.step_delete, which moves waiting contacts on
    # first; deleting the whole sequence (or organization) takes its enrollments along.
    current_step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.RESTRICT, related_name="+", db_index=False
    )
    # Null while parked (its sequence is paused): resuming sets it to now.
    next_run_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    exit_reason = models.CharField(max_length=32, choices=ExitReason.choices, blank=True)
    enrolled_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-enrolled_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "sequence"], condition=Q(status="active"), name="one_active_enrollment_per_contact"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["active", "completed", "exited", "failed"]), name="enrollment_status_is_known"
            ),
            models.CheckConstraint(
                condition=Q(status="active") | Q(finished_at__isnull=False), name="finished_enrollment_has_end_time"
            ),
        ]
        indexes = [
            # The engine's claim: "active and due, oldest first". Partial, so finished rows
            # (the vast majority over time) cost the claim nothing.
            models.Index(fields=["next_run_at"], condition=Q(status="active"), name="enrollment_due_idx"),
            models.Index(fields=["sequence", "status"], name="enrollment_sequence_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact} in {self.sequence}"
