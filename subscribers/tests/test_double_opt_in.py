"""Double opt-in, end to end over HTTP: a sign-up through the public form, the confirmation email
at a real SMTP server, the link in it followed, the confirmation given by a POST (never by the
GET a link scanner makes), and the contact active with its consent on record. Until then the
contact gets no sequence mail."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import dkim
import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from conftest import SmtpServer
from deliverability.tests.factories import SendingDomainFactory, dkim_dnsfunc, published
from delivery.models import Message
from delivery.tests.factories import email_sequence
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences.models import Enrollment
from sequences.services import SkipReason, enrollments_create
from subscribers import links
from subscribers.models import ConsentRecord, Contact, SubscribeForm
from subscribers.tests.factories import ContactListFactory, SubscribeFormFactory

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SIGN_UP_IP = "203.0.113.7"
CONFIRM_IP = "198.51.100.9"


@pytest.fixture(autouse=True)
def _fresh_budgets() -> None:
    cache.clear()  # the sign-up budgets per client and per address


@pytest.fixture
def form() -> SubscribeForm:
    organization = OrganizationFactory(name="Acme Coffee", double_opt_in=True)
    newsletter = ContactListFactory(organization=organization, name="Newsletter")
    return SubscribeFormFactory(organization=organization, contact_list=newsletter)


def sign_up(client: Client, form: SubscribeForm, capture, email: str = "Ann.Reader@Example.com", **extra):
    """POST the hosted form as a browser would, running what the sign-up does after commit."""
    with capture(execute=True):
        return client.post(
            reverse("subscribers:subscribe", args=[form.token]),
            {"email": email, "first_name": "Ann", **extra},
            HTTP_USER_AGENT=BROWSER,
            REMOTE_ADDR=SIGN_UP_IP,
        )


def confirmation_link(mail_text: str) -> str:
    match = re.search(r"https?://\S+/confirm/\S+", mail_text)
    assert match, mail_text
    return match.group(0)


def test_sign_up_confirmation_email_and_confirmation_make_an_active_contact_with_its_consent(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    answer = sign_up(client, form, django_capture_on_commit_callbacks)

    assert answer.status_code == 200
    assert b"Check your inbox" in answer.content
    contact = Contact.objects.get(organization=form.organization, email="ann.reader@example.com")
    assert contact.status == Contact.Status.PENDING
    assert not contact.lists.exists()
    subscribed = ConsentRecord.objects.get(contact=contact)
    assert subscribed.action == ConsentRecord.Action.SUBSCRIBE
    assert subscribed.source == f"form:{form.pk}"
    assert subscribed.wording == form.consent_wording
    assert (subscribed.ip, subscribed.user_agent) == (SIGN_UP_IP, BROWSER)

    [mail] = smtp_route.wait_for(1, timeout=10)
    assert mail.recipients == ("ann.reader@example.com",)
    message = mail.parsed()
    assert "confirm" in message["Subject"].lower() and "Acme Coffee" in message["Subject"]
    assert message["Message-ID"] and message["Date"]
    assert "Acme Coffee" in message["From"]
    link = confirmation_link(mail.text())
    assert link in mail.html()

    # A link scanner, or the person opening the page: nothing is confirmed yet.
    page = client.get(urlsplit(link).path, HTTP_USER_AGENT="LinkScanner/2.0")
    assert page.status_code == 200
    assert b'<form method="post">' in page.content
    contact.refresh_from_db()
    assert contact.status == Contact.Status.PENDING
    assert not ConsentRecord.objects.filter(action=ConsentRecord.Action.CONFIRM).exists()

    confirmed = client.post(urlsplit(link).path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=CONFIRM_IP)

    assert confirmed.status_code == 200
    assert b"You are subscribed" in confirmed.content
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
    assert contact.consent_ip == CONFIRM_IP and contact.consent_source == f"form:{form.pk}"
    assert list(contact.lists.all()) == [form.contact_list]
    records = list(ConsentRecord.objects.filter(contact=contact).order_by("id"))
    assert [record.action for record in records] == ["subscribe", "confirm"]
    assert records[1].ip == CONFIRM_IP and records[1].user_agent == BROWSER
    assert records[1].detail["sign_up"] == subscribed.pk
    assert records[1].wording == form.consent_wording


def test_confirming_twice_records_one_confirmation(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks
):
    sign_up(client, form, django_capture_on_commit_callbacks)
    record = ConsentRecord.objects.get(action=ConsentRecord.Action.SUBSCRIBE)
    path = urlsplit(links.confirmation_url(record.pk)).path

    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 200

    assert ConsentRecord.objects.filter(action=ConsentRecord.Action.CONFIRM).count() == 1


def test_a_forged_or_altered_confirmation_link_is_refused(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks
):
    sign_up(client, form, django_capture_on_commit_callbacks)
    record = ConsentRecord.objects.get(action=ConsentRecord.Action.SUBSCRIBE)
    genuine = links.confirmation_token(record.pk)
    other_id = links.confirmation_token(record.pk + 1).split(":", 1)[1]
    forged = [
        f"{record.pk}:{genuine.split(':')[1]}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        f"{record.pk + 1}:{other_id}"[: len(genuine)] + "x",
        genuine[:-1] + ("A" if genuine[-1] != "A" else "B"),
        links.preferences_token(record.pk),  # another purpose's signature
        "not-a-token",
    ]

    for token in forged:
        assert client.post(reverse("subscribers:confirm", args=[token])).status_code == 404, token
        assert client.get(reverse("subscribers:confirm", args=[token])).status_code == 404, token

    assert Contact.objects.get().status == Contact.Status.PENDING
    assert not ConsentRecord.objects.filter(action=ConsentRecord.Action.CONFIRM).exists()


def test_an_expired_confirmation_link_is_refused(
    client: Client, form: SubscribeForm, settings, django_capture_on_commit_callbacks
):
    settings.CONFIRMATION_LINK_DAYS = 7
    sign_up(client, form, django_capture_on_commit_callbacks)
    record = ConsentRecord.objects.get(action=ConsentRecord.Action.SUBSCRIBE)
    path = urlsplit(links.confirmation_url(record.pk)).path

    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=7, minutes=1)):
        answer = client.post(path)

    assert answer.status_code == 404
    assert b"not valid or has expired" in answer.content
    assert Contact.objects.get().status == Contact.Status.PENDING


def test_an_unconfirmed_contact_gets_no_sequence_mail(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    sign_up(client, form, django_capture_on_commit_callbacks)
    smtp_route.wait_for(1, timeout=10)  # the confirmation email, and nothing else
    contact = Contact.objects.get()
    sequence = email_sequence(form.organization)

    report = enrollments_create(sequence=sequence, contacts=[contact])

    assert report.enrolled_count == 0
    assert report.skipped == {SkipReason.AWAITING_CONFIRMATION: 1}
    # Even an enrollment written behind the service's back (an older one, a race) sends nothing.
    Enrollment.objects.create(
        organization=form.organization,
        sequence=sequence,
        contact=contact,
        current_step=sequence.steps.order_by("position").first(),
        next_run_at=contact.created_at,
        enrolled_at=contact.created_at,
    )
    with django_capture_on_commit_callbacks(execute=True):
        engine.tick()

    assert not Message.objects.filter(contact=contact, status=Message.Status.SENT).exists()
    assert len(smtp_route.received) == 1
    assert Enrollment.objects.get(contact=contact).status == Enrollment.Status.EXITED


def test_a_confirmed_contact_is_enrolled_and_mailed(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    sign_up(client, form, django_capture_on_commit_callbacks)
    [confirmation] = smtp_route.wait_for(1, timeout=10)
    client.post(urlsplit(confirmation_link(confirmation.text())).path)
    sequence = email_sequence(form.organization)

    report = enrollments_create(sequence=sequence, contacts=Contact.objects.filter(pk=Contact.objects.get().pk))
    with django_capture_on_commit_callbacks(execute=True):
        engine.tick()

    assert report.enrolled_count == 1
    received = smtp_route.wait_for(2, timeout=10)
    assert received[1].recipients == ("ann.reader@example.com",)


def test_the_confirmation_is_dkim_signed_for_the_organizations_sending_domain(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, settings, django_capture_on_commit_callbacks
):
    sending_domain = SendingDomainFactory(organization=form.organization, domain="acme.example")
    settings.TRANSACTIONAL_FROM_EMAIL = "hello@acme.example"

    sign_up(client, form, django_capture_on_commit_callbacks)

    [mail] = smtp_route.wait_for(1, timeout=10)
    checker = dkim.DKIM(mail.data)
    assert checker.verify(dnsfunc=dkim_dnsfunc(published(sending_domain)))
    assert mail.parsed()["From"].addresses[0].addr_spec == "hello@acme.example"
