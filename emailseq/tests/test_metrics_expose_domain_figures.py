"""GET /metrics: django-prometheus's metrics plus the product's own, counted at scrape time:
messages by status, failed and bounced ones by reason (from what delivery really records),
events by type, custom events, the due backlogs and imports. Behind a bearer token when
METRICS_TOKEN is set."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from conftest import SmtpServer
from delivery import services as delivery_services
from delivery.models import Event, Message
from delivery.tests.factories import EventFactory, email_sequence, enrollment_for, queued_message, send, write_messages
from organizations.tests.factories import OrganizationFactory
from subscribers.models import ContactEvent, ContactImport
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

LOOPING = "<p>{% for i in (1..contact.properties.stars) %}*{% endfor %}</p>"
SAMPLE = re.compile(r"^(?P<name>emailseq_[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(client: Client | None = None, **headers: str) -> dict[str, float]:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for line in response.content.decode().splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = ",".join(sorted((match["labels"] or "").split(","))) if match["labels"] else ""
            samples[f"{match['name']}{{{labels}}}" if labels else match["name"]] = float(match["value"])
    return samples


def test_message_figures_count_each_status_and_each_reason_delivery_records(settings, smtp_route: SmtpServer):
    settings.TEMPLATE_LOOP_LIMIT = 50
    settings.SEND_MAX_ATTEMPTS = 1
    organization = OrganizationFactory()
    sequence = email_sequence(organization, html_body=LOOPING)
    people = {
        name: ContactFactory(organization=organization, email=f"{name}@example.com", properties={"stars": 2})
        for name in ("sent", "bounced", "refused", "exhausted")
    }
    looping = ContactFactory(organization=organization, properties={"stars": 5000})
    smtp_route.reply_to_rcpt("bounced@example.com", "550 5.1.1 User unknown")
    smtp_route.reply_to_rcpt("refused@example.com", "554 5.7.1 Relay access denied")
    smtp_route.reply_to_rcpt("exhausted@example.com", "451 4.7.1 Try again later")
    send(*write_messages(sequence, *people.values(), looping))
    # A message whose worker died once too often.
    lost = queued_message(
        email_sequence(organization),
        ContactFactory(organization=organization),
        status=Message.Status.SENDING,
        attempts=settings.SEND_MAX_ATTEMPTS,
        lease_expires_at=timezone.now() - dt.timedelta(minutes=1),
    )
    delivery_services.messages_sweep()
    assert Message.objects.get(pk=lost.pk).status == Message.Status.FAILED
    queued_message(email_sequence(organization), ContactFactory(organization=organization))

    samples = scrape()

    assert samples['emailseq_messages{status="sent"}'] == 1
    assert samples['emailseq_messages{status="bounced"}'] == 1
    assert samples['emailseq_messages{status="failed"}'] == 4
    assert samples['emailseq_messages{status="queued"}'] == 1
    assert samples['emailseq_messages{status="cancelled"}'] == 0
    failures = {key: value for key, value in samples.items() if key.startswith("emailseq_messages_failed{")}
    assert failures == {
        'emailseq_messages_failed{reason="address_rejected",status="bounced"}': 1,
        'emailseq_messages_failed{reason="refused",status="failed"}': 1,
        'emailseq_messages_failed{reason="attempts_exhausted",status="failed"}': 1,
        'emailseq_messages_failed{reason="render_failed",status="failed"}': 1,
        'emailseq_messages_failed{reason="worker_lost",status="failed"}': 1,
    }


def test_event_backlog_and_import_figures_are_counted():
    organization = OrganizationFactory()
    sequence = email_sequence(organization)
    contacts = ContactFactory.create_batch(4, organization=organization)
    now = timezone.now()
    enrollment_for(sequence, contacts[0], next_run_at=now - dt.timedelta(minutes=10))
    enrollment_for(sequence, contacts[1], next_run_at=now - dt.timedelta(minutes=1))
    enrollment_for(sequence, contacts[2], next_run_at=now + dt.timedelta(days=1))
    message = queued_message(email_sequence(organization), contacts[3], next_attempt_at=now - dt.timedelta(seconds=5))
    EventFactory.create_batch(3, message=message, type=Event.Type.OPEN)
    EventFactory(message=message, type=Event.Type.OPEN, is_machine=True, machine_reason="prefetch")
    EventFactory(message=message, type=Event.Type.CLICK)
    ContactEvent.objects.create(organization=organization, contact=contacts[0], name="signup", occurred_at=now)
    for token, status, rows in (("a", "running", 1200), ("b", "running", 300), ("c", "completed", 5000)):
        ContactImport.objects.create(
            organization=organization, token=token, file=f"imports/{token}.csv", status=status, rows_processed=rows
        )

    samples = scrape()

    assert samples['emailseq_events{machine="false",type="open"}'] == 3
    assert samples['emailseq_events{machine="true",type="open"}'] == 1
    assert samples['emailseq_events{machine="false",type="click"}'] == 1
    assert samples['emailseq_events{machine="false",type="complaint"}'] == 0
    assert samples["emailseq_custom_events"] == 1
    assert samples["emailseq_enrollments_due"] == 2
    assert 600 <= samples["emailseq_enrollments_due_oldest_seconds"] < 660
    assert samples["emailseq_messages_due"] == 1
    assert samples['emailseq_imports{status="running"}'] == 2
    assert samples['emailseq_imports{status="completed"}'] == 1
    assert samples['emailseq_imports{status="queued"}'] == 0
    assert samples["emailseq_imports_running_rows_processed"] == 1500
    assert samples["emailseq_domain_metrics_available"] == 1


def test_the_figures_carry_no_organization_and_each_appears_once_beside_django_prometheus():
    OrganizationFactory(name="Secret Customer Inc")

    text = Client().get("/metrics").content.decode()

    assert "django_http_requests_total_by_method_total" in text
    assert text.count("# TYPE emailseq_messages gauge") == 1
    domain_lines = [line for line in text.splitlines() if line.startswith("emailseq_")]
    assert domain_lines and not [line for line in domain_lines if "organization" in line]
    assert "Secret Customer" not in text


def test_with_a_metrics_token_only_its_bearer_may_scrape(settings):
    settings.METRICS_TOKEN = "s3cret-token"

    missing = Client().get("/metrics")
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-it")

    assert missing.status_code == wrong.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert "emailseq_" not in missing.content.decode() + wrong.content.decode()
    assert scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")["emailseq_domain_metrics_available"] == 1
