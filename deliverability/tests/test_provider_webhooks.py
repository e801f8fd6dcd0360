"""Provider webhooks, posted in the providers' own formats to the live URLs: verified (basic auth,
and Mailgun's HMAC signature), matched to our message by the provider's id, mapped onto our
events and delivery reports, and applied once however often the provider replays them."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from anymail.signals import AnymailTrackingEvent, EventType
from django.test import Client
from django.utils import timezone

from deliverability import verp
from deliverability.models import BounceReport
from deliverability.tests.bounce_mail import CORPUS
from deliverability.webhooks import tracking_event_apply, webhook_secret_check
from delivery.models import DeliveryRoute, Event, Message
from delivery.tests.factories import (
    BROWSER,
    DeliveryRouteFactory,
    MessageFactory,
    email_sequence,
    email_step,
    enrollment_for,
)
from emailseq.environment import EmailConfig
from organizations.tests.factories import OrganizationFactory
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "anymail-hook:s3cret-pass"
MAILGUN_SIGNING_KEY = "key-0123456789abcdef-test"
POSTMARK_URL = "/webhooks/anymail/postmark/tracking/"
MAILGUN_URL = "/webhooks/anymail/mailgun/tracking/"
POSTMARK_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
MAILGUN_ID = "<20130503182626.18666.16540@mg.example.com>"


@pytest.fixture(autouse=True)
def _anymail(settings) -> None:
    settings.ANYMAIL = {"WEBHOOK_SECRET": [WEBHOOK_SECRET], "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}


def provider_message(provider_message_id: str, *, route_url: str | None = None, **contact_fields: Any) -> Message:
    """A message a provider accepted through one of its organization's routes, with the id it
    gave; the provider is Postmark, or Mailgun for a Mailgun id, unless `route_url` says otherwise."""
    organization = OrganizationFactory()
    if route_url is None:
        route_url = "mailgun://key-test@" if provider_message_id == MAILGUN_ID else "postmark://token-test@"
    kind = DeliveryRoute.Kind.SMTP if route_url.startswith("smtp") else DeliveryRoute.Kind.ANYMAIL
    route = DeliveryRouteFactory(organization=organization, kind=kind, url=route_url)
    contact = ContactFactory(organization=organization, **contact_fields)
    sequence = email_sequence(organization, emails=2)
    return MessageFactory(
        enrollment=enrollment_for(sequence, contact),
        step=email_step(sequence),
        recipient=contact.email,
        route=route,
        provider_message_id=provider_message_id,
        sent_at=timezone.now() - dt.timedelta(hours=1),
    )


def post(url: str, payload: dict[str, Any], *, auth: str | None = WEBHOOK_SECRET) -> Any:
    headers = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    return Client().post(url, data=json.dumps(payload), content_type="application/json", **headers)


def status_of(message: Message) -> str:
    return Contact.objects.values_list("status", flat=True).get(pk=message.contact_id)


def suppression_of(message: Message) -> Suppression | None:
    contact = Contact.objects.get(pk=message.contact_id)
    return Suppression.objects.filter(
        organization_id=contact.organization_id, email_hash=email_hash(contact.email)
    ).first()


# Postmark (https://postmarkapp.com/developer/webhooks) -------------------------------------------


def postmark_bounce(
    email: str, *, bounce_type: str = "HardBounce", details: str = "", record_id: int = 4323372036854775807
):
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": record_id,
        "Type": bounce_type,
        "TypeCode": 1 if bounce_type == "HardBounce" else 4096,
        "Name": "Hard bounce" if bounce_type == "HardBounce" else "Soft bounce",
        "Tag": "welcome",
        "MessageID": POSTMARK_ID,
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": details or "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "news@acme.example",
        "BouncedAt": "2026-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Welcome",
    }


def postmark_complaint(email: str) -> dict[str, Any]:
    complaint = postmark_bounce(email, bounce_type="SpamComplaint", details="Test spam complaint details")
    complaint.update(RecordType="SpamComplaint", TypeCode=512, Name="Spam complaint")
    return complaint


def postmark_open(email: str, user_agent: str) -> dict[str, Any]:
    return {
        "RecordType": "Open",
        "MessageStream": "outbound",
        "FirstOpen": True,
        "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
        "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
        "Platform": "WebMail",
        "UserAgent": user_agent,
        "ReadSeconds": 5,
        "Geo": {"CountryISOCode": "RS", "Country": "Serbia", "City": "Novi Sad", "IP": "188.2.95.4"},
        "MessageID": POSTMARK_ID,
        "Metadata": {},
        "ReceivedAt": timezone.now().isoformat(),
        "Tag": "welcome",
        "Recipient": email,
    }


def test_a_postmark_hard_bounce_bounces_and_suppresses_the_contact_once() -> None:
    message = provider_message(POSTMARK_ID)
    payload = postmark_bounce(message.recipient)

    first, replay = post(POSTMARK_URL, payload), post(POSTMARK_URL, payload)

    assert first.status_code == replay.status_code == 200
    assert status_of(message) == Contact.Status.BOUNCED
    assert suppression_of(message).reason == Suppression.Reason.BOUNCED
    [report] = BounceReport.objects.all()
    assert (report.source, report.classification, report.status, report.reply) == ("webhook", "hard", "5.1.1", "550")
    assert Event.objects.filter(message=message, type=Event.Type.BOUNCE).count() == 1


def test_a_postmark_soft_bounce_counts_without_suppressing() -> None:
    message = provider_message(POSTMARK_ID)

    post(
        POSTMARK_URL,
        postmark_bounce(message.recipient, bounce_type="SoftBounce", details="smtp;452 4.2.2 Mailbox full"),
    )

    assert BounceReport.objects.get().classification == BounceReport.Classification.SOFT
    assert status_of(message) == Contact.Status.ACTIVE and suppression_of(message) is None


def test_a_postmark_spam_complaint_marks_the_contact_complained() -> None:
    message = provider_message(POSTMARK_ID)

    assert post(POSTMARK_URL, postmark_complaint(message.recipient)).status_code == 200

    assert status_of(message) == Contact.Status.COMPLAINED
    assert suppression_of(message).reason == Suppression.Reason.COMPLAINED
    assert Event.objects.filter(message=message, type=Event.Type.COMPLAINT).count() == 1


def test_postmark_opens_become_events_and_a_scanner_is_flagged_as_a_machine() -> None:
    message = provider_message(POSTMARK_ID)

    human = postmark_open(message.recipient, BROWSER)
    post(POSTMARK_URL, human)
    post(POSTMARK_URL, human)  # the same event (Postmark gives opens no id), replayed
    post(POSTMARK_URL, postmark_open(message.recipient, "Mozilla/5.0 (compatible; Barracuda Sentinel)"))

    opens = Event.objects.filter(message=message, type=Event.Type.OPEN).order_by("id")
    assert [(event.is_machine, event.machine_reason) for event in opens] == [(False, ""), (True, "scanner_user_agent")]
    assert opens[0].user_agent == BROWSER


def test_a_postmark_delivery_is_a_delivered_event() -> None:
    message = provider_message(POSTMARK_ID)
    delivery = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": POSTMARK_ID,
        "Recipient": message.recipient,
        "Tag": "welcome",
        "DeliveredAt": "2026-11-05T16:33:54.9070259Z",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }

    post(POSTMARK_URL, delivery)
    post(POSTMARK_URL, delivery)

    [delivered] = Event.objects.filter(type=Event.Type.DELIVERED)
    assert delivered.message_id == message.pk
    assert status_of(message) == Contact.Status.ACTIVE


def test_a_webhook_without_the_secret_is_refused_and_changes_nothing() -> None:
    message = provider_message(POSTMARK_ID)

    wrong = post(POSTMARK_URL, postmark_bounce(message.recipient), auth="anymail-hook:guess")
    missing = post(POSTMARK_URL, postmark_bounce(message.recipient), auth=None)

    assert wrong.status_code == missing.status_code == 400
    assert status_of(message) == Contact.Status.ACTIVE
    assert not BounceReport.objects.exists()


def test_events_of_messages_we_do_not_know_are_ignored_with_200() -> None:
    message = provider_message(POSTMARK_ID)
    stranger = postmark_bounce("someone@example.org")
    stranger["MessageID"] = "00000000-0000-0000-0000-000000000000"

    assert post(POSTMARK_URL, stranger).status_code == 200

    assert not BounceReport.objects.exists() and not Event.objects.exists()
    assert status_of(message) == Contact.Status.ACTIVE


def test_an_event_naming_a_relay_queue_id_reaches_no_message_sent_through_smtp() -> None:
    # An SMTP relay's "250 2.0.0 Ok: queued as 4BxYz12" is stored in the same field; any
    # organization's admin may hold the webhook secret and know another's queue ids.
    relayed = provider_message("4BxYz12", route_url="smtp://relay.example.com:25")
    complaint = postmark_complaint(relayed.recipient)
    complaint["MessageID"] = "4BxYz12"

    assert post(POSTMARK_URL, complaint).status_code == 200

    assert status_of(relayed) == Contact.Status.ACTIVE
    assert not BounceReport.objects.exists() and not Event.objects.exists()


def test_an_event_of_one_provider_reaches_no_message_sent_through_another() -> None:
    sent_by_mailgun = provider_message(POSTMARK_ID, route_url="mailgun://key-test@")

    assert post(POSTMARK_URL, postmark_complaint(sent_by_mailgun.recipient)).status_code == 200

    assert status_of(sent_by_mailgun) == Contact.Status.ACTIVE
    assert not BounceReport.objects.exists()


def test_an_event_matches_a_message_sent_through_a_provider_configured_in_email_url(settings) -> None:
    settings.EMAIL = EmailConfig(kind="anymail", anymail_backend="anymail.backends.postmark.EmailBackend")
    message = provider_message(POSTMARK_ID)
    Message.objects.filter(pk=message.pk).update(route=None)

    outcome = tracking_event_apply(
        event=AnymailTrackingEvent(event_type=EventType.COMPLAINED, message_id=POSTMARK_ID, event_id="c1"),
        esp_name="Postmark",
    )
    elsewhere = tracking_event_apply(
        event=AnymailTrackingEvent(event_type=EventType.COMPLAINED, message_id=POSTMARK_ID, event_id="c2"),
        esp_name="Mailgun",
    )

    assert (outcome, elsewhere) == ("complaint", "unknown message")
    assert status_of(message) == Contact.Status.COMPLAINED


def test_without_a_provider_in_email_url_a_message_sent_without_a_route_matches_nothing() -> None:
    message = provider_message(POSTMARK_ID)
    Message.objects.filter(pk=message.pk).update(route=None)

    outcome = tracking_event_apply(
        event=AnymailTrackingEvent(event_type=EventType.COMPLAINED, message_id=POSTMARK_ID, event_id="c1"),
        esp_name="Postmark",
    )

    assert outcome == "unknown message"
    assert status_of(message) == Contact.Status.ACTIVE


# Mailgun (https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/) -------------


def mailgun_signed(event_data: dict[str, Any], *, token: str, key: str = MAILGUN_SIGNING_KEY) -> dict[str, Any]:
    timestamp = "1529006854"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data}


def mailgun_failed(email: str, *, severity: str = "permanent", code: int = 550, text: str = "") -> dict[str, Any]:
    return {
        "event": "failed",
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1521233195.375624,
        "log-level": "error",
        "severity": severity,
        "reason": "bounce" if severity == "permanent" else "generic",
        "recipient": email,
        "recipient-domain": email.split("@")[1],
        "delivery-status": {
            "attempt-no": 1,
            "code": code,
            "message": text or "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
            "session-seconds": 0.1,
            "mx-host": "mx.example.net",
        },
        "message": {
            "headers": {
                "to": email,
                "message-id": MAILGUN_ID.strip("<>"),
                "from": "news@acme.example",
                "subject": "Welcome",
            },
            "attachments": [],
            "size": 111,
        },
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "user-variables": {},
        "tags": [],
    }


def test_a_mailgun_permanent_failure_bounces_the_contact_once() -> None:
    message = provider_message(MAILGUN_ID)
    payload = mailgun_signed(
        mailgun_failed(message.recipient), token="a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    )

    responses = [post(MAILGUN_URL, payload).status_code for _ in range(3)]

    assert responses == [200, 200, 200]
    assert status_of(message) == Contact.Status.BOUNCED
    [report] = BounceReport.objects.all()
    assert (report.classification, report.status) == ("hard", "5.1.1")
    assert report.dedupe_key == "webhook:mailgun:a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"


def test_a_mailgun_webhook_with_a_bad_signature_is_refused() -> None:
    message = provider_message(MAILGUN_ID)
    forged = mailgun_signed(mailgun_failed(message.recipient), token="b" * 50, key="not-the-key")
    tampered = mailgun_signed(mailgun_failed("someone@example.org"), token="c" * 50)
    tampered = copy.deepcopy(tampered)
    tampered["signature"]["token"] = "d" * 50  # signature no longer matches

    assert post(MAILGUN_URL, forged).status_code == 400
    assert post(MAILGUN_URL, tampered).status_code == 400
    assert status_of(message) == Contact.Status.ACTIVE
    assert not BounceReport.objects.exists()


def test_a_mailgun_temporary_failure_counts_only_when_the_mailbox_is_full() -> None:
    greylisted = provider_message(MAILGUN_ID)

    post(
        MAILGUN_URL,
        mailgun_signed(
            mailgun_failed(greylisted.recipient, severity="temporary", code=451, text="4.7.1 Greylisted"),
            token="e" * 50,
        ),
    )
    assert not BounceReport.objects.exists()

    post(
        MAILGUN_URL,
        mailgun_signed(
            mailgun_failed(greylisted.recipient, severity="temporary", code=452, text="4.2.2 Mailbox full"),
            token="f" * 50,
        ),
    )
    assert BounceReport.objects.get().classification == BounceReport.Classification.SOFT
    assert status_of(greylisted) == Contact.Status.ACTIVE


@pytest.mark.parametrize(
    ("event", "status", "event_type"),
    [
        ("complained", Contact.Status.COMPLAINED, Event.Type.COMPLAINT),
        ("unsubscribed", Contact.Status.UNSUBSCRIBED, Event.Type.UNSUBSCRIBE),
    ],
)
def test_mailgun_complaints_and_unsubscribes_stop_all_mail(event: str, status: str, event_type: str) -> None:
    message = provider_message(MAILGUN_ID)
    event_data = {
        "event": event,
        "id": "-Agny091SquKnsrW2NEKUA",
        "timestamp": 1521233123.501324,
        "log-level": "warn",
        "recipient": message.recipient,
        "message": {"headers": {"message-id": MAILGUN_ID.strip("<>")}},
        "user-variables": {},
        "tags": [],
    }

    assert post(MAILGUN_URL, mailgun_signed(event_data, token="1" * 50)).status_code == 200

    assert status_of(message) == status
    assert suppression_of(message) is not None
    assert Event.objects.filter(message=message, type=event_type).count() == 1


def test_a_mailgun_click_is_a_click_event_with_its_url() -> None:
    message = provider_message(MAILGUN_ID)
    event_data = {
        "event": "clicked",
        "id": "Ase7i2zsRYeDXztHGENqRA",
        "timestamp": time.time(),
        "log-level": "info",
        "recipient": message.recipient,
        "url": "https://shop.example.com/new",
        "client-info": {"client-name": "Chrome", "client-type": "browser", "user-agent": BROWSER},
        "message": {"headers": {"message-id": MAILGUN_ID.strip("<>")}},
        "user-variables": {},
        "tags": [],
    }

    post(MAILGUN_URL, mailgun_signed(event_data, token="2" * 50))

    [click] = Event.objects.filter(type=Event.Type.CLICK)
    assert (click.message_id, click.url, click.is_machine) == (message.pk, "https://shop.example.com/new", False)


# Inbound: a provider receiving mail for the bounce domain --------------------------------------


def test_a_dsn_received_by_a_providers_inbound_webhook_is_applied_like_one_received_over_smtp(settings) -> None:
    settings.BOUNCE_DOMAIN = "bounces.example.test"
    message = provider_message(POSTMARK_ID, email="kijitora@example.co.jp")
    return_path = verp.return_path(message.pk)
    dsn = (CORPUS / "lhost-postfix-04.eml").read_text()
    inbound = {
        "FromName": "Mail Delivery System",
        "From": "MAILER-DAEMON@mv-osn-hcb007.ocn.ad.jp",
        "FromFull": {"Email": "MAILER-DAEMON@mv-osn-hcb007.ocn.ad.jp", "Name": "Mail Delivery System"},
        "To": return_path,
        "ToFull": [{"Email": return_path, "Name": ""}],
        "OriginalRecipient": return_path,
        "Subject": "Undelivered Mail Returned to Sender",
        "MessageID": "22c74902-a0c1-4511-804f-341342852c90",
        "Date": "Mon, 24 May 2010 19:06:50 +0900",
        "Headers": [{"Name": "Return-Path", "Value": "<>"}],
        "RawEmail": dsn,
    }

    assert post("/webhooks/anymail/postmark/inbound/", inbound).status_code == 200

    assert status_of(message) == Contact.Status.BOUNCED
    report = BounceReport.objects.get()
    assert (report.source, report.classification, report.status) == ("inbound", "hard", "5.1.1")


def test_a_deployment_sending_through_a_provider_without_a_webhook_secret_is_warned_about(settings) -> None:
    settings.EMAIL = EmailConfig(kind="anymail", anymail_backend="anymail.backends.mailgun.EmailBackend")
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}
    assert [warning.id for warning in webhook_secret_check(None)] == ["deliverability.W001"]

    settings.EMAIL = EmailConfig(kind="smtp", host="smtp.example.com", port=25)
    assert webhook_secret_check(None) == []

    settings.EMAIL = EmailConfig(kind="anymail", anymail_backend="anymail.backends.mailgun.EmailBackend")

    settings.ANYMAIL = {"WEBHOOK_SECRET": [WEBHOOK_SECRET]}
    assert webhook_secret_check(None) == []
