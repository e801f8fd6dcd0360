"""A split step's experiment: variants of one email, who got which, and the decision.

A step of kind "split" sends its template like an email step, except that each enrollment
reaching it is assigned one variant (by weight, or by Thompson sampling), whose overrides
replace parts of the template; a holdout variant gets no email at all. Results are read by
experiments.selectors; the decision (winner, guardrail stops) is written by experiments.services.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.tenancy import TenantModel


class Experiment(TenantModel):
    class Metric(models.TextChoices):
        CLICK = "click", "Clicked (by a person)"
        OPEN = "open", "Opened (by a person)"
        GOAL = "goal", "Reached the sequence goal"

    class Test(models.TextChoices):
        FIXED = "fixed", "Fixed sample size (z-test, or chi-squared with Holm correction)"
        SEQUENTIAL = "sequential", "Sequential (mSPRT, always-valid p-values)"

    class Allocation(models.TextChoices):
        WEIGHTED = "weighted", "Fixed traffic weights"
        THOMPSON = "thompson", "Thompson sampling (with a minimum exploration share)"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DECIDED = "decided", "Winner declared"
        STOPPED = "stopped", "Stopped without a winner"

    step = models.OneToOneField("sequences.Step", on_delete=models.CASCADE, related_name="experiment")
    name = models.CharField(max_length=200, blank=True)
    metric = models.CharField(max_length=16, choices=Metric.choices, default=Metric.CLICK)
    test = models.CharField(max_length=16, choices=Test.choices, default=Test.FIXED)
    allocation = models.CharField(max_length=16, choices=Allocation.choices, default=Allocation.WEIGHTED)
    alpha = models.FloatField(default=0.05)
    power = models.FloatField(default=0.8)
    # For the sample-size calculator: the control's expected rate and the smallest absolute
    # difference worth detecting. The fixed test decides only once every arm has its sample.
    baseline_rate = models.FloatField(null=True, blank=True)
    minimum_detectable_effect = models.FloatField(null=True, blank=True)
    sample_size_per_variant = models.PositiveIntegerField(null=True, blank=True)
    min_exploration_share = models.FloatField(default=0.1)
    guardrails = models.BooleanField(
        default=True, help_text="Stop a variant whose unsubscribe or complaint rate is significantly worse."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    winner = models.ForeignKey("Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(alpha__gt=0) & Q(alpha__lt=0.5), name="experiment_alpha_in_range"),
            models.CheckConstraint(condition=Q(power__gt=0) & Q(power__lt=1), name="experiment_power_in_range"),
            models.CheckConstraint(
                condition=Q(min_exploration_share__gte=0) & Q(min_exploration_share__lte=1),
                name="experiment_exploration_in_range",
            ),
            models.CheckConstraint(
                condition=Q(metric__in=["click", "open", "goal"]), name="experiment_metric_is_known"
            ),
            models.CheckConstraint(condition=Q(test__in=["fixed", "sequential"]), name="experiment_test_is_known"),
            models.CheckConstraint(
                condition=Q(allocation__in=["weighted", "thompson"]), name="experiment_allocation_is_known"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "decided", "stopped"]), name="experiment_status_is_known"
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"experiment of step {self.step_id}"


class Variant(TenantModel):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=100)
    weight = models.PositiveIntegerField(default=1)
    is_holdout = models.BooleanField(default=False, help_text="Gets no email: the baseline for goal conversions.")
    # Overrides of the step's template; empty means "as the template". `template` replaces it whole.
    template = models.ForeignKey(
        "sequences.EmailTemplate", null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    subject = models.CharField(max_length=500, blank=True)
    html_body = models.TextField(blank=True)
    text_body = models.TextField(blank=True)
    from_name = models.CharField(max_length=200, blank=True)
    # A guardrail stop (or a person) takes a variant out of assignment; its results stay.
    is_active = models.BooleanField(default=True)
    stopped_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="variant_name_unique_per_experiment"),
            models.CheckConstraint(
                condition=Q(is_holdout=False)
                | (Q(template__isnull=True) & Q(subject="") & Q(html_body="") & Q(text_body="") & Q(from_name="")),
                name="holdout_variant_has_no_content",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (holdout)" if self.is_holdout else self.name


class Assignment(TenantModel):
    """Which variant an enrollment got at a split step: one per enrollment and experiment."""

    id = models.BigAutoField(primary_key=True)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="assignments")
    enrollment = models.ForeignKey("sequences.Enrollment", on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey("subscribers.Contact", on_delete=models.CASCADE, related_name="+", db_index=False)
    assigned_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "enrollment"], name="one_assignment_per_enrollment"),
        ]

    def __str__(self) -> str:
        return f"enrollment {self.enrollment_id} → {self.variant_id}"
