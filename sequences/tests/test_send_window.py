"""The send window: an email step outside the sequence's hours and weekdays (in the contact's
local time) waits, on that step, for the next opening, and then sends exactly once."""

from __future__ import annotations

import pytest
import time_machine

from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Enrollment
from sequences.tests.helpers import captured_mail, draft_sequence, email_step, tick, utc
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

WEEKDAYS_NINE_TO_FIVE = {"send_days": [0, 1, 2, 3, 4], "send_start_hour": 9, "send_end_hour": 17}


def windowed_sequence(organization):
    sequence = draft_sequence(organization, **WEEKDAYS_NINE_TO_FIVE)
    step = email_step(sequence, "Inside the window")
    services.sequence_activate(sequence=sequence)
    return sequence, step


def test_an_email_inside_the_contacts_window_goes_out_at_once() -> None:
    organization = OrganizationFactory()
    sequence, _step = windowed_sequence(organization)
    contact = ContactFactory(organization=organization, timezone="America/Los_Angeles")
    monday_ten_in_la = utc(2025, 3, 3, 18)
    services.enrollment_create(sequence=sequence, contact=contact, now=monday_ten_in_la)

    report = engine.advance_due_enrollments(now=monday_ten_in_la)

    assert report.messages_created == 1
    assert Message.objects.get().contact == contact


def test_an_email_before_the_window_opens_waits_on_its_step_until_the_opening(
    django_capture_on_commit_callbacks,
) -> None:
    organization = OrganizationFactory()
    sequence, step = windowed_sequence(organization)
    contact = ContactFactory(organization=organization, timezone="America/Los_Angeles")
    monday_eight_in_la = utc(2025, 3, 3, 16)
    opening = utc(2025, 3, 3, 17)

    with time_machine.travel(monday_eight_in_la, tick=False):
        enrollment = services.enrollment_create(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert not Message.objects.exists()
    assert enrollment.current_step == step
    assert enrollment.next_run_at == opening

    with time_machine.travel(opening, tick=False):
        tick(django_capture_on_commit_callbacks)
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.COMPLETED
    assert Message.objects.get().sent_at == opening
    assert [str(mail["To"]) for mail in captured_mail(organization)] == [contact.email]


def test_after_fridays_closing_the_email_waits_for_monday_morning_local_time() -> None:
    organization = OrganizationFactory()
    sequence, _step = windowed_sequence(organization)
    contact = ContactFactory(organization=organization, timezone="Asia/Tokyo")
    friday_six_pm_in_tokyo = utc(2025, 3, 7, 9)
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=friday_six_pm_in_tokyo)

    engine.advance_due_enrollments(now=friday_six_pm_in_tokyo)

    enrollment.refresh_from_db()
    # Monday 10 March, 9:00 in Tokyo (UTC+9) is midnight UTC.
    assert enrollment.next_run_at == utc(2025, 3, 10, 0)
    assert not Message.objects.exists()


def test_the_opening_is_found_in_local_time_across_a_daylight_saving_change() -> None:
    organization = OrganizationFactory()
    sequence, _step = windowed_sequence(organization)
    contact = ContactFactory(organization=organization, timezone="America/New_York")
    friday_five_pm_in_new_york = utc(2025, 3, 7, 22)
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=friday_five_pm_in_new_york)

    engine.advance_due_enrollments(now=friday_five_pm_in_new_york)

    enrollment.refresh_from_db()
    # New York moves to UTC-4 on Sunday 9 March: Monday 9:00 there is 13:00 UTC, not 14:00.
    assert enrollment.next_run_at == utc(2025, 3, 10, 13)


def test_each_contact_in_a_batch_gets_the_window_of_their_own_time_zone() -> None:
    organization = OrganizationFactory()
    sequence, _step = windowed_sequence(organization)
    london = ContactFactory(organization=organization, timezone="Europe/London")
    tokyo = ContactFactory(organization=organization, timezone="Asia/Tokyo")
    monday_ten_utc = utc(2025, 3, 3, 10)  # 10:00 in London, 19:00 in Tokyo
    services.enrollments_create(sequence=sequence, contacts=[london, tokyo], now=monday_ten_utc)

    engine.advance_due_enrollments(now=monday_ten_utc)

    assert list(Message.objects.values_list("contact", flat=True)) == [london.pk]
    waiting = Enrollment.objects.get(contact=tokyo)
    assert waiting.status == Enrollment.Status.ACTIVE
    assert waiting.next_run_at == utc(2025, 3, 4, 0)  # Tuesday 9:00 in Tokyo


def test_a_contact_without_a_time_zone_gets_the_organizations_window() -> None:
    organization = OrganizationFactory(timezone="America/New_York")
    sequence, _step = windowed_sequence(organization)
    contact = ContactFactory(organization=organization, timezone="")
    monday_one_pm_utc = utc(2025, 3, 3, 13)  # 8:00 in New York, 13:00 in UTC
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=monday_one_pm_utc)

    engine.advance_due_enrollments(now=monday_one_pm_utc)

    enrollment.refresh_from_db()
    assert not Message.objects.exists()
    assert enrollment.next_run_at == utc(2025, 3, 3, 14)


def test_a_closed_weekday_defers_to_the_next_allowed_day_even_inside_the_hours() -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization, send_days=[2], send_start_hour=0, send_end_hour=24)
    email_step(sequence, "Wednesdays only")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization, timezone="UTC")
    enrollment = services.enrollment_create(sequence=sequence, contact=contact, now=utc(2025, 3, 3, 12))

    engine.advance_due_enrollments(now=utc(2025, 3, 3, 12))

    enrollment.refresh_from_db()
    assert enrollment.next_run_at == utc(2025, 3, 5, 0)
