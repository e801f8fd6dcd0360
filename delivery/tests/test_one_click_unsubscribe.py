"""RFC 8058 one-click unsubscribe: a POST to the List-Unsubscribe URL, without login or cookies,
takes effect at once in every sequence of the organization; GET only asks. Links keep working
for a year and across a key rotation. On PostgreSQL + Redis the sends go through a real worker."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from conftest import SmtpServer, WorkerProcesses, wait_until
from delivery import signing
from delivery.composer import unsubscribe_url
from delivery.models import Event, Message
from delivery.tests.factories import email_sequence, enrollment_for, queued_message
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def one_click(url: str, **extra: object):
    """What a mailbox provider sends: a bare POST, no cookies, no CSRF token."""
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        path_of(url), data=ONE_CLICK_BODY, content_type=FORM, secure=url.startswith("https"), **extra
    )
    assert not client.cookies
    return response


def assert_unsubscribed_everywhere(contact: Contact, enrollments: int) -> None:
    contact.refresh_from_db()
    assert contact.status == Contact.Status.UNSUBSCRIBED
    suppression = Suppression.objects.get(organization_id=contact.organization_id, email_hash=email_hash(contact.email))
    assert suppression.reason == Suppression.Reason.UNSUBSCRIBED
    ended = Enrollment.objects.filter(contact=contact)
    assert ended.count() == enrollments
    assert set(ended.values_list("status", "exit_reason")) == {
        (Enrollment.Status.EXITED, Enrollment.ExitReason.UNSUBSCRIBED)
    }
    assert not Message.objects.filter(contact=contact, status__in=[Message.Status.QUEUED, Message.Status.SENDING])


@pytest.fixture
def https_links(settings) -> None:
    # Before send_workers: the worker takes BASE_URL from this process's settings.
    settings.BASE_URL = "https://mail.example.com"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_click_post_unsubscribes_at_once_from_every_sequence_and_nothing_more_is_sent(
    https_links: None, send_workers: WorkerProcesses, smtp_route: SmtpServer
) -> None:
    organization = OrganizationFactory(name="Acme")
    welcome = email_sequence(organization, emails=2, subject="Welcome {n}")
    news = email_sequence(organization, emails=2, subject="News {n}")
    contact, bystander = ContactFactory(organization=organization), ContactFactory(organization=organization)
    for sequence in (welcome, news):
        sequence_services.enrollments_create(sequence=sequence, contacts=[contact, bystander])

    engine.tick()
    smtp_route.wait_for(4)
    sent = Message.objects.filter(status=Message.Status.SENT)
    wait_until(lambda: sent.count() == 4, timeout=30, what="4 sends recorded")
    [mail] = [
        m.parsed()
        for m in smtp_route.received
        if m.recipients == (contact.email,) and "Welcome" in m.parsed()["Subject"]
    ]
    url = re.match(r"<(https://[^>]+)>", mail["List-Unsubscribe"]).group(1)
    assert url.startswith("https://mail.example.com/u/")
    assert mail["List-Unsubscribe-Post"] == ONE_CLICK_BODY

    # Elsewhere in the organization: a message waiting for a retry, and a paused sequence.
    retrying = queued_message(
        email_sequence(organization, subject="Offer {n}"),
        contact,
        attempts=1,
        next_attempt_at=timezone.now() + dt.timedelta(minutes=10),
    )
    paused = email_sequence(organization, subject="Paused {n}")
    sequence_services.enrollments_create(sequence=paused, contacts=[contact])
    sequence_services.sequence_pause(sequence=paused)

    response = one_click(url)

    assert response.status_code == 200
    assert not response.has_header("Location")
    assert not response.has_header("Set-Cookie") and not response.cookies
    assert_unsubscribed_everywhere(contact, enrollments=4)
    retrying.refresh_from_db()
    assert retrying.status == Message.Status.CANCELLED
    [event] = Event.objects.filter(type=Event.Type.UNSUBSCRIBE)
    assert event.contact_id == contact.pk and event.message.sequence_id == welcome.pk
    assert event.detail == "one-click (RFC 8058)"
    assert Enrollment.objects.filter(contact=bystander, status=Enrollment.Status.ACTIVE).count() == 2

    sequence_services.sequence_activate(sequence=paused)
    with time_machine.travel(timezone.now() + dt.timedelta(days=1, minutes=1)):
        engine.tick()
        smtp_route.wait_for(6)
    wait_until(lambda: sent.count() == 6, timeout=30, what="the bystander's second emails recorded")
    wait_until(
        lambda: not Message.objects.filter(status__in=[Message.Status.QUEUED, Message.Status.SENDING]).exists(),
        timeout=30,
        what="nothing left to send",
    )
    received = smtp_route.received
    assert len(received) == 6
    assert [m.recipients for m in received[4:]] == [(bystander.email,), (bystander.email,)]
    assert not Message.objects.filter(contact=contact).exclude(
        status__in=[Message.Status.SENT, Message.Status.CANCELLED]
    )


@pytest.fixture
def contact_with_link(db: None) -> tuple[Contact, str]:
    """A contact in two sequences, and the unsubscribe link of a message it was sent."""
    organization = OrganizationFactory(name="Globex")
    contact = ContactFactory(organization=organization)
    first, second = email_sequence(organization), email_sequence(organization)
    message = queued_message(first, contact, status=Message.Status.SENT, sent_at=timezone.now())
    enrollment_for(second, contact)
    return contact, unsubscribe_url(message.pk, contact.pk)


def test_get_on_the_link_shows_a_confirmation_page_and_changes_nothing(contact_with_link: tuple[Contact, str]) -> None:
    contact, url = contact_with_link
    client = Client()

    for _scanner_and_person in range(2):
        response = client.get(path_of(url))
        assert response.status_code == 200
        page = response.content.decode()
        assert "Globex" in page and contact.email in page
        assert re.search(r'<form method="post"', page)

    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
    assert not Suppression.objects.exists()
    assert Enrollment.objects.filter(contact=contact, status=Enrollment.Status.ACTIVE).count() == 2
    assert not Event.objects.exists()


def test_the_confirmation_form_post_unsubscribes_too(contact_with_link: tuple[Contact, str]) -> None:
    contact, url = contact_with_link

    response = Client(enforce_csrf_checks=True).post(path_of(url))

    assert response.status_code == 200
    assert "unsubscribed" in response.content.decode()
    assert_unsubscribed_everywhere(contact, enrollments=2)
    assert Event.objects.get(type=Event.Type.UNSUBSCRIBE).detail == "unsubscribe page"


def test_a_repeated_one_click_post_answers_the_same_and_records_one_unsubscribe(
    contact_with_link: tuple[Contact, str],
) -> None:
    contact, url = contact_with_link

    assert one_click(url).status_code == 200
    assert one_click(url).status_code == 200

    assert_unsubscribed_everywhere(contact, enrollments=2)
    assert Event.objects.filter(type=Event.Type.UNSUBSCRIBE).count() == 1


def test_the_link_still_works_a_year_later(contact_with_link: tuple[Contact, str]) -> None:
    contact, url = contact_with_link

    with time_machine.travel(timezone.now() + dt.timedelta(days=366)):
        response = one_click(url)

    assert response.status_code == 200
    assert_unsubscribed_everywhere(contact, enrollments=2)


def test_the_link_still_works_after_a_key_rotation_with_the_old_key_in_fallbacks(
    settings,
    contact_with_link: tuple[Contact, str],
) -> None:
    contact, url = contact_with_link
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a freshly rotated key " + "k" * 40

    response = one_click(url)

    assert response.status_code == 200
    assert_unsubscribed_everywhere(contact, enrollments=2)


def test_after_a_rotation_that_drops_the_old_key_the_link_is_refused(
    settings,
    contact_with_link: tuple[Contact, str],
) -> None:
    contact, url = contact_with_link
    settings.SECRET_KEY_FALLBACKS = []
    settings.SECRET_KEY = "a freshly rotated key " + "k" * 40

    assert one_click(url).status_code == 404
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE


def test_the_one_click_post_is_not_redirected_when_https_redirects_are_on(
    settings,
    contact_with_link: tuple[Contact, str],
) -> None:
    contact, url = contact_with_link
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/mailbox/").status_code == 301  # the redirect is on for other pages

    response = one_click(url.replace("https://", "http://"))

    assert response.status_code == 200
    assert_unsubscribed_everywhere(contact, enrollments=2)


def test_the_link_still_works_when_its_message_is_gone(contact_with_link: tuple[Contact, str]) -> None:
    contact, url = contact_with_link
    Message.objects.filter(contact=contact).delete()

    assert one_click(url).status_code == 200

    assert_unsubscribed_everywhere(contact, enrollments=2)
    event = Event.objects.get(type=Event.Type.UNSUBSCRIBE)
    assert (event.contact_id, event.message_id) == (contact.pk, None)


@pytest.mark.parametrize("kind", ["random", "click", "open", "correlation"])
def test_a_forged_or_foreign_token_gets_404_and_changes_nothing(
    contact_with_link: tuple[Contact, str], kind: str
) -> None:
    contact, url = contact_with_link
    message_id, _contact_id = signing.unsign("unsubscribe", url.rsplit("/", 1)[1])
    token = {
        "random": "AAAAAAAAAAEAAAAAAAAAAQAAAAAAAAAAAAAAAAAA",
        "click": signing.sign("click", message_id, 0),
        "open": signing.sign("open", message_id),
        "correlation": signing.sign("correlation", message_id),
    }[kind]

    assert one_click(url.rsplit("/", 1)[0] + "/" + token).status_code == 404
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
    assert not Suppression.objects.exists() and not Event.objects.exists()


def test_a_token_altered_to_name_another_contact_gets_404(contact_with_link: tuple[Contact, str]) -> None:
    contact, url = contact_with_link
    victim = ContactFactory(organization=contact.organization)
    raw = bytearray(base64.urlsafe_b64decode(url.rsplit("/", 1)[1] + "=="))
    raw[8:16] = victim.pk.to_bytes(8, "big")  # the contact id, keeping the original signature
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()

    assert one_click(url.rsplit("/", 1)[0] + "/" + altered).status_code == 404
    victim.refresh_from_db()
    assert victim.status == Contact.Status.ACTIVE
    assert not Suppression.objects.exists() and not Event.objects.exists()
