"""REST: a sequence's funnel, read from the rollups (analytics.selectors)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import selectors
from analytics.models import Period
from analytics.services import FUNNEL_METRICS
from api.fields import ReportingDateTimeField
from api.views import OrganizationApiView
from sequences import selectors as sequence_selectors

ANALYTICS_TAG = ["analytics"]
# Hourly series are for recent activity; a year of hours is a day series' job.
MAX_HOURLY_SPAN = dt.timedelta(days=93)
DEFAULT_HOURLY_SPAN = dt.timedelta(days=7)


class FunnelQueryInput(serializers.Serializer):
    period = serializers.ChoiceField(
        choices=Period.choices, default=Period.DAY, help_text="Size of the series' buckets (UTC)."
    )
    since = ReportingDateTimeField(required=False, help_text="Only buckets starting at or after this time.")
    until = ReportingDateTimeField(required=False, help_text="Only buckets starting before this time.")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError({"until": "Must be after since."})
        if data["period"] == Period.HOUR:
            end = until or timezone.now()
            since = since or end - DEFAULT_HOURLY_SPAN
            if end - since > MAX_HOURLY_SPAN:
                raise serializers.ValidationError(
                    {"since": f"An hourly series covers at most {MAX_HOURLY_SPAN.days} days; ask for period=day."}
                )
            data["since"] = since
        return data


CountsOutput = type(
    "FunnelCountsOutput",
    (serializers.Serializer,),
    {
        "__module__": __name__,
        **{metric: serializers.IntegerField() for metric in FUNNEL_METRICS},
        "revenue": serializers.DecimalField(max_digits=18, decimal_places=2),
    },
)
RatesOutput = type(
    "FunnelRatesOutput",
    (serializers.Serializer,),
    {"__module__": __name__, **{rate: serializers.FloatField(allow_null=True) for rate in selectors.RATES}},
)


class FunnelCellOutput(serializers.Serializer):
    counts = CountsOutput()
    rates = RatesOutput()


class FunnelStepOutput(FunnelCellOutput):
    step_id = serializers.IntegerField()
    position = serializers.IntegerField(allow_null=True, help_text="Null for a step deleted since.")
    kind = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)


class FunnelTemplateOutput(FunnelCellOutput):
    template_id = serializers.IntegerField()


class FunnelVariantOutput(FunnelCellOutput):
    step_id = serializers.IntegerField()
    variant_id = serializers.IntegerField()


class FunnelLinkOutput(serializers.Serializer):
    step_id = serializers.IntegerField()
    url = serializers.CharField()
    clicked = serializers.IntegerField(help_text="Messages whose link a person clicked.")
    clicks_total = serializers.IntegerField()
    machine_clicks_total = serializers.IntegerField()


class FunnelBucketOutput(FunnelCellOutput):
    start = serializers.DateTimeField()


class FunnelOutput(serializers.Serializer):
    sequence_id = serializers.IntegerField()
    period = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)
    totals = FunnelCellOutput()
    steps = FunnelStepOutput(many=True)
    templates = FunnelTemplateOutput(many=True)
    variants = FunnelVariantOutput(many=True)
    links = FunnelLinkOutput(many=True)
    series = FunnelBucketOutput(many=True)


SEQUENCE_ID = OpenApiParameter("sequence_id", int, OpenApiParameter.PATH, description="The sequence's id.")


class SequenceAnalyticsApi(OrganizationApiView):
    """A sequence's funnel."""

    @extend_schema(
        operation_id="email_sequences_analytics",
        tags=ANALYTICS_TAG,
        parameters=[SEQUENCE_ID, FunnelQueryInput],
        responses=FunnelOutput,
        description=(
            "Counts and rates in total, per step, per template, per experiment variant and per link, and a "
            "series of UTC hour or day buckets. Counts are of distinct messages (opens and clicks by people "
            "and by machines apart; a click by a person counts as an open) except the *_total event counts. "
            "Read from rollups kept as events arrive: numbers trail events by the flush interval."
        ),
    )
    def get(self, request: Request, sequence_id: str) -> Response:
        sequence = sequence_selectors.sequence_get(organization=self.organization, sequence_id=int(sequence_id))
        query = FunnelQueryInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        funnel = selectors.sequence_funnel(sequence_id=sequence.pk, **query.validated_data)
        steps = {step.pk: step for step in sequence.steps.all()}
        answer = {
            **funnel.__dict__,
            "steps": [
                {
                    "step_id": cell.step_id,
                    "position": steps[cell.step_id].position if cell.step_id in steps else None,
                    "kind": steps[cell.step_id].kind if cell.step_id in steps else None,
                    "name": steps[cell.step_id].name if cell.step_id in steps else None,
                    "counts": cell.counts,
                    "rates": cell.rates,
                }
                for cell in funnel.steps
            ],
        }
        return Response(FunnelOutput(answer).data)
