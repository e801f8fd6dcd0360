"""A test email of a template, sent over the API through the configured route: one real email,
subject marked "[Test] ", never tracked, recorded as no contact's message; a refusing server is
a 502 and a route that is down a 503."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client, role_client
from conftest import free_port
from delivery.models import Event, Message
from delivery.tests.factories import captured_mail
from emailseq.environment import EmailConfig
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory
from sequences.tests.factories import HTML, EmailTemplateFactory, SequenceFactory
from subscribers import services as subscriber_services
from subscribers.models import Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def organization():
    return OrganizationFactory(name="Acme")


@pytest.fixture
def welcome(organization):
    return EmailTemplateFactory(organization=organization, subject="Hello {{ contact.first_name }}", html_body=HTML)


def send_test(organization, template, body):
    return key_client(organization).post(f"/api/v1/templates/{template.pk}/test-send/", body, format="json")


def test_a_test_email_goes_over_smtp_untracked_and_recorded_nowhere(organization, welcome, smtp_route):
    contact = ContactFactory(organization=organization, first_name="Zoë")
    SequenceFactory(organization=organization, from_name="Acme Team", from_email="team@acme.example")

    response = send_test(organization, welcome, {"to": "Reviewer@Example.com", "contact_id": contact.pk})

    assert response.status_code == 200, response.json()
    assert response.json()["to"] == "reviewer@example.com" and response.json()["route"] == "smtp"
    [mail] = smtp_route.wait_for(1)
    assert mail.recipients == ("reviewer@example.com",)
    assert str(mail.parsed()["Subject"]) == "[Test] Hello Zoë"
    html = mail.html()
    assert "Hello Zoë" in html and 'href="https://example.com/one"' in html
    assert "/t/o/" not in html and "/t/c/" not in html
    assert not Message.objects.exists() and not Event.objects.exists()


def test_the_sender_is_that_of_the_sequence_named(organization, welcome, smtp_route):
    SequenceFactory(organization=organization, from_email="first@acme.example")
    chosen = SequenceFactory(organization=organization, from_name="Sales", from_email="sales@acme.example")

    response = send_test(organization, welcome, {"to": "reviewer@example.com", "sequence_id": chosen.pk})

    assert response.status_code == 200
    [mail] = smtp_route.wait_for(1)
    assert mail.mail_from == "sales@acme.example"
    assert str(mail.parsed()["From"]) == "Sales <sales@acme.example>"


def test_a_test_email_lands_in_the_captured_mailbox_by_default(organization, welcome, capture_route):
    response = send_test(organization, welcome, {"to": "reviewer@example.com", "contact": {"first_name": "Ada"}})

    assert response.status_code == 200 and response.json()["route"] == "capture"
    [mail] = captured_mail(organization.pk)
    assert str(mail["To"]) == "reviewer@example.com" and str(mail["Subject"]) == "[Test] Hello Ada"
    assert not Message.objects.exists()


def test_a_retried_test_send_with_the_same_idempotency_key_sends_once(organization, welcome, smtp_route):
    client, url = key_client(organization), f"/api/v1/templates/{welcome.pk}/test-send/"

    first = client.post(url, {"to": "reviewer@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="test-1")
    again = client.post(url, {"to": "reviewer@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="test-1")

    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert len(smtp_route.wait_for(1)) == 1


def test_a_server_that_refuses_the_address_is_a_502_problem(organization, welcome, smtp_route):
    smtp_route.reply_to_rcpt("nobody@example.com", "550 5.1.1 No such user")

    response = send_test(organization, welcome, {"to": "nobody@example.com"})

    assert response.status_code == 502
    assert response["Content-Type"] == "application/problem+json"
    assert "No such user" in response.json()["detail"]


def test_a_route_that_is_down_is_a_503_problem(organization, welcome, settings):
    settings.EMAIL = EmailConfig(kind="smtp", host="127.0.0.1", port=free_port(), timeout=2)

    response = send_test(organization, welcome, {"to": "reviewer@example.com"})

    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"]


def test_a_suppressed_address_gets_no_test_email(organization, welcome, smtp_route):
    subscriber_services.suppression_add(
        organization=organization, email="gone@example.com", reason=Suppression.Reason.UNSUBSCRIBED
    )

    response = send_test(organization, welcome, {"to": "gone@example.com"})

    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "to"
    assert smtp_route.received == []


@pytest.mark.parametrize(
    "body",
    [{}, {"to": "not an address"}, {"to": "a\x00@example.com"}, {"to": "x@example.com", "contact_id": "one"}],
)
def test_a_test_email_needs_a_valid_address(organization, welcome, smtp_route, body):
    assert send_test(organization, welcome, body).status_code == 400
    assert smtp_route.received == []


def test_ids_of_another_organization_are_not_found(organization, welcome, smtp_route):
    other = OrganizationFactory()

    contact = send_test(organization, welcome, {"to": "a@example.com", "contact_id": ContactFactory().pk})
    sequence = send_test(organization, welcome, {"to": "a@example.com", "sequence_id": SequenceFactory().pk})
    template = send_test(other, welcome, {"to": "a@example.com"})

    assert (contact.status_code, sequence.status_code, template.status_code) == (404, 404, 404)
    assert "contact_id" in contact.json()["detail"] and "sequence_id" in sequence.json()["detail"]
    assert smtp_route.received == []


def test_a_viewer_may_preview_but_not_send_a_test(organization, welcome, smtp_route):
    viewer = role_client(organization, Membership.Role.VIEWER)

    sent = viewer.post(f"/api/v1/templates/{welcome.pk}/test-send/", {"to": "a@example.com"}, format="json")
    preview = viewer.post(f"/api/v1/templates/{welcome.pk}/preview/", {}, format="json")

    assert sent.status_code == 403 and preview.status_code == 200
    assert smtp_route.received == []
