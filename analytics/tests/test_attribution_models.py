"""Attribution of conversions and revenue to email steps, model by model."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.customers import Conversion, Model, Touch, attribute, markov_removal_effects

T0 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def at(days: float) -> dt.datetime:
    return T0 + days * DAY


def credits(result) -> dict:
    return {channel: round(credit.conversions, 9) for channel, credit in result.credits.items()}


# A contact touched by steps "a" (day 0), "b" (day 2) and "c" (day 6) who buys on day 7 for 70.
PATH = [Touch(1, "a", at(0)), Touch(1, "b", at(2)), Touch(1, "c", at(6))]
PURCHASE = [Conversion(1, at(7), 70.0)]


def test_first_and_last_touch_credit_the_whole_conversion_to_one_step():
    assert credits(attribute(PURCHASE, PATH, model=Model.FIRST_TOUCH)) == {"a": 1.0}
    assert credits(attribute(PURCHASE, PATH, model=Model.LAST_TOUCH)) == {"c": 1.0}


def test_linear_splits_evenly_and_revenue_follows_the_same_weights():
    result = attribute(PURCHASE, PATH, model=Model.LINEAR)
    assert credits(result) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert {channel: credit.revenue for channel, credit in result.credits.items()} == pytest.approx(
        {"a": 70 / 3, "b": 70 / 3, "c": 70 / 3}
    )


def test_time_decay_halves_a_touch_one_half_life_earlier():
    result = attribute(PURCHASE, PATH, model=Model.TIME_DECAY, half_life=dt.timedelta(days=2))
    # Ages 7, 5 and 1 days: weights 2^-3.5, 2^-2.5, 2^-0.5.
    weights = {"a": 2**-3.5, "b": 2**-2.5, "c": 2**-0.5}
    total = sum(weights.values())
    assert credits(result) == pytest.approx({channel: weight / total for channel, weight in weights.items()})
    assert result.credits["b"].conversions == pytest.approx(2 * result.credits["a"].conversions)


def test_touches_outside_the_window_or_after_the_conversion_do_not_count():
    touches = [*PATH, Touch(1, "late", at(7.5)), Touch(2, "other contact", at(6))]
    result = attribute(PURCHASE, touches, model=Model.FIRST_TOUCH, window=dt.timedelta(days=3))
    assert credits(result) == {"c": 1.0}


def test_a_conversion_without_a_touch_in_the_window_is_unattributed():
    conversions = [*PURCHASE, Conversion(2, at(7), 30.0), Conversion(1, at(40), 5.0)]
    for model in Model:
        result = attribute(conversions, PATH, model=model, window=dt.timedelta(days=30))
        assert (result.total_conversions, result.attributed_conversions, result.unattributed_conversions) == (3, 1, 2)
        assert (result.total_revenue, result.attributed_revenue, result.unattributed_revenue) == (105.0, 70.0, 35.0)
        assert sum(credit.conversions for credit in result.credits.values()) == pytest.approx(1.0)


def test_markov_removal_effect_of_a_step_on_every_converting_path_is_one():
    # "a" is on both converting paths; "b" on one of them, "c" only on a path that did not convert.
    effects = markov_removal_effects([["a", "b"], ["a"]], [["c"], ["a", "c"]])
    # P(conversion): start->a (3/4) then a->conv (1/3) + a->b (1/3)->conv; start->c->null.
    assert effects["a"] == pytest.approx(1.0)
    assert effects["b"] == pytest.approx(0.5)
    assert effects["c"] == pytest.approx(0.0)


def test_markov_credits_are_shares_of_the_removal_effects():
    touches = [
        Touch(1, "a", at(0)),
        Touch(1, "b", at(1)),
        Touch(2, "a", at(0)),
        Touch(3, "c", at(0)),
        Touch(4, "a", at(0)),
        Touch(4, "c", at(1)),
    ]
    conversions = [Conversion(1, at(2), 30.0), Conversion(2, at(2), 10.0)]
    result = attribute(conversions, touches, model=Model.MARKOV, window=dt.timedelta(days=5))
    assert result.removal_effects == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})
    assert credits(result) == pytest.approx({"a": 2 * 2 / 3, "b": 2 * 1 / 3})
    assert result.credits["a"].revenue == pytest.approx(40 * 2 / 3)


# Properties, with generated data -----------------------------------------------------------------

touch_strategy = st.builds(
    Touch,
    contact_id=st.integers(0, 6),
    channel=st.integers(0, 4),
    occurred_at=st.integers(0, 60 * 24).map(lambda minutes: T0 + dt.timedelta(minutes=minutes * 30)),
)
conversion_strategy = st.builds(
    Conversion,
    contact_id=st.integers(0, 6),
    occurred_at=st.integers(0, 60 * 24).map(lambda minutes: T0 + dt.timedelta(minutes=minutes * 30)),
    revenue=st.sampled_from([0.0, 0.01, 9.99, 120.0, 1e6]),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    conversions=st.lists(conversion_strategy, max_size=25),
    touches=st.lists(touch_strategy, max_size=60),
    window_days=st.integers(1, 40),
    half_life_days=st.floats(0.05, 30),
)
def test_every_model_credits_non_negative_amounts_that_sum_to_the_attributed_totals(
    conversions, touches, window_days, half_life_days
):
    for model in Model:
        result = attribute(
            conversions,
            touches,
            model=model,
            window=dt.timedelta(days=window_days),
            half_life=dt.timedelta(days=half_life_days),
        )
        assert result.total_conversions == len(conversions)
        assert result.attributed_conversions + result.unattributed_conversions == len(conversions)
        assert result.attributed_revenue + result.unattributed_revenue == pytest.approx(result.total_revenue)
        assert all(credit.conversions >= 0 and credit.revenue >= 0 for credit in result.credits.values())
        assert sum(credit.conversions for credit in result.credits.values()) == pytest.approx(
            result.attributed_conversions, abs=1e-9
        )
        assert sum(credit.revenue for credit in result.credits.values()) == pytest.approx(
            result.attributed_revenue, rel=1e-9, abs=1e-6
        )
        touched_channels = {touch.channel for touch in touches}
        assert set(result.credits) <= touched_channels
