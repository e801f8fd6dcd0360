"""Rollups: what the funnels read, so that reading one never scans raw events.

Every write that a funnel counts (a message written or settled, an event, an enrollment, a goal,
an experiment assignment) adds a PendingFact in its own transaction, through
analytics.services.facts_add. analytics.services.rollups_flush takes pending facts in order,
folds them into the rollups and deletes them, in one transaction: each fact is counted once.

Counts that depend on more than one fact (a message opened by a person, a message only ever
opened by machines, a link's unique clickers) are kept exact by MessageState: the times at
which each message was last counted, so that a fact that arrives late or out of order moves a
count to the right bucket instead of counting twice.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.tenancy import TenantModel


class PendingFact(TenantModel):
    class Kind(models.TextChoices):
        MESSAGE = "message", "A message was written or changed status"
        EVENT = "event", "An event was recorded"
        ENROLLED = "enrolled", "A contact was enrolled"
        GOAL = "goal", "An enrollment reached its sequence's goal"
        ASSIGNED = "assigned", "An enrollment was assigned an experiment variant"

    id = models.BigAutoField(primary_key=True)
    # No index but the primary key: written on the send path, read in id order by the flush.
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    object_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["message", "event", "enrolled", "goal", "assigned"]),
                name="pending_fact_kind_is_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id}"


class Period(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class FunnelRollup(TenantModel):
    """Counts for one (sequence, step, template, variant) in one UTC hour or day.

    step_id, template_id and variant_id are plain numbers (0 for "none": sequence-level rows
    such as enrollments and goals), not foreign keys: a step or variant deleted later keeps its
    history, and the sequence's totals still include it.
    """

    id = models.BigAutoField(primary_key=True)
    sequence = models.ForeignKey("sequences.Sequence", on_delete=models.CASCADE, related_name="+", db_index=False)
    step_id = models.BigIntegerField(default=0)
    template_id = models.BigIntegerField(default=0)
    variant_id = models.BigIntegerField(default=0)
    period = models.CharField(max_length=4, choices=Period.choices)
    bucket = models.DateTimeField()
    enrolled = models.BigIntegerField(default=0)
    assigned = models.BigIntegerField(default=0, help_text="Enrollments assigned this variant (holdout included).")
    reached = models.BigIntegerField(default=0)
    sent = models.BigIntegerField(default=0)
    delivered = models.BigIntegerField(default=0)
    bounced = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    cancelled = models.BigIntegerField(default=0)
    opened = models.BigIntegerField(default=0)
    machine_opened = models.BigIntegerField(default=0)
    clicked = models.BigIntegerField(default=0)
    machine_clicked = models.BigIntegerField(default=0)
    unsubscribed = models.BigIntegerField(default=0)
    complained = models.BigIntegerField(default=0)
    goal_reached = models.BigIntegerField(default=0)
    revenue = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    opens_total = models.BigIntegerField(default=0)
    machine_opens_total = models.BigIntegerField(default=0)
    clicks_total = models.BigIntegerField(default=0)
    machine_clicks_total = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sequence", "period", "bucket", "step_id", "template_id", "variant_id"],
                name="funnel_rollup_cell_unique",
            ),
            models.CheckConstraint(condition=Q(period__in=["hour", "day"]), name="funnel_rollup_period_is_known"),
        ]

    def __str__(self) -> str:
        return f"sequence {self.sequence_id} step {self.step_id} {self.period} {self.bucket:%Y-%m-%d %H:00}"


class LinkRollup(TenantModel):
    """Clicks on one link of one step in one UTC hour or day."""

    id = models.BigAutoField(primary_key=True)
    sequence = models.ForeignKey("sequences.Sequence", on_delete=models.CASCADE, related_name="+", db_index=False)
    step_id = models.BigIntegerField(default=0)
    url_hash = models.CharField(max_length=40)
    url = models.TextField()
    period = models.CharField(max_length=4, choices=Period.choices)
    bucket = models.DateTimeField()
    clicked = models.BigIntegerField(default=0, help_text="Messages whose link a person clicked (first click).")
    clicks_total = models.BigIntegerField(default=0)
    machine_clicks_total = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sequence", "period", "bucket", "step_id", "url_hash"], name="link_rollup_cell_unique"
            ),
            models.CheckConstraint(condition=Q(period__in=["hour", "day"]), name="link_rollup_period_is_known"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.period} {self.bucket:%Y-%m-%d %H:00})"


class MessageState(TenantModel):
    """What the rollups hold for one message, as the times each count was placed at."""

    message_id = models.BigIntegerField(primary_key=True)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    state = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"state of message {self.message_id}"
