"""Customer analytics as pure computations: cohort retention, RFM segments, lifetime value, attribution.

Nothing here reads the database: `analytics.customer_selectors` gathers the inputs of one
organization and calls these functions, so each can be checked against published figures or
generated data.

Definitions
- Cohort: the contacts who joined (signed up, or were first enrolled) in the same week, weeks
  starting on Monday (UTC). A member is retained in week k when they engaged (a human open or
  click) between k and k+1 weeks after their own join time. Shares are over the whole cohort;
  a week that has not begun yet for the cohort's first day is None, not 0.
- RFM: per customer, recency (days since the last purchase), frequency (purchases) and monetary
  (total revenue), each scored 1-5 by quintile of its rank among the organization's customers
  (5 is best: most recent, most frequent, highest spend; ties share a score). `rfm_segment`
  names the segment from R and FM = ceil((F + M) / 2):
      R 4-5: FM 4-5 Champions,  FM 2-3 Potential loyalist,  FM 1 New
      R 3:   FM 3-5 Loyal,      FM 1-2 Hibernating
      R 1-2: FM 5 Can't lose,   FM 3-4 At risk,  FM 1-2 Hibernating (R 2) or Lost (R 1)
- Lifetime value: BG/NBD (Fader, Hardie and Lee 2005) for the number of future purchases and
  whether a customer is still "alive", Gamma-Gamma (Fader and Hardie 2013) for the value of a
  purchase, both fitted by maximum likelihood through `lifetimes`; time in weeks.
- Attribution: a conversion's path is the contact's touches in the `window` before it (touches
  at the conversion's instant included), in time order. Rule-based models split each converting
  path's one conversion (and its revenue) over its touches; the Markov model credits channels by
  their removal effect in a first-order chain built from converting and non-converting paths.
  Conversions without a touch in the window are "unattributed": counted apart, never credited.
  Every model's credits sum to the attributed conversions and revenue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import io
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

WEEK = dt.timedelta(days=7)

# Cohorts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortRow:
    cohort_start: dt.date  # the Monday the cohort's week starts on
    size: int
    retained: list[int | None]  # members engaged in week k after joining; None: week k has not begun
    shares: list[float | None]


def week_start(moment: dt.datetime) -> dt.date:
    day = moment.astimezone(dt.UTC).date() if moment.tzinfo else moment.date()
    return day - dt.timedelta(days=day.weekday())


def cohort_matrix(
    *,
    joined: dict[Hashable, dt.datetime],
    engaged: Iterable[tuple[Hashable, dt.datetime]],
    weeks: int,
    now: dt.datetime,
) -> list[CohortRow]:
    """Retention by join week: `joined` maps member to join time, `engaged` lists (member, time)."""
    engaged_weeks: dict[Hashable, set[int]] = defaultdict(set)
    for member, moment in engaged:
        start = joined.get(member)
        if start is None or moment < start:
            continue
        week = int((moment - start) / WEEK)
        if week < weeks:
            engaged_weeks[member].add(week)
    cohorts: dict[dt.date, list[Hashable]] = defaultdict(list)
    for member, start in joined.items():
        cohorts[week_start(start)].append(member)
    today = now.astimezone(dt.UTC).date() if now.tzinfo else now.date()
    rows = []
    for cohort_start in sorted(cohorts):
        members = cohorts[cohort_start]
        retained: list[int | None] = []
        shares: list[float | None] = []
        for week in range(weeks):
            if cohort_start + week * WEEK > today:
                retained.append(None)
                shares.append(None)
                continue
            count = sum(1 for member in members if week in engaged_weeks.get(member, ()))
            retained.append(count)
            shares.append(count / len(members))
        rows.append(CohortRow(cohort_start=cohort_start, size=len(members), retained=retained, shares=shares))
    return rows


# RFM --------------------------------------------------------------------------------------------


class Segment(enum.StrEnum):
    CHAMPIONS = "Champions"
    LOYAL = "Loyal"
    POTENTIAL_LOYALIST = "Potential loyalist"
    NEW = "New"
    AT_RISK = "At risk"
    CANT_LOSE = "Can't lose"
    HIBERNATING = "Hibernating"
    LOST = "Lost"


@dataclass(frozen=True)
class Conversion:
    contact_id: int
    occurred_at: dt.datetime
    revenue: float = 0.0


@dataclass(frozen=True)
class RfmScore:
    contact_id: int
    recency_days: float
    frequency: int
    monetary: float
    recency_score: int
    frequency_score: int
    monetary_score: int
    segment: Segment


def quintile_scores(values: Sequence[float]) -> list[int]:
    """1-5 by quintile of rank, higher values scoring higher; equal values get equal scores."""
    if not len(values):
        return []
    ranks = rankdata(np.asarray(values, dtype=float), method="average")
    return [int(min(5, max(1, math.ceil(5 * rank / len(values) - 1e-9)))) for rank in ranks]


def rfm_segment(recency: int, frequency: int, monetary: int) -> Segment:
    fm = (frequency + monetary + 1) // 2
    if recency >= 4:
        return Segment.CHAMPIONS if fm >= 4 else Segment.POTENTIAL_LOYALIST if fm >= 2 else Segment.NEW
    if recency == 3:
        return Segment.LOYAL if fm >= 3 else Segment.HIBERNATING
    if fm == 5:
        return Segment.CANT_LOSE
    if fm >= 3:
        return Segment.AT_RISK
    return Segment.HIBERNATING if recency == 2 else Segment.LOST


def rfm_scores(conversions: Iterable[Conversion], *, now: dt.datetime) -> list[RfmScore]:
    """One score per customer with at least one conversion, ordered by contact id."""
    last: dict[int, dt.datetime] = {}
    count: dict[int, int] = defaultdict(int)
    revenue: dict[int, float] = defaultdict(float)
    for conversion in conversions:
        contact = conversion.contact_id
        count[contact] += 1
        revenue[contact] += conversion.revenue
        if contact not in last or conversion.occurred_at > last[contact]:
            last[contact] = conversion.occurred_at
    contacts = sorted(last)
    recency_days = [max(0.0, (now - last[contact]).total_seconds() / 86400) for contact in contacts]
    # Fewer days since the last purchase is better: score the negated recency.
    r_scores = quintile_scores([-days for days in recency_days])
    f_scores = quintile_scores([count[contact] for contact in contacts])
    m_scores = quintile_scores([revenue[contact] for contact in contacts])
    return [
        RfmScore(
            contact_id=contact,
            recency_days=days,
            frequency=count[contact],
            monetary=revenue[contact],
            recency_score=r,
            frequency_score=f,
            monetary_score=m,
            segment=rfm_segment(r, f, m),
        )
        for contact, days, r, f, m in zip(contacts, recency_days, r_scores, f_scores, m_scores, strict=True)
    ]


# Lifetime value ---------------------------------------------------------------------------------

MIN_REPEAT_CUSTOMERS = 20


class LifetimeValueUnavailable(Exception):
    """Too little (or too degenerate) purchase history to fit the models."""


@dataclass(frozen=True)
class LifetimeValueModel:
    observation_end: dt.datetime
    customers: int
    repeat_customers: int
    bg_nbd: dict[str, float]  # r, alpha, a, b
    gamma_gamma: dict[str, float]  # p, q, v
    summary: Any  # pandas DataFrame indexed by customer: frequency, recency, T (weeks), monetary_value
    _fitters: tuple[Any, Any] = field(repr=False, compare=False, default=(None, None))


@dataclass(frozen=True)
class LifetimeValue:
    contact_id: Any
    frequency: int
    recency_weeks: float
    age_weeks: float
    average_value: float
    probability_alive: float
    expected_purchases: float
    expected_average_value: float
    lifetime_value: float


def purchase_summary(transactions: Iterable[tuple[Any, dt.datetime, float]], *, observation_end: dt.datetime) -> Any:
    """Frequency, recency and age (T) in weeks and mean repeat-purchase value, per customer.

    Purchases on the same day are one purchase (their values summed), as in the CDNOW studies.
    """
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data

    frame = pd.DataFrame(list(transactions), columns=["customer", "occurred_at", "revenue"])
    if frame.empty:
        return pd.DataFrame(columns=["frequency", "recency", "T", "monetary_value"])
    occurred = pd.to_datetime(frame["occurred_at"], utc=True).dt.tz_localize(None)
    frame["occurred_at"] = occurred.dt.normalize()
    end = pd.Timestamp(observation_end)
    end = (end.tz_convert("UTC").tz_localize(None) if end.tzinfo else end).normalize()
    frame = frame[frame["occurred_at"] <= end]
    return summary_data_from_transaction_data(
        frame,
        "customer",
        "occurred_at",
        monetary_value_col="revenue",
        observation_period_end=end,
        freq="D",
        freq_multiplier=7,
    )


# Starting points (log parameters) tried in turn: lifetimes' default first. BFGS sometimes stops
# with "precision loss" on flat likelihoods (Gamma-Gamma's p and v trade off on small data).
BG_NBD_STARTS = (None, np.log([0.5, 5.0, 1.0, 3.0]), np.zeros(4))
GAMMA_GAMMA_STARTS = (None, np.log([5.0, 3.0, 15.0]), np.zeros(3))


def _fit_from_starts(make_fitter: Any, starts: Sequence[Any], *args: Any) -> Any:
    from lifetimes.utils import ConvergenceError

    def fit(start: Any) -> Any:
        # lifetimes prints the optimiser's result when it fails.
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
            return make_fitter().fit(*args, initial_params=start)

    for start in starts[:-1]:
        with contextlib.suppress(ConvergenceError):
            return fit(start)
    return fit(starts[-1])


def bg_nbd_fit(summary: Any) -> Any:
    from lifetimes import BetaGeoFitter

    return _fit_from_starts(
        lambda: BetaGeoFitter(penalizer_coef=0.0),
        BG_NBD_STARTS,
        summary["frequency"],
        summary["recency"],
        summary["T"],
    )


def gamma_gamma_fit(summary: Any) -> Any:
    """Fitted on repeat customers with a positive mean purchase value (the model's support)."""
    from lifetimes import GammaGammaFitter

    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    return _fit_from_starts(
        lambda: GammaGammaFitter(penalizer_coef=0.0),
        GAMMA_GAMMA_STARTS,
        repeat["frequency"],
        repeat["monetary_value"],
    )


def lifetime_value_fit(
    transactions: Iterable[tuple[Any, dt.datetime, float]],
    *,
    observation_end: dt.datetime,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
) -> LifetimeValueModel:
    """BG/NBD and Gamma-Gamma fitted on these purchases; LifetimeValueUnavailable when it cannot be."""
    from lifetimes.utils import ConvergenceError

    summary = purchase_summary(transactions, observation_end=observation_end)
    repeat = int(((summary["frequency"] > 0) & (summary["monetary_value"] > 0)).sum())
    if repeat < min_repeat_customers:
        raise LifetimeValueUnavailable(
            f"Lifetime value needs at least {min_repeat_customers} customers with a repeat purchase "
            f"of positive revenue; there are {repeat}."
        )
    try:
        bg = bg_nbd_fit(summary)
        gg = gamma_gamma_fit(summary)
    except (ConvergenceError, ValueError, np.linalg.LinAlgError) as error:
        raise LifetimeValueUnavailable(f"The models did not converge on this purchase history ({error}).") from None
    parameters = [*bg.params_.values, *gg.params_.values]
    if not all(math.isfinite(value) and value > 0 for value in parameters):
        raise LifetimeValueUnavailable("The models did not converge on this purchase history.")
    return LifetimeValueModel(
        observation_end=observation_end,
        customers=len(summary),
        repeat_customers=repeat,
        bg_nbd={name: float(value) for name, value in bg.params_.items()},
        gamma_gamma={name: float(value) for name, value in gg.params_.items()},
        summary=summary,
        _fitters=(bg, gg),
    )


def lifetime_value_predict(
    model: LifetimeValueModel, *, months: int, monthly_discount_rate: float = 0.01
) -> list[LifetimeValue]:
    """Per customer: chance of being alive, expected purchases and discounted value over `months`."""
    bg, gg = model._fitters
    summary = model.summary
    weeks = months * 4.345  # lifetimes' own conversion of a month into weeks
    with np.errstate(all="ignore"):
        alive = bg.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"])
        purchases = bg.conditional_expected_number_of_purchases_up_to_time(
            weeks, summary["frequency"], summary["recency"], summary["T"]
        )
        value = gg.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"])
        clv = gg.customer_lifetime_value(
            bg,
            summary["frequency"],
            summary["recency"],
            summary["T"],
            summary["monetary_value"],
            time=months,
            discount_rate=monthly_discount_rate,
            freq="W",
        )
    results = []
    for index, customer in enumerate(summary.index):
        results.append(
            LifetimeValue(
                contact_id=customer,
                frequency=int(summary["frequency"].iloc[index]),
                recency_weeks=float(summary["recency"].iloc[index]),
                age_weeks=float(summary["T"].iloc[index]),
                average_value=float(summary["monetary_value"].iloc[index]),
                probability_alive=float(np.asarray(alive)[index]),
                expected_purchases=float(np.asarray(purchases)[index]),
                expected_average_value=float(np.asarray(value)[index]),
                lifetime_value=float(np.asarray(clv)[index]),
            )
        )
    return results


# Attribution ------------------------------------------------------------------------------------


class Model(enum.StrEnum):
    FIRST_TOUCH = "first_touch"
    LAST_TOUCH = "last_touch"
    LINEAR = "linear"
    TIME_DECAY = "time_decay"
    MARKOV = "markov"


@dataclass(frozen=True)
class Touch:
    contact_id: int
    channel: Hashable  # a step id
    occurred_at: dt.datetime


@dataclass
class Credit:
    conversions: float = 0.0
    revenue: float = 0.0


@dataclass
class Attribution:
    model: Model
    credits: dict[Hashable, Credit]
    total_conversions: int
    attributed_conversions: int
    unattributed_conversions: int
    total_revenue: float
    attributed_revenue: float
    unattributed_revenue: float
    # Markov only: the share of conversions lost when each channel is removed.
    removal_effects: dict[Hashable, float] = field(default_factory=dict)


def _paths(
    conversions: Sequence[Conversion], touches: Sequence[Touch], window: dt.timedelta
) -> tuple[list[tuple[Conversion, list[Touch]]], list[Conversion], list[list[Touch]]]:
    """Converting paths, unattributed conversions, and non-converting paths.

    A touch followed by no conversion of its contact within the window is non-converting; a
    contact's consecutive non-converting touches less than a window apart form one path.
    """
    by_contact: dict[int, list[Touch]] = defaultdict(list)
    for touch in touches:
        by_contact[touch.contact_id].append(touch)
    for contact_touches in by_contact.values():
        contact_touches.sort(key=lambda touch: (touch.occurred_at, str(touch.channel)))
    conversion_times: dict[int, list[dt.datetime]] = defaultdict(list)
    converting: list[tuple[Conversion, list[Touch]]] = []
    unattributed: list[Conversion] = []
    for conversion in conversions:
        conversion_times[conversion.contact_id].append(conversion.occurred_at)
        path = [
            touch
            for touch in by_contact.get(conversion.contact_id, ())
            if conversion.occurred_at - window <= touch.occurred_at <= conversion.occurred_at
        ]
        if path:
            converting.append((conversion, path))
        else:
            unattributed.append(conversion)
    non_converting: list[list[Touch]] = []
    for contact, contact_touches in by_contact.items():
        times = conversion_times.get(contact, ())
        current: list[Touch] = []
        for touch in contact_touches:
            if any(touch.occurred_at <= moment <= touch.occurred_at + window for moment in times):
                continue
            if current and touch.occurred_at - current[-1].occurred_at > window:
                non_converting.append(current)
                current = []
            current.append(touch)
        if current:
            non_converting.append(current)
    return converting, unattributed, non_converting


def _rule_weights(model: Model, conversion: Conversion, path: list[Touch], half_life: dt.timedelta) -> list[float]:
    if model == Model.FIRST_TOUCH:
        return [1.0] + [0.0] * (len(path) - 1)
    if model == Model.LAST_TOUCH:
        return [0.0] * (len(path) - 1) + [1.0]
    if model == Model.LINEAR:
        return [1.0 / len(path)] * len(path)
    ages = [(conversion.occurred_at - touch.occurred_at) / half_life for touch in path]
    raw = [2.0 ** -(age - min(ages)) for age in ages]  # shifted: no underflow on long windows
    total = sum(raw)
    return [weight / total for weight in raw]


START, CONVERTED, NULL = "(start)", "(conversion)", "(null)"


def _conversion_probability(transitions: dict[Any, dict[Any, int]], states: list[Any], removed: Any = None) -> float:
    """Probability of absorbing in CONVERTED from START; a removed channel leads to NULL."""
    index = {state: position for position, state in enumerate(states)}
    size = len(states)
    matrix = np.eye(size)
    target = np.zeros(size)
    for state, outgoing in transitions.items():
        if state == removed:
            continue  # every path through it ends there, unconverted
        total = sum(outgoing.values())
        row = index[state]
        for successor, count in outgoing.items():
            if successor == CONVERTED:
                target[row] += count / total
            elif successor != NULL and successor != removed:
                matrix[row, index[successor]] -= count / total
    solution = np.linalg.solve(matrix, target)
    return float(solution[index[START]])


def markov_removal_effects(
    converting_paths: Iterable[Sequence[Hashable]], non_converting_paths: Iterable[Sequence[Hashable]]
) -> dict[Hashable, float]:
    """Each channel's removal effect: 1 - P(conversion without it) / P(conversion)."""
    transitions: dict[Any, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    for paths, end in ((converting_paths, CONVERTED), (non_converting_paths, NULL)):
        for path in paths:
            chain = [START, *path, end]
            for here, there in zip(chain, chain[1:], strict=False):
                transitions[here][there] += 1
    channels = sorted({state for state in transitions if state != START}, key=str)
    states = [START, *channels]
    base = _conversion_probability(transitions, states) if transitions else 0.0
    if base <= 0:
        return dict.fromkeys(channels, 0.0)
    return {
        channel: max(0.0, 1.0 - _conversion_probability(transitions, states, removed=channel) / base)
        for channel in channels
    }


def attribute(
    conversions: Sequence[Conversion],
    touches: Sequence[Touch],
    *,
    model: Model,
    window: dt.timedelta = dt.timedelta(days=30),
    half_life: dt.timedelta = dt.timedelta(days=7),
) -> Attribution:
    """Credit conversions (and their revenue) to channels under one model; see the module docstring."""
    converting, unattributed, non_converting = _paths(conversions, touches, window)
    credits: dict[Hashable, Credit] = defaultdict(Credit)
    attributed_revenue = math.fsum(conversion.revenue for conversion, _ in converting)
    removal_effects: dict[Hashable, float] = {}
    model_for_paths = model
    if model == Model.MARKOV:
        removal_effects = markov_removal_effects(
            [[touch.channel for touch in path] for _, path in converting],
            [[touch.channel for touch in path] for path in non_converting],
        )
        on_converting_paths = {touch.channel for _, path in converting for touch in path}
        effects = {channel: removal_effects.get(channel, 0.0) for channel in on_converting_paths}
        total_effect = math.fsum(effects.values())
        if total_effect > 0:
            for channel, effect in effects.items():
                credits[channel].conversions = len(converting) * effect / total_effect
                credits[channel].revenue = attributed_revenue * effect / total_effect
        else:
            # Unreachable with exact arithmetic (a converting path's channels cannot all be
            # dispensable); kept so that credits always add up.
            model_for_paths = Model.LINEAR
    if model != Model.MARKOV or not credits:
        for conversion, path in converting:
            weights = _rule_weights(model_for_paths, conversion, path, half_life)
            for touch, weight in zip(path, weights, strict=True):
                credits[touch.channel].conversions += weight
                credits[touch.channel].revenue += weight * conversion.revenue
    total_revenue = math.fsum(conversion.revenue for conversion in conversions)
    return Attribution(
        model=model,
        credits={channel: credit for channel, credit in credits.items() if credit.conversions > 0},
        total_conversions=len(conversions),
        attributed_conversions=len(converting),
        unattributed_conversions=len(unattributed),
        total_revenue=total_revenue,
        attributed_revenue=attributed_revenue,
        unattributed_revenue=math.fsum(conversion.revenue for conversion in unattributed),
        removal_effects=removal_effects,
    )
