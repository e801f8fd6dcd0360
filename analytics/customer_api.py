"""REST reads of customer analytics: cohorts, RFM segments, lifetime value, attribution.

Each view parses its query with an input serializer, calls one selector of
`analytics.customer_selectors` with the request's organization, and renders. Definitions are in
the docstring of `analytics.customers`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import customer_selectors as selectors
from analytics import customers
from api.fields import IdField, ReportingDateTimeField
from api.problems import Unprocessable
from api.views import OrganizationApiView
from sequences.selectors import sequence_for_reference

TAGS = ["customer-analytics"]
MAX_EVENT_NAMES = 20


def _parsed(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    parser = serializer_class(data=data)
    parser.is_valid(raise_exception=True)
    return dict(parser.validated_data)


class PurchaseEventsInput(serializers.Serializer):
    event = serializers.CharField(
        max_length=5000,
        default="purchase",
        help_text=(
            "Comma-separated names of the custom events that are purchases or goals. "
            'Revenue comes from their property "revenue", else "value", else "amount".'
        ),
    )

    def validate_event(self, value: str) -> list[str]:
        names = sorted({name.strip() for name in value.split(",") if name.strip()})
        if not names:
            raise serializers.ValidationError("Name at least one event.")
        if len(names) > MAX_EVENT_NAMES:
            raise serializers.ValidationError(f"Name at most {MAX_EVENT_NAMES} events.")
        if any(len(name) > 200 for name in names):
            raise serializers.ValidationError("An event name has at most 200 characters.")
        return names


class SequenceFilterInput(serializers.Serializer):
    sequence_id = IdField(required=False, help_text="Only this sequence of the organization.")


# Cohorts ----------------------------------------------------------------------------------------


class CohortInput(SequenceFilterInput):
    basis = serializers.ChoiceField(
        choices=selectors.CohortBasis.ALL,
        default=selectors.CohortBasis.SIGNUP,
        help_text="signup: contacts by the week they were created; enrollment: by their first enrollment.",
    )
    cohorts = serializers.IntegerField(min_value=1, max_value=104, default=12, help_text="Join weeks, up to now.")
    weeks = serializers.IntegerField(min_value=1, max_value=52, default=12, help_text="Weeks of retention each.")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "sequence_id" in data and data["basis"] != selectors.CohortBasis.ENROLLMENT:
            raise serializers.ValidationError({"sequence_id": "Only cohorts by enrollment take a sequence."})
        return data


class CohortRowOutput(serializers.Serializer):
    cohort_start = serializers.DateField(help_text="The Monday (UTC) the join week starts on.")
    size = serializers.IntegerField()
    retained = serializers.ListField(
        child=serializers.IntegerField(allow_null=True),
        help_text="Members with a human open or click in week k after joining; null: week k has not begun.",
    )
    shares = serializers.ListField(child=serializers.FloatField(allow_null=True))


class CohortOutput(serializers.Serializer):
    basis = serializers.CharField()
    sequence_id = serializers.IntegerField(allow_null=True)
    weeks = serializers.IntegerField()
    cohorts = CohortRowOutput(many=True)


class CustomerCohortsApi(OrganizationApiView):
    """Weekly retention of contacts by join week."""

    @extend_schema(
        operation_id="analytics_cohorts",
        tags=TAGS,
        parameters=[CohortInput],
        responses=CohortOutput,
        description=(
            "Contacts grouped by the week they signed up or were first enrolled; for each week after "
            "joining, the share that opened or clicked an email (people only, machines left out)."
        ),
    )
    def get(self, request: Request) -> Response:
        query = _parsed(CohortInput, request.query_params)
        sequence = None
        if "sequence_id" in query:
            sequence = sequence_for_reference(
                organization=self.organization, sequence_id=query["sequence_id"], field_name="sequence_id"
            )
        rows = selectors.customer_cohorts(
            organization=self.organization,
            basis=query["basis"],
            cohorts=query["cohorts"],
            weeks=query["weeks"],
            sequence=sequence,
        )
        answer = {
            "basis": query["basis"],
            "sequence_id": sequence.pk if sequence else None,
            "weeks": query["weeks"],
            "cohorts": rows,
        }
        return Response(CohortOutput(answer).data)


# RFM --------------------------------------------------------------------------------------------


class RfmInput(PurchaseEventsInput):
    segment = serializers.ChoiceField(
        choices=[segment.value for segment in customers.Segment], required=False, help_text="Only this segment."
    )
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100, help_text="Customers listed.")


class RfmSegmentOutput(serializers.Serializer):
    segment = serializers.CharField()
    customers = serializers.IntegerField()
    revenue = serializers.FloatField()


class RfmCustomerOutput(serializers.Serializer):
    contact_id = serializers.IntegerField()
    email = serializers.CharField()
    recency_days = serializers.FloatField(help_text="Days since the last purchase.")
    frequency = serializers.IntegerField(help_text="Purchases.")
    monetary = serializers.FloatField(help_text="Revenue, summed.")
    recency_score = serializers.IntegerField(help_text="1-5 by quintile; 5 is the most recent.")
    frequency_score = serializers.IntegerField()
    monetary_score = serializers.IntegerField()
    segment = serializers.CharField()


class RfmOutput(serializers.Serializer):
    customers = serializers.IntegerField(help_text="Contacts with at least one purchase.")
    segments = RfmSegmentOutput(many=True)
    top_customers = RfmCustomerOutput(many=True, help_text="Highest revenue first.")


class CustomerRfmApi(OrganizationApiView):
    """Recency, frequency and monetary scores of the organization's customers, and their segments."""

    @extend_schema(
        operation_id="analytics_rfm",
        tags=TAGS,
        parameters=[RfmInput],
        responses=RfmOutput,
        description=(
            "R, F and M scored 1-5 by quintile among the organization's customers. Segments from R and "
            "FM = ceil((F+M)/2): R 4-5 with FM 4-5 Champions, 2-3 Potential loyalist, 1 New; R 3 with FM 3-5 "
            "Loyal, else Hibernating; R 1-2 with FM 5 Can't lose, 3-4 At risk, else Hibernating (R 2) or Lost (R 1)."
        ),
    )
    def get(self, request: Request) -> Response:
        query = _parsed(RfmInput, request.query_params)
        report = selectors.customer_rfm(
            organization=self.organization,
            event_names=query["event"],
            segment=query.get("segment"),
            limit=query["limit"],
        )
        top = [
            {**score.__dict__, "segment": score.segment.value, "email": report.emails.get(score.contact_id, "")}
            for score in report.scores
        ]
        return Response(
            RfmOutput({"customers": report.customers, "segments": report.segments, "top_customers": top}).data
        )


# Lifetime value ---------------------------------------------------------------------------------


class LifetimeValueInput(PurchaseEventsInput):
    months = serializers.IntegerField(min_value=1, max_value=60, default=12, help_text="Horizon of the prediction.")
    discount_rate = serializers.FloatField(
        min_value=0, max_value=1, default=0.01, help_text="Monthly discount rate of future revenue."
    )
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=50, help_text="Customers listed.")


class BgNbdOutput(serializers.Serializer):
    r = serializers.FloatField()
    alpha = serializers.FloatField()
    a = serializers.FloatField()
    b = serializers.FloatField()


class GammaGammaOutput(serializers.Serializer):
    p = serializers.FloatField()
    q = serializers.FloatField()
    v = serializers.FloatField(help_text="Called gamma in Fader and Hardie's note.")


class CustomerValueOutput(serializers.Serializer):
    contact_id = serializers.IntegerField()
    email = serializers.CharField()
    frequency = serializers.IntegerField(help_text="Repeat purchases (days with a purchase after the first).")
    recency_weeks = serializers.FloatField()
    age_weeks = serializers.FloatField()
    average_value = serializers.FloatField(help_text="Mean revenue of the repeat purchases.")
    probability_alive = serializers.FloatField()
    expected_purchases = serializers.FloatField()
    expected_average_value = serializers.FloatField()
    lifetime_value = serializers.FloatField(help_text="Discounted revenue expected over the horizon.")


class LifetimeValueOutput(serializers.Serializer):
    months = serializers.IntegerField()
    discount_rate = serializers.FloatField()
    customers = serializers.IntegerField()
    repeat_customers = serializers.IntegerField()
    bg_nbd = BgNbdOutput()
    gamma_gamma = GammaGammaOutput()
    expected_purchases = serializers.FloatField(help_text="Over all customers.")
    lifetime_value = serializers.FloatField(help_text="Over all customers.")
    top_customers = CustomerValueOutput(many=True)


class CustomerLifetimeValueApi(OrganizationApiView):
    """Predicted purchases and customer lifetime value (BG/NBD and Gamma-Gamma)."""

    @extend_schema(
        operation_id="analytics_lifetime_value",
        tags=TAGS,
        parameters=[LifetimeValueInput],
        responses=LifetimeValueOutput,
        description=(
            "BG/NBD and Gamma-Gamma fitted on the organization's purchases (time in weeks). A 422 problem "
            f"when fewer than {customers.MIN_REPEAT_CUSTOMERS} customers bought again, or the models did not converge."
        ),
    )
    def get(self, request: Request) -> Response:
        query = _parsed(LifetimeValueInput, request.query_params)
        try:
            report = selectors.customer_lifetime_value(
                organization=self.organization,
                event_names=query["event"],
                months=query["months"],
                monthly_discount_rate=query["discount_rate"],
                limit=query["limit"],
            )
        except customers.LifetimeValueUnavailable as error:
            raise Unprocessable(str(error)) from None
        top = [
            {
                **value.__dict__,
                "contact_id": int(value.contact_id),
                "email": report.emails.get(int(value.contact_id), ""),
            }
            for value in report.top
        ]
        answer = {
            "months": report.months,
            "discount_rate": report.monthly_discount_rate,
            "customers": report.model.customers,
            "repeat_customers": report.model.repeat_customers,
            "bg_nbd": report.model.bg_nbd,
            "gamma_gamma": report.model.gamma_gamma,
            "expected_purchases": report.expected_purchases,
            "lifetime_value": report.lifetime_value,
            "top_customers": top,
        }
        return Response(LifetimeValueOutput(answer).data)


# Attribution ------------------------------------------------------------------------------------


class AttributionInput(SequenceFilterInput, PurchaseEventsInput):
    model = serializers.CharField(
        max_length=200,
        required=False,
        help_text="Comma-separated models (default: all): " + ", ".join(model.value for model in customers.Model),
    )
    window_days = serializers.IntegerField(
        min_value=1, max_value=365, default=30, help_text="Touches up to this many days before a conversion count."
    )
    half_life_days = serializers.FloatField(
        min_value=0.01, max_value=365, default=7, help_text="Time decay: a touch this much earlier counts half."
    )
    touch = serializers.ChoiceField(
        choices=selectors.TouchKind.ALL,
        default=selectors.TouchKind.SENT,
        help_text="What touches a contact: a sent message, a person's open or click, or a click only.",
    )
    since = ReportingDateTimeField(required=False, help_text="Conversions at or after this time.")
    until = ReportingDateTimeField(required=False, help_text="Conversions at or before this time.")

    def validate_model(self, value: str) -> list[customers.Model]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        known = {model.value for model in customers.Model}
        unknown = sorted(set(names) - known)
        if unknown or not names:
            raise serializers.ValidationError(f"Choose among {', '.join(sorted(known))}.")
        return [customers.Model(name) for name in dict.fromkeys(names)]

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "since" in data and "until" in data and data["since"] > data["until"]:
            raise serializers.ValidationError({"until": "Must not come before since."})
        data.setdefault("model", list(customers.Model))
        return data


class AttributionCreditOutput(serializers.Serializer):
    step_id = serializers.IntegerField()
    step_name = serializers.CharField()
    step_position = serializers.IntegerField()
    sequence_id = serializers.IntegerField()
    sequence_name = serializers.CharField()
    conversions = serializers.FloatField(help_text="Credited conversions (fractions).")
    revenue = serializers.FloatField(help_text="Credited revenue.")
    removal_effect = serializers.FloatField(allow_null=True, help_text="Markov only.")


class AttributionModelOutput(serializers.Serializer):
    model = serializers.CharField()
    total_conversions = serializers.IntegerField()
    attributed_conversions = serializers.IntegerField(help_text="The credits' conversions add up to this.")
    unattributed_conversions = serializers.IntegerField(help_text="No touch in the window before them.")
    total_revenue = serializers.FloatField()
    attributed_revenue = serializers.FloatField(help_text="The credits' revenue adds up to this.")
    unattributed_revenue = serializers.FloatField()
    credits = AttributionCreditOutput(many=True, help_text="Most credited first.")


class AttributionOutput(serializers.Serializer):
    window_days = serializers.IntegerField()
    half_life_days = serializers.FloatField()
    touch = serializers.CharField()
    models = AttributionModelOutput(many=True)


class CustomerAttributionApi(OrganizationApiView):
    """Conversions and revenue credited to email steps under several attribution models."""

    @extend_schema(
        operation_id="analytics_attribution",
        tags=TAGS,
        parameters=[AttributionInput],
        responses=AttributionOutput,
        description=(
            "first_touch, last_touch, linear and time_decay split each conversion over the touches in the "
            "window before it; markov credits steps by their removal effect in a first-order chain of "
            "converting and non-converting paths. Conversions without a touch in the window are unattributed."
        ),
    )
    def get(self, request: Request) -> Response:
        query = _parsed(AttributionInput, request.query_params)
        sequence = None
        if "sequence_id" in query:
            sequence = sequence_for_reference(
                organization=self.organization, sequence_id=query["sequence_id"], field_name="sequence_id"
            )
        report = selectors.customer_attribution(
            organization=self.organization,
            event_names=query["event"],
            models=query["model"],
            window_days=query["window_days"],
            half_life_days=query["half_life_days"],
            touch=query["touch"],
            since=query.get("since"),
            until=query.get("until"),
            sequence=sequence,
        )
        models = []
        for result in report.results:
            credits = []
            for step_id, credit in sorted(result.credits.items(), key=lambda item: (-item[1].conversions, item[0])):
                step = report.steps[step_id]
                credits.append(
                    {
                        "step_id": step.pk,
                        "step_name": step.name,
                        "step_position": step.position,
                        "sequence_id": step.sequence_id,
                        "sequence_name": step.sequence.name,
                        "conversions": credit.conversions,
                        "revenue": credit.revenue,
                        "removal_effect": result.removal_effects.get(step_id)
                        if result.model == customers.Model.MARKOV
                        else None,
                    }
                )
            models.append({**result.__dict__, "model": result.model.value, "credits": credits})
        answer = {
            "window_days": report.window_days,
            "half_life_days": report.half_life_days,
            "touch": report.touch,
            "models": models,
        }
        return Response(AttributionOutput(answer).data)
