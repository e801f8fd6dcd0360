"""Acceptance 1: from enrollment to inbox over real SMTP, and the second step to exactly the
contacts the condition selects. On PostgreSQL + Redis the sends go through a real Celery worker."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from conftest import SmtpServer, WorkerProcesses, wait_until
from delivery.models import Event, Message
from organizations.tests.factories import OrganizationFactory
from sequences import engine, services
from sequences.models import Step
from sequences.tests.factories import EmailTemplateFactory, SequenceFactory
from subscribers.tests.factories import ContactFactory

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"
)
FIRST_HTML = """<html><body>
<p>Dear {{ contact.first_name | default: "friend" }},</p>
<p><a href="https://shop.example.com/new?ref=mail&amp;x=1">New arrivals</a></p>
<p><a href="https://docs.example.com/start">Get started</a></p>
</body></html>"""
TRACKED = re.compile(r"http://[^/]+/t/c/[A-Za-z0-9_-]+\?u=[^\s\"<>]+")
PIXEL = re.compile(r'<img src="(http://[^/]+/t/o/[A-Za-z0-9_-]+\.gif)"')


def local_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_hundred_contacts_get_their_own_first_email_and_only_clickers_get_the_second(
    send_workers: WorkerProcesses, smtp_route: SmtpServer
) -> None:
    organization = OrganizationFactory(name="Acme")
    sequence = SequenceFactory(organization=organization, status="draft")
    first = services.step_create(
        sequence=sequence,
        kind=Step.Kind.EMAIL,
        template=EmailTemplateFactory(
            organization=organization, subject="Hello {{ contact.first_name }}", html_body=FIRST_HTML
        ),
    )
    services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(days=2))
    services.step_create(sequence=sequence, kind=Step.Kind.CONDITION, condition={"type": "clicked", "step": first.pk})
    exit_step = services.step_create(sequence=sequence, kind=Step.Kind.EXIT)
    thanks = services.step_create(
        sequence=sequence,
        kind=Step.Kind.EMAIL,
        template=EmailTemplateFactory(organization=organization, subject="Thanks {{ contact.first_name }}"),
    )
    condition = sequence.steps.get(kind=Step.Kind.CONDITION)
    services.step_update(step=condition, yes_step=thanks, no_step=exit_step)
    services.sequence_activate(sequence=sequence)
    contacts = [ContactFactory(organization=organization, first_name=f"Zoë{index:03d}") for index in range(200)]
    assert services.enrollments_create(sequence=sequence, contacts=contacts).enrolled_count == 200

    engine.tick()
    received = smtp_route.wait_for(200)
    sent = Message.objects.filter(status=Message.Status.SENT)
    wait_until(lambda: sent.count() == 200, timeout=30, what="200 sends recorded")
    assert len(received) == 200
    by_recipient = {mail.recipients[0]: mail for mail in received}
    assert set(by_recipient) == {contact.email for contact in contacts}

    client = Client()
    for contact in contacts:
        mail = by_recipient[contact.email]
        message = mail.parsed()
        assert message["Subject"] == f"Hello {contact.first_name}"
        assert f"Dear {contact.first_name}," in mail.html()
        assert f"Dear {contact.first_name}," in mail.text()
        unsubscribe = message["List-Unsubscribe"]
        assert re.search(r"<http://[^>]+/u/[A-Za-z0-9_-]+>", unsubscribe)
        assert re.search(r"<mailto:unsubscribe\+[A-Za-z0-9_-]+@[^>]+>", unsubscribe)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Message-ID"].startswith("<") and message["X-Emailseq-ID"]
        assert PIXEL.search(mail.html())
        assert "https://shop.example.com" not in mail.html()
        assert len(set(TRACKED.findall(mail.html()))) == 2

    # Every rewritten link leads to its original; the pixel answers with an image.
    sample = by_recipient[contacts[0].email].html()
    targets = [client.get(local_path(url), HTTP_USER_AGENT=BROWSER)["Location"] for url in TRACKED.findall(sample)]
    assert targets == ["https://shop.example.com/new?ref=mail&x=1", "https://docs.example.com/start"]
    pixel = client.get(local_path(PIXEL.search(sample).group(1)), HTTP_USER_AGENT=BROWSER)
    assert pixel.status_code == 200 and pixel["Content-Type"] == "image/gif"

    # An hour later: a third of the contacts click (a human), some only open, some links are
    # fetched by a scanner. Only the human clickers satisfy "clicked".
    clickers = {contact.email for contact in contacts[::3]}
    with time_machine.travel(timezone.now() + dt.timedelta(hours=1)):
        for contact in contacts[1:60]:
            html = by_recipient[contact.email].html()
            client.get(local_path(PIXEL.search(html).group(1)), HTTP_USER_AGENT=BROWSER)
            client.get(
                local_path(TRACKED.findall(html)[1]), HTTP_USER_AGENT="Mozilla/5.0 (compatible; Barracuda Sentinel)"
            )
        for email in clickers:
            client.get(local_path(TRACKED.findall(by_recipient[email].html())[0]), HTTP_USER_AGENT=BROWSER)
    clicks = Event.objects.filter(type="click")
    assert clicks.filter(machine_reason="scanner_user_agent").count() == 59
    # The two clicks right after delivery (above) look like a link scanner's too.
    assert clicks.filter(machine_reason="too_fast_after_delivery").count() == 2
    assert clicks.filter(is_machine=False).count() == len(clickers)

    with time_machine.travel(timezone.now() + dt.timedelta(days=2, minutes=1)):
        engine.tick()
        smtp_route.wait_for(200 + len(clickers))
    wait_until(lambda: sent.count() == 200 + len(clickers), timeout=30, what="second sends recorded")
    second = [mail for mail in smtp_route.received if mail.parsed()["Subject"].startswith("Thanks")]
    assert {mail.recipients[0] for mail in second} == clickers
    assert len(smtp_route.received) == 200 + len(clickers)
