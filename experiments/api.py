"""REST operations on a split step's experiment, its results, and the sample-size calculator.

The experiment lives under its step: /email-sequences/{sequence_id}/steps/{step_id}/experiment.
Steps and templates of other organizations answer 404, in the path and in the body alike.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import stats
from api.fields import IdField
from api.problems import Conflict
from api.views import OrganizationApiView
from experiments import selectors, services
from experiments.models import Experiment
from sequences import selectors as sequence_selectors
from sequences.api import MAX_BODY_CHARACTERS, JsonApiView

EXPERIMENTS_TAG = ["experiments"]
PATH_PARAMETERS = [
    OpenApiParameter("sequence_id", int, OpenApiParameter.PATH, description="The sequence's id."),
    OpenApiParameter("step_id", int, OpenApiParameter.PATH, description="The split step's id."),
]


class ExperimentVariantInput(serializers.Serializer):
    id = IdField(required=False, help_text="An existing variant to keep (PUT); leave out for a new one.")
    name = serializers.CharField(max_length=100)
    weight = serializers.IntegerField(min_value=1, max_value=services.MAX_WEIGHT, default=1)
    is_holdout = serializers.BooleanField(default=False, help_text="Gets no email at all.")
    template_id = IdField(allow_null=True, default=None, help_text="Send this template instead of the step's.")
    subject = serializers.CharField(max_length=500, allow_blank=True, default="", help_text="Empty: as the template.")
    html_body = serializers.CharField(max_length=MAX_BODY_CHARACTERS, allow_blank=True, default="")
    text_body = serializers.CharField(max_length=MAX_BODY_CHARACTERS, allow_blank=True, default="")
    from_name = serializers.CharField(max_length=200, allow_blank=True, default="")
    is_active = serializers.BooleanField(default=True, help_text="False: no new contacts get it.")


class ExperimentInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, allow_blank=True, default="")
    metric = serializers.ChoiceField(choices=Experiment.Metric.choices, default=Experiment.Metric.CLICK)
    test = serializers.ChoiceField(choices=Experiment.Test.choices, default=Experiment.Test.FIXED)
    allocation = serializers.ChoiceField(choices=Experiment.Allocation.choices, default=Experiment.Allocation.WEIGHTED)
    alpha = serializers.FloatField(default=0.05)
    power = serializers.FloatField(default=0.8)
    baseline_rate = serializers.FloatField(allow_null=True, default=None, help_text="The control's expected rate.")
    minimum_detectable_effect = serializers.FloatField(
        allow_null=True, default=None, help_text="The smallest absolute difference worth detecting, e.g. 0.01."
    )
    sample_size_per_variant = serializers.IntegerField(
        min_value=1, max_value=10**9, allow_null=True, default=None, help_text="Or the sample size itself."
    )
    min_exploration_share = serializers.FloatField(default=0.1, help_text="Thompson sampling's floor, 0 to 1.")
    guardrails = serializers.BooleanField(default=True)
    variants = ExperimentVariantInput(many=True, max_length=services.MAX_VARIANTS, min_length=1)

    def variant_specs(self, organization: Any) -> list[services.VariantSpec]:
        variants = self.validated_data["variants"]
        templates = sequence_selectors.templates_by_id(
            organization=organization, ids=[item["template_id"] for item in variants if item["template_id"]]
        )
        specs = []
        for index, item in enumerate(variants):
            template_id = item.pop("template_id")
            if template_id is not None and template_id not in templates:
                # Another organization's template is as absent as one that never existed.
                raise exceptions.NotFound(f"variants.{index}.template_id: there is no template {template_id}.")
            specs.append(services.VariantSpec(template=templates.get(template_id), **item))
        return specs

    def settings(self) -> services.ExperimentSettings:
        data = {name: value for name, value in self.validated_data.items() if name != "variants"}
        return services.ExperimentSettings(**data)


class ExperimentVariantOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    weight = serializers.IntegerField()
    is_holdout = serializers.BooleanField()
    template_id = serializers.IntegerField(allow_null=True)
    subject = serializers.CharField()
    html_body = serializers.CharField()
    text_body = serializers.CharField()
    from_name = serializers.CharField()
    is_active = serializers.BooleanField()
    stopped_reason = serializers.CharField()


class ExperimentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    step_id = serializers.IntegerField()
    name = serializers.CharField()
    metric = serializers.CharField()
    test = serializers.CharField()
    allocation = serializers.CharField()
    alpha = serializers.FloatField()
    power = serializers.FloatField()
    baseline_rate = serializers.FloatField(allow_null=True)
    minimum_detectable_effect = serializers.FloatField(allow_null=True)
    sample_size_per_variant = serializers.IntegerField(allow_null=True)
    min_exploration_share = serializers.FloatField()
    guardrails = serializers.BooleanField()
    status = serializers.CharField()
    winner_id = serializers.IntegerField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision = serializers.CharField()
    created_at = serializers.DateTimeField()
    variants = serializers.SerializerMethodField()

    @extend_schema_field(ExperimentVariantOutput(many=True))
    def get_variants(self, experiment: Experiment) -> list[dict[str, Any]]:
        return ExperimentVariantOutput(selectors.variants_of(experiment), many=True).data


class VariantCountsOutput(serializers.Serializer):
    assigned = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField(help_text="By a person.")
    clicked = serializers.IntegerField(help_text="By a person.")
    unsubscribed = serializers.IntegerField()
    complained = serializers.IntegerField()
    goal_reached = serializers.IntegerField()


class VariantResultOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    is_holdout = serializers.BooleanField()
    is_control = serializers.BooleanField()
    is_active = serializers.BooleanField()
    stopped_reason = serializers.CharField()
    weight = serializers.IntegerField()
    counts = VariantCountsOutput()
    successes = serializers.IntegerField(help_text="Clicked, opened or reached the goal, by the metric.")
    trials = serializers.IntegerField(help_text="Delivered (click, open) or assigned (goal).")
    rate = serializers.FloatField(allow_null=True)
    in_test = serializers.BooleanField(
        help_text="Compared in the test (active, and sending unless the metric is goal)."
    )
    difference = serializers.FloatField(allow_null=True, help_text="Rate minus the control's.")
    p_value = serializers.FloatField(allow_null=True, help_text="Against the control.")
    p_adjusted = serializers.FloatField(allow_null=True, help_text="Holm-adjusted when there are several challengers.")
    significant = serializers.BooleanField()
    probability_to_beat = serializers.FloatField(allow_null=True, help_text="Beta-Binomial: descriptive only.")
    expected_loss = serializers.FloatField(allow_null=True, help_text="Beta-Binomial: descriptive only.")
    progress = serializers.FloatField(allow_null=True, help_text="Share of the planned sample reached.")


class SampleRatioOutput(serializers.Serializer):
    statistic = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    mismatch = serializers.BooleanField()
    warning = serializers.CharField()
    expected_shares = serializers.DictField(child=serializers.FloatField())
    observed_shares = serializers.DictField(child=serializers.FloatField())


class ExperimentResultsOutput(serializers.Serializer):
    experiment_id = serializers.IntegerField()
    status = serializers.CharField()
    metric = serializers.CharField()
    test = serializers.CharField()
    allocation = serializers.CharField()
    alpha = serializers.FloatField()
    winner_id = serializers.IntegerField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision = serializers.CharField()
    test_used = serializers.CharField(help_text='"z", "chi_squared" or "msprt"; empty until every arm has data.')
    statistic = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    verdict = serializers.CharField()
    leading_id = serializers.IntegerField(allow_null=True, help_text="The variant the test supports now, if any.")
    sample_size_per_variant = serializers.IntegerField(allow_null=True)
    sample_reached = serializers.BooleanField()
    srm = SampleRatioOutput(allow_null=True, help_text="Sample-ratio check (weighted allocation, while running).")
    variants = VariantResultOutput(many=True)


class ExperimentApi(JsonApiView):
    """The experiment of a split step, with its variants."""

    def _step(self, sequence_id: str, step_id: str) -> Any:
        return selectors.split_step_get(
            organization=self.organization, sequence_id=int(sequence_id), step_id=int(step_id)
        )

    @extend_schema(operation_id="experiments_retrieve", tags=EXPERIMENTS_TAG, parameters=PATH_PARAMETERS,
                   responses=ExperimentOutput)  # fmt: skip
    def get(self, request: Request, sequence_id: str, step_id: str) -> Response:
        experiment = selectors.experiment_for_step(step=self._step(sequence_id, step_id))
        return Response(ExperimentOutput(experiment).data)

    @extend_schema(
        operation_id="experiments_update",
        tags=EXPERIMENTS_TAG,
        parameters=PATH_PARAMETERS,
        request=ExperimentInput,
        responses=ExperimentOutput,
        description=(
            "Creates the step's experiment or replaces it. Variants with an id are kept, others created, "
            "those left out deleted. Once contacts have been assigned, variants cannot be added, removed "
            "or changed in weight or content (409); names, is_active and the settings still can."
        ),
    )
    def put(self, request: Request, sequence_id: str, step_id: str) -> Response:
        step = self._step(sequence_id, step_id)
        data = ExperimentInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            experiment = services.experiment_save(
                step=step, settings=data.settings(), variants=data.variant_specs(self.organization)
            )
        except services.StateConflict as error:
            raise Conflict(" ".join(error.messages)) from None
        return Response(ExperimentOutput(experiment).data)

    @extend_schema(operation_id="experiments_destroy", tags=EXPERIMENTS_TAG, parameters=PATH_PARAMETERS,
                   responses={204: None}, description="The step sends its own template from then on.")  # fmt: skip
    def delete(self, request: Request, sequence_id: str, step_id: str) -> Response:
        experiment = selectors.experiment_for_step(step=self._step(sequence_id, step_id))
        services.experiment_delete(experiment=experiment)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ExperimentResultsApi(OrganizationApiView):
    """What the experiment shows so far, with the statistics behind the decision."""

    @extend_schema(
        operation_id="experiments_results",
        tags=EXPERIMENTS_TAG,
        parameters=PATH_PARAMETERS,
        responses=ExperimentResultsOutput,
        description=(
            "Per variant: counts, the metric's rate, the difference to the control with its p-value "
            "(Holm-adjusted for several challengers; always-valid for the sequential test), the "
            "Beta-Binomial probability to beat the others and expected loss (descriptive), progress "
            "towards the planned sample; and the sample-ratio check."
        ),
    )
    def get(self, request: Request, sequence_id: str, step_id: str) -> Response:
        step = selectors.split_step_get(
            organization=self.organization, sequence_id=int(sequence_id), step_id=int(step_id)
        )
        experiment = selectors.experiment_for_step(step=step)
        return Response(ExperimentResultsOutput(selectors.experiment_results(experiment=experiment)).data)


class SampleSizeQuery(serializers.Serializer):
    baseline_rate = serializers.FloatField(help_text="The control's expected rate, e.g. 0.03.")
    minimum_detectable_effect = serializers.FloatField(help_text="The absolute difference to detect, e.g. 0.005.")
    alpha = serializers.FloatField(default=0.05)
    power = serializers.FloatField(default=0.8)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        errors = services.design_errors(**data)
        if errors:
            raise serializers.ValidationError(errors)
        return data


class SampleSizeOutput(serializers.Serializer):
    sample_size_per_variant = serializers.IntegerField(help_text="Recipients each variant needs (delivered).")
    total_for_two_variants = serializers.IntegerField()


class SampleSizeApi(OrganizationApiView):
    """How many recipients each variant needs for a fixed-sample test."""

    @extend_schema(
        operation_id="experiments_sample_size",
        tags=EXPERIMENTS_TAG,
        parameters=[SampleSizeQuery],
        responses=SampleSizeOutput,
        description="Two-sided test of two proportions; nothing is stored.",
    )
    def get(self, request: Request) -> Response:
        query = SampleSizeQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        size = stats.sample_size_per_variant(
            data["baseline_rate"], data["minimum_detectable_effect"], data["alpha"], data["power"]
        )
        return Response(SampleSizeOutput({"sample_size_per_variant": size, "total_for_two_variants": 2 * size}).data)
