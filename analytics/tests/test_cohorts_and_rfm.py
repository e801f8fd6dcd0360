"""Cohort retention and RFM scoring, computed and read from an organization's data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from analytics import customer_selectors
from analytics.customers import Conversion, Segment, cohort_matrix, quintile_scores, rfm_scores, rfm_segment
from delivery.models import Event
from delivery.tests.factories import EventFactory, MessageFactory, enrollment_for
from organizations.tests.factories import OrganizationFactory
from sequences.models import Step
from sequences.tests.factories import EmailTemplateFactory, SequenceFactory, StepFactory
from subscribers.models import Contact, ContactEvent
from subscribers.tests.factories import ContactFactory

MONDAY = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(weeks=1)


# Cohorts ----------------------------------------------------------------------------------------


def test_members_join_the_cohort_of_their_monday_and_count_in_the_weeks_they_engaged():
    joined = {1: MONDAY, 2: MONDAY + 6 * DAY, 3: MONDAY + 7 * DAY}
    engaged = [
        (1, MONDAY + DAY),  # week 0
        (1, MONDAY + DAY + 2 * DAY),  # week 0 again: counted once
        (2, MONDAY + 6 * DAY + 8 * DAY),  # week 1 after its own join
        (3, MONDAY + 7 * DAY + 15 * DAY),  # week 2
        (1, MONDAY - DAY),  # before joining: ignored
        (9, MONDAY),  # not a member
    ]
    rows = cohort_matrix(joined=joined, engaged=engaged, weeks=5, now=MONDAY + 30 * DAY)
    assert [(row.cohort_start, row.size) for row in rows] == [(MONDAY.date(), 2), ((MONDAY + WEEK).date(), 1)]
    assert rows[0].retained == [1, 1, 0, 0, 0]
    assert rows[0].shares == [0.5, 0.5, 0.0, 0.0, 0.0]
    # Week 4 of the second cohort begins on day 35, after now: not known yet.
    assert rows[1].retained == [0, 0, 1, 0, None]
    assert rows[1].shares == [0.0, 0.0, 1.0, 0.0, None]


def test_engagement_beyond_the_last_week_shown_is_left_out():
    rows = cohort_matrix(joined={1: MONDAY}, engaged=[(1, MONDAY + 30 * DAY)], weeks=2, now=MONDAY + 60 * DAY)
    assert rows[0].retained == [0, 0]


@pytest.mark.django_db
def test_cohorts_count_people_not_machines_and_only_their_organization():
    organization, other = OrganizationFactory(), OrganizationFactory()
    sequence = SequenceFactory(organization=organization)
    step = StepFactory(
        sequence=sequence, position=1, kind=Step.Kind.EMAIL, template=EmailTemplateFactory(organization=organization)
    )
    people = ContactFactory.create_batch(4, organization=organization)
    Contact.objects.filter(pk__in=[person.pk for person in people]).update(created_at=MONDAY)
    ContactFactory(organization=other)
    for index, person in enumerate(people):
        message = MessageFactory(enrollment=enrollment_for(sequence, person, enrolled_at=MONDAY), step=step)
        if index == 0:
            EventFactory(message=message, type=Event.Type.OPEN, occurred_at=MONDAY + DAY)
            EventFactory(message=message, type=Event.Type.CLICK, occurred_at=MONDAY + 8 * DAY)
        if index == 1:
            EventFactory(message=message, type=Event.Type.OPEN, occurred_at=MONDAY + DAY, is_machine=True)
        if index == 2:
            EventFactory(message=message, type=Event.Type.UNSUBSCRIBE, occurred_at=MONDAY + DAY)

    for basis in customer_selectors.CohortBasis.ALL:
        rows = customer_selectors.customer_cohorts(
            organization=organization, basis=basis, cohorts=2, weeks=3, now=MONDAY + 10 * DAY
        )
        assert [(row.cohort_start, row.size, row.retained) for row in rows] == [(MONDAY.date(), 4, [1, 1, None])]
    # The outsider's one contact joined outside these weeks; none of the four appears.
    assert (
        customer_selectors.customer_cohorts(
            organization=other, basis="signup", cohorts=2, weeks=3, now=MONDAY + 10 * DAY
        )
        == []
    )


# RFM --------------------------------------------------------------------------------------------


def test_quintile_scores_run_from_one_to_five_and_ties_share_a_score():
    assert quintile_scores([10, 20, 30, 40, 50]) == [1, 2, 3, 4, 5]
    assert quintile_scores(list(range(10))) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores([7, 7, 7]) == [4, 4, 4]
    assert quintile_scores([1]) == [5]
    assert quintile_scores([]) == []


@pytest.mark.parametrize(
    ("recency", "frequency", "monetary", "segment"),
    [
        (5, 5, 5, Segment.CHAMPIONS),
        (4, 4, 3, Segment.CHAMPIONS),
        (5, 3, 2, Segment.POTENTIAL_LOYALIST),
        (5, 1, 1, Segment.NEW),
        (3, 5, 4, Segment.LOYAL),
        (3, 1, 2, Segment.HIBERNATING),
        (1, 5, 5, Segment.CANT_LOSE),
        (2, 4, 3, Segment.AT_RISK),
        (2, 1, 2, Segment.HIBERNATING),
        (1, 1, 1, Segment.LOST),
    ],
)
def test_segments_follow_the_documented_grid(recency, frequency, monetary, segment):
    assert rfm_segment(recency, frequency, monetary) == segment


def test_every_score_combination_has_a_segment():
    cells = {rfm_segment(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert cells == set(Segment)


def test_rfm_scores_the_recent_frequent_big_spender_highest():
    now = MONDAY + 100 * DAY
    conversions = [
        *[Conversion(1, now - index * DAY, 100.0) for index in range(1, 6)],  # recent, often, much
        Conversion(2, now - 90 * DAY, 5.0),  # long ago, once, little
        *[Conversion(3, now - (40 + index) * DAY, 50.0) for index in range(3)],
        Conversion(4, now - 2 * DAY, 10.0),
        Conversion(5, now - 60 * DAY, 20.0),
    ]
    scores = {score.contact_id: score for score in rfm_scores(conversions, now=now)}
    assert scores[1].recency_days == pytest.approx(1.0)
    assert (scores[1].frequency, scores[1].monetary) == (5, 500.0)
    assert (scores[1].recency_score, scores[1].frequency_score, scores[1].monetary_score) == (5, 5, 5)
    assert scores[1].segment == Segment.CHAMPIONS
    assert (scores[2].recency_score, scores[2].frequency_score, scores[2].monetary_score) == (
        1,
        2,
        1,
    )  # three one-time buyers share the middle rank 2 of 5
    assert scores[2].segment == Segment.LOST
    assert scores[4].segment == Segment.POTENTIAL_LOYALIST


@pytest.mark.parametrize(
    ("properties", "revenue"),
    [
        ({"revenue": 12.5}, 12.5),
        ({"revenue": "19.90"}, 19.9),
        ({"value": 7}, 7.0),
        ({"amount": "3"}, 3.0),
        ({"revenue": 2, "value": 99}, 2.0),
        ({"revenue": "twelve"}, 0.0),
        ({"revenue": True}, 0.0),
        ({"revenue": -5}, 0.0),
        ({"revenue": "NaN"}, 0.0),
        ({"revenue": "Infinity"}, 0.0),
        ({"revenue": [1]}, 0.0),
        ({"revenue": None}, 0.0),
        ({}, 0.0),
        ("not a dict", 0.0),
    ],
)
def test_revenue_is_read_from_the_first_revenue_property_and_bad_values_count_as_none(properties, revenue):
    assert customer_selectors.revenue_of(properties) == revenue


@pytest.mark.django_db
def test_rfm_report_reads_the_named_purchase_events_of_the_organization_only():
    organization, other = OrganizationFactory(), OrganizationFactory()
    buyer, browser = ContactFactory.create_batch(2, organization=organization)
    outsider = ContactFactory(organization=other)
    now = MONDAY + 30 * DAY
    for contact, name, properties in [
        (buyer, "purchase", {"revenue": "10.50"}),
        (buyer, "order", {"value": 4}),
        (buyer, "purchase", {"revenue": "oops"}),
        (browser, "page_view", {"revenue": 1000}),
        (outsider, "purchase", {"revenue": 1000}),
    ]:
        ContactEvent.objects.create(
            organization=contact.organization, contact=contact, name=name, properties=properties, occurred_at=MONDAY
        )

    report = customer_selectors.customer_rfm(organization=organization, event_names=["purchase", "order"], now=now)

    assert report.customers == 1
    assert [(score.contact_id, score.frequency, score.monetary) for score in report.scores] == [
        (buyer.pk, 3, pytest.approx(float(Decimal("14.5"))))
    ]
    assert report.emails == {buyer.pk: buyer.email}
    assert sum(segment["customers"] for segment in report.segments) == 1
