"""Acceptance 2: a message goes out over SMTP; a bounce or complaint about it comes back over SMTP
to the bounce receiver, in the format of a real mail system (Gmail, Outlook, Yahoo, Postfix,
Exim, Amazon SES: files from the shared corpus, rewritten to be about our message), and within a
second the contact is bounced or complained, and suppressed."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator

import pytest

from conftest import SmtpServer, wait_until
from deliverability.models import BounceReport
from deliverability.tests.bounce_mail import (
    BOUNCE_DOMAIN,
    BounceReceiver,
    SentMessage,
    corpus_report,
    counted,
    running_receiver,
    send_one,
)
from delivery.models import Event
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment
from subscribers.addresses import email_hash
from subscribers.models import Contact, Suppression

pytestmark = pytest.mark.django_db(transaction=True)

# One hard bounce (5.1.1, user unknown) per mail system.
DSNS = {
    "gmail": "lhost-gmail-01.eml",
    "outlook": "lhost-outlook-02.eml",
    "yahoo": "lhost-yahoo-01.eml",
    "postfix": "lhost-postfix-04.eml",
    "exim": "lhost-exim-02.eml",  # two failed recipients: ours is the first
    "amazon_ses": "lhost-amazonses-05.eml",
}
# Complaint feedback loops: Yahoo's ARF, Outlook.com's JMRP (the original only), Amazon SES's ARF.
COMPLAINTS = {
    "yahoo": "arf-02.eml",
    "outlook": "arf-22.eml",
    "amazon_ses": "arf-14.eml",
}
FEEDBACK_LOOP_ADDRESS = f"fbl@{BOUNCE_DOMAIN}"


@pytest.fixture(autouse=True)
def _bounce_domain(settings) -> None:
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN


@pytest.fixture
def bounce_receiver() -> Iterator[BounceReceiver]:
    yield from running_receiver()


@pytest.fixture
def sent(smtp_route: SmtpServer) -> SentMessage:
    return send_one(OrganizationFactory(), smtp_route)


def suppressed(contact: Contact) -> Suppression | None:
    return Suppression.objects.filter(organization=contact.organization, email_hash=email_hash(contact.email)).first()


def contact_status(contact: Contact) -> str:
    return Contact.objects.values_list("status", flat=True).get(pk=contact.pk)


@pytest.mark.parametrize("mail_system", DSNS)
def test_a_dsn_bounces_and_suppresses_the_contact_within_a_second(
    mail_system: str, sent: SentMessage, bounce_receiver: BounceReceiver
) -> None:
    assert sent.return_path.startswith("bounce+") and sent.return_path.endswith(f"@{BOUNCE_DOMAIN}")
    report = corpus_report(DSNS[mail_system], sent)

    started = time.monotonic()
    bounce_receiver.deliver(report, to=sent.return_path)
    wait_until(
        lambda: contact_status(sent.contact) == Contact.Status.BOUNCED and suppressed(sent.contact) is not None,
        timeout=1.0 - (time.monotonic() - started),
        interval=0.01,
        what="the contact bounced and suppressed",
    )

    assert suppressed(sent.contact).reason == Suppression.Reason.BOUNCED
    [bounce] = BounceReport.objects.filter(message=sent.message)
    assert (bounce.source, bounce.classification, bounce.status) == ("inbound", "hard", "5.1.1")
    assert bounce.organization_id == sent.message.organization_id
    [event] = Event.objects.filter(message=sent.message, type=Event.Type.BOUNCE)
    assert "5.1.1" in event.detail
    assert set(Enrollment.objects.filter(contact=sent.contact).values_list("status", "exit_reason")) == {
        (Enrollment.Status.EXITED, Enrollment.ExitReason.BOUNCED)
    }


@pytest.mark.parametrize("mail_system", COMPLAINTS)
def test_an_arf_complaint_marks_the_contact_complained_unsubscribed_and_suppressed(
    mail_system: str, sent: SentMessage, bounce_receiver: BounceReceiver
) -> None:
    # Feedback loops send to the one address registered with them, not to the VERP address:
    # the returned original's headers name the message.
    report = corpus_report(COMPLAINTS[mail_system], sent, correlation_header=mail_system == "outlook")

    started = time.monotonic()
    bounce_receiver.deliver(report, to=FEEDBACK_LOOP_ADDRESS)
    wait_until(
        lambda: contact_status(sent.contact) == Contact.Status.COMPLAINED,
        timeout=1.0 - (time.monotonic() - started),
        interval=0.01,
        what="the contact complained",
    )

    assert suppressed(sent.contact).reason == Suppression.Reason.COMPLAINED
    # Complained is the strongest unsubscribe: every enrollment ends and nothing more is sent.
    assert set(Enrollment.objects.filter(contact=sent.contact).values_list("status", "exit_reason")) == {
        (Enrollment.Status.EXITED, Enrollment.ExitReason.COMPLAINED)
    }
    [report_row] = BounceReport.objects.filter(message=sent.message)
    assert report_row.classification == BounceReport.Classification.COMPLAINT
    assert report_row.reason in ("feedback", "abuse")
    assert Event.objects.filter(message=sent.message, type=Event.Type.COMPLAINT).count() == 1


def test_an_arf_opt_out_report_unsubscribes_the_contact(sent: SentMessage, bounce_receiver: BounceReceiver) -> None:
    bounce_receiver.deliver(corpus_report("arf-12.eml", sent), to=FEEDBACK_LOOP_ADDRESS)

    assert contact_status(sent.contact) == Contact.Status.UNSUBSCRIBED
    assert suppressed(sent.contact).reason == Suppression.Reason.UNSUBSCRIBED
    assert BounceReport.objects.get(message=sent.message).classification == BounceReport.Classification.UNSUBSCRIBE


def test_a_dsn_without_the_verp_address_is_matched_by_the_returned_headers(
    sent: SentMessage, bounce_receiver: BounceReceiver
) -> None:
    bounce_receiver.deliver(corpus_report(DSNS["postfix"], sent), to=f"postmaster@{BOUNCE_DOMAIN}")

    assert contact_status(sent.contact) == Contact.Status.BOUNCED
    assert BounceReport.objects.get().message_id == sent.message.pk


def test_the_same_dsn_delivered_twice_is_applied_once(sent: SentMessage, bounce_receiver: BounceReceiver) -> None:
    report = corpus_report(DSNS["gmail"], sent)
    duplicates_before = counted("duplicate")

    _, first = bounce_receiver.conversation(report, to=sent.return_path)
    _, second = bounce_receiver.conversation(report, to=sent.return_path)

    assert first[0] == 250 and b"1 applied" in first[1]
    # Answered 250 all the same: the reporting MTA must not keep retrying.
    assert second[0] == 250 and b"0 applied, 1 duplicate" in second[1]
    assert BounceReport.objects.count() == 1
    assert Event.objects.filter(type=Event.Type.BOUNCE).count() == 1
    assert counted("duplicate") == duplicates_before + 1


def test_a_dsn_to_a_forged_verp_address_matches_nothing(
    smtp_route: SmtpServer, bounce_receiver: BounceReceiver
) -> None:
    organization = OrganizationFactory()
    victim, sent = send_one(organization, smtp_route), send_one(organization, smtp_route)
    # Someone who saw one return path tries to bounce another message: they change its id.
    local, domain = sent.return_path.split("@")
    token = local.removeprefix("bounce+")
    forged = f"bounce+{token[:5]}{'a' if token[5] != 'a' else 'b'}{token[6:]}@{domain}"
    report = corpus_report(DSNS["gmail"], victim)
    # Nothing of the victim's original is returned: only the address could match.
    report = report.replace(victim.message_id_header.encode(), b"<someone-elses@example.org>")
    unmatched_before = counted("unmatched")

    _, reply = bounce_receiver.conversation(report, to=forged)

    assert reply[0] == 250 and b"1 unmatched" in reply[1]
    assert counted("unmatched") == unmatched_before + 1
    assert not BounceReport.objects.exists()
    assert contact_status(victim.contact) == contact_status(sent.contact) == Contact.Status.ACTIVE
    assert not Suppression.objects.exists()


def test_mail_for_other_domains_is_refused(sent: SentMessage, bounce_receiver: BounceReceiver) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        bounce_receiver.deliver(corpus_report(DSNS["gmail"], sent), to="someone@example.org")

    assert refused.value.recipients["someone@example.org"][0] == 550
    assert contact_status(sent.contact) == Contact.Status.ACTIVE


def test_a_report_that_is_not_a_bounce_is_accepted_and_changes_nothing(
    sent: SentMessage, bounce_receiver: BounceReceiver
) -> None:
    raw = (
        f"From: someone@example.org\nTo: {sent.return_path}\nSubject: Re: hello\n"
        f"Message-ID: <reply-1@example.org>\nIn-Reply-To: {sent.message_id_header}\n\nThanks, see you.\n"
    ).encode()

    _, reply = bounce_receiver.conversation(raw, to=sent.return_path)

    assert reply[0] == 250
    assert contact_status(sent.contact) == Contact.Status.ACTIVE
    assert not BounceReport.objects.exists()
