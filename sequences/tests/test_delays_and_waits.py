"""Delays and wait-until steps: the engine keeps the waiting time in next_run_at, and a
wait-until targets a time of day on allowed weekdays in the contact's own time zone."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment, Step
from sequences.tests.helpers import captured_mail, delay_step, draft_sequence, email_step, tick, utc
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

MONDAY_NOON = utc(2025, 3, 3, 12)
WEEKDAYS = [0, 1, 2, 3, 4]


def wait_until_sequence(organization, at: dt.time, days: list[int]):
    """wait-until `at` on `days`, then an email."""
    sequence = draft_sequence(organization)
    wait = services.step_create(sequence=sequence, kind=Step.Kind.WAIT_UNTIL, wait_until_time=at, wait_until_days=days)
    after = email_step(sequence, "After the wait")
    services.sequence_activate(sequence=sequence)
    return sequence, wait, after


def test_a_delay_holds_the_next_email_until_it_is_due(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(sequence, "Welcome")
    delay_step(sequence, dt.timedelta(days=2))
    second = email_step(sequence, "Two days later")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization)

    with time_machine.travel(MONDAY_NOON, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["Welcome"]
    assert enrollment.current_step == second
    assert enrollment.next_run_at == MONDAY_NOON + dt.timedelta(days=2)

    with time_machine.travel(MONDAY_NOON + dt.timedelta(days=2, minutes=-1), tick=False):
        report = tick(django_capture_on_commit_callbacks)
    assert report.claimed == 0
    assert Message.objects.filter(enrollment=enrollment).count() == 1

    with time_machine.travel(MONDAY_NOON + dt.timedelta(days=2, minutes=1), tick=False):
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["Welcome", "Two days later"]
    assert enrollment.status == Enrollment.Status.COMPLETED


def test_consecutive_delays_add_up(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    delay_step(sequence, dt.timedelta(hours=5))
    delay_step(sequence, dt.timedelta(hours=7))
    email_step(sequence, "Twelve hours later")
    services.sequence_activate(sequence=sequence)

    with time_machine.travel(MONDAY_NOON, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=ContactFactory(organization=organization))
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(MONDAY_NOON + dt.timedelta(hours=5), tick=False):
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert enrollment.next_run_at == MONDAY_NOON + dt.timedelta(hours=12)
    assert not Message.objects.exists()

    with time_machine.travel(MONDAY_NOON + dt.timedelta(hours=12), tick=False):
        tick(django_capture_on_commit_callbacks)
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["Twelve hours later"]


def test_wait_until_later_today_in_the_contacts_time_zone() -> None:
    organization = OrganizationFactory(timezone="UTC")
    sequence, _wait, after = wait_until_sequence(organization, dt.time(22, 30), list(range(7)))
    # 12:00 UTC is 21:00 in Tokyo: 22:30 there is 13:30 UTC the same day.
    contact = ContactFactory(organization=organization, timezone="Asia/Tokyo")
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=MONDAY_NOON)

    engine.advance_due_enrollments(now=MONDAY_NOON)

    enrollment.refresh_from_db()
    assert enrollment.current_step == after
    assert enrollment.next_run_at == utc(2025, 3, 3, 13, 30)
    assert not Message.objects.exists()


def test_wait_until_a_time_already_passed_today_waits_for_the_next_allowed_weekday() -> None:
    organization = OrganizationFactory()
    sequence, _wait, _after = wait_until_sequence(organization, dt.time(9, 0), WEEKDAYS)
    # Friday 15:00 UTC is 10:00 in New York, past 9:00: the next weekday is Monday, when New
    # York is already on summer time (from Sunday 9 March 2025), so 9:00 there is 13:00 UTC.
    contact = ContactFactory(organization=organization, timezone="America/New_York")
    friday = utc(2025, 3, 7, 15)
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=friday)

    engine.advance_due_enrollments(now=friday)

    enrollment.refresh_from_db()
    assert enrollment.next_run_at == utc(2025, 3, 10, 13)


@pytest.mark.parametrize(
    ("saturday", "monday_nine_in_berlin"),
    [
        # Summer time starts on Sunday 30 March 2025: the Monday after is UTC+2.
        (utc(2025, 3, 29, 12), utc(2025, 3, 31, 7)),
        # Summer time ends on Sunday 26 October 2025: the Monday after is UTC+1.
        (utc(2025, 10, 25, 12), utc(2025, 10, 27, 8)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_wait_until_keeps_the_local_time_of_day_across_a_daylight_saving_change(
    saturday: dt.datetime, monday_nine_in_berlin: dt.datetime
) -> None:
    organization = OrganizationFactory()
    sequence, _wait, _after = wait_until_sequence(organization, dt.time(9, 0), [0])
    contact = ContactFactory(organization=organization, timezone="Europe/Berlin")
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=saturday)

    engine.advance_due_enrollments(now=saturday)

    enrollment.refresh_from_db()
    assert enrollment.next_run_at == monday_nine_in_berlin


def test_a_contact_without_a_time_zone_waits_in_the_organizations_zone() -> None:
    organization = OrganizationFactory(timezone="Asia/Kolkata")
    sequence, _wait, _after = wait_until_sequence(organization, dt.time(20, 0), list(range(7)))
    contact = ContactFactory(organization=organization, timezone="")
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=MONDAY_NOON)

    engine.advance_due_enrollments(now=MONDAY_NOON)

    enrollment.refresh_from_db()
    # 20:00 in India (UTC+5:30) is 14:30 UTC.
    assert enrollment.next_run_at == utc(2025, 3, 3, 14, 30)


def test_contacts_in_one_batch_each_wait_for_their_own_local_time() -> None:
    organization = OrganizationFactory(timezone="UTC")
    sequence, _wait, _after = wait_until_sequence(organization, dt.time(18, 0), list(range(7)))
    zones = {"Europe/London": utc(2025, 3, 3, 18), "America/Chicago": utc(2025, 3, 4, 0), "": utc(2025, 3, 3, 18)}
    enrollments = {
        zone: services.enrollment_create(
            sequence=sequence, contact=ContactFactory(organization=organization, timezone=zone), now=MONDAY_NOON
        )
        for zone in zones
    }

    report = engine.advance_due_enrollments(now=MONDAY_NOON)

    assert report.claimed == 3
    for zone, expected in zones.items():
        enrollments[zone].refresh_from_db()
        assert enrollments[zone].next_run_at == expected, zone


def test_when_the_wait_until_moment_is_now_the_contact_goes_straight_on(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence, _wait, _after = wait_until_sequence(organization, dt.time(9, 0), WEEKDAYS)
    contact = ContactFactory(organization=organization, timezone="Europe/Paris")
    nine_in_paris = utc(2025, 3, 3, 8)

    with time_machine.travel(nine_in_paris, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)

    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.COMPLETED
    assert [str(mail["Subject"]) for mail in captured_mail(organization)] == ["After the wait"]


def test_the_email_after_a_wait_until_goes_out_when_the_moment_comes(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence, _wait, _after = wait_until_sequence(organization, dt.time(9, 0), WEEKDAYS)
    contact = ContactFactory(organization=organization, timezone="America/New_York")
    friday = utc(2025, 3, 7, 15)
    monday_nine = utc(2025, 3, 10, 13)

    with time_machine.travel(friday, tick=False):
        services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
    with time_machine.travel(monday_nine - dt.timedelta(minutes=1), tick=False):
        tick(django_capture_on_commit_callbacks)
    assert captured_mail(organization) == []

    with time_machine.travel(monday_nine, tick=False):
        tick(django_capture_on_commit_callbacks)
    message = Message.objects.get()
    assert message.status == Message.Status.SENT
    assert message.sent_at == monday_nine
    assert [str(mail["To"]) for mail in captured_mail(organization)] == [contact.email]
