"""The six core endpoint names of the seeds, end to end: a sequence created with its steps,
read, updated, activated, given subscribers, and its analytics after real sends, opens and
clicks (people's and machines' counted apart)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.test import Client

from analytics import services as analytics_services
from api.tests.clients import key_client
from delivery.models import Event
from delivery.tests.factories import BROWSER
from organizations.models import ApiKey
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment, Sequence
from sequences.tests.helpers import captured_mail, template, tick, utc
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

START = utc(2025, 3, 3, 12)
LINK_SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"


def tracking_paths(mail) -> tuple[str, str]:
    """The open pixel's path and the first tracked link's path in a sent email."""
    html = mail.get_body(("html",)).get_content()
    pixel = re.search(r'src="https?://[^/"]+(/t/o/[^"]+\.gif)"', html).group(1)
    link = re.search(r'href="https?://[^/"]+(/t/c/[^"]+)"', html).group(1)
    return pixel, link


def test_the_seed_endpoints_create_read_update_activate_enroll_and_report(django_capture_on_commit_callbacks):
    organization = OrganizationFactory()
    client = key_client(organization)
    welcome = client.post(
        "/api/v1/templates/",
        {
            "name": "Welcome",
            "subject": "Welcome {{ contact.first_name }}",
            "html_body": '<html><body><p>Hi</p><a href="https://shop.example.com/start">Start</a></body></html>',
        },
        format="json",
    ).json()
    nudge = template(organization, subject="Did you see this?")
    ann, bob, cem = (ContactFactory(organization=organization, email=f"{name}@example.com") for name in "abc")

    created = client.post(
        "/api/v1/email-sequences",
        {
            "name": "Onboarding",
            "from_email": "team@example.com",
            "steps": [
                {"kind": "email", "template_id": welcome["id"], "name": "Welcome"},
                {"kind": "delay", "delay": "P2D"},
                {"kind": "condition", "condition": {"type": "opened", "step": 1}, "yes_step": 4, "no_step": 5},
                {"kind": "exit"},
                {"kind": "email", "template_id": nudge.pk},
            ],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    sequence_id = created.json()["id"]
    assert created.json()["status"] == "draft"

    read = client.get(f"/api/v1/email-sequences/{sequence_id}")
    assert read.status_code == 200
    steps = read.json()["steps"]
    assert [step["kind"] for step in steps] == ["email", "delay", "condition", "exit", "email"]
    assert steps[1]["delay"] == "P2DT00H00M00S" and steps[1]["delay_seconds"] == 2 * 86400
    assert steps[2]["condition"] == {"type": "opened", "step": 1}
    assert (steps[2]["yes_step"], steps[2]["no_step"]) == (4, 5)

    steps[1] = {"id": steps[1]["id"], "kind": "delay", "delay_seconds": 3600}
    updated = client.put(
        f"/api/v1/email-sequences/{sequence_id}",
        {"name": "Onboarding v2", "from_email": "team@example.com", "steps": steps},
        format="json",
    )
    assert updated.status_code == 200, updated.json()
    assert updated.json()["name"] == "Onboarding v2"
    assert [step["id"] for step in updated.json()["steps"]] == [step["id"] for step in read.json()["steps"]]
    assert updated.json()["steps"][1]["delay"] == "P0DT01H00M00S"

    activated = client.post(f"/api/v1/email-sequences/{sequence_id}/activate")
    assert activated.status_code == 200 and activated.json()["status"] == "active"

    with time_machine.travel(START, tick=False):
        enrolled = client.post(
            f"/api/v1/email-sequences/{sequence_id}/subscribers",
            {"emails": [ann.email, bob.email.upper(), cem.email, "nobody@example.com"]},
            format="json",
        )
        assert enrolled.status_code == 201, enrolled.json()
        assert enrolled.json()["enrolled"] == 3
        assert enrolled.json()["skipped"] == 1
        assert enrolled.json()["skipped_reasons"]["unknown_email"] == 1
        assert enrolled.json()["unknown_emails"] == ["nobody@example.com"]
        tick(django_capture_on_commit_callbacks)

    mail = {str(message["To"]): message for message in captured_mail(organization)}
    assert set(mail) == {ann.email, bob.email, cem.email}
    assert str(mail[ann.email]["Subject"]) == f"Welcome {ann.first_name}"
    with time_machine.travel(START + dt.timedelta(minutes=30), tick=False):
        ann_pixel, ann_link = tracking_paths(mail[ann.email])
        bob_pixel, bob_link = tracking_paths(mail[bob.email])
        _, cem_link = tracking_paths(mail[cem.email])
        browser, scanner = Client(HTTP_USER_AGENT=BROWSER), Client(HTTP_USER_AGENT=LINK_SCANNER)
        assert browser.get(ann_pixel).status_code == 200
        assert browser.get(ann_pixel).status_code == 200  # opened twice, counted once
        assert scanner.get(bob_pixel).status_code == 200
        assert scanner.get(bob_link).status_code == 302
        assert browser.get(cem_link).status_code == 302  # a click proves an open
    assert Event.objects.filter(is_machine=True).count() == 2

    # The hour's delay is over: Ann and Cem opened (exit), Bob gets the nudge.
    with time_machine.travel(START + dt.timedelta(hours=2), tick=False):
        tick(django_capture_on_commit_callbacks)
    assert [str(message["To"]) for message in captured_mail(organization)].count(bob.email) == 2

    analytics_services.rollups_flush()  # what the periodic flush does
    analytics = key_client(organization, ApiKey.Scope.READ).get(f"/api/v1/email-sequences/{sequence_id}/analytics")
    assert analytics.status_code == 200
    body = analytics.json()
    first, second = body["steps"]
    assert (first["position"], second["position"]) == (1, 5)
    picked = (
        "reached",
        "sent",
        "delivered",
        "bounced",
        "failed",
        "cancelled",
        "opened",
        "machine_opened",
        "clicked",
        "machine_clicked",
        "unsubscribed",
        "complained",
    )
    assert {name: first["counts"][name] for name in picked} == {
        "reached": 3,
        "sent": 3,
        "delivered": 3,
        "bounced": 0,
        "failed": 0,
        "cancelled": 0,
        "opened": 2,
        "machine_opened": 1,
        "clicked": 1,
        "machine_clicked": 1,
        "unsubscribed": 0,
        "complained": 0,
    }
    assert second["counts"]["sent"] == 1 and second["counts"]["opened"] == 0
    assert body["totals"]["counts"]["sent"] == 4 and body["totals"]["counts"]["opened"] == 2
    assert body["totals"]["counts"]["enrolled"] == 3
    assert Enrollment.objects.filter(sequence_id=sequence_id, status=Enrollment.Status.EXITED).count() == 2
    assert Enrollment.objects.get(contact=bob).status == Enrollment.Status.COMPLETED
    assert Sequence.objects.get(pk=sequence_id).name == "Onboarding v2"
