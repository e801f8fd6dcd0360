"""Acceptance 1: every message From a sending domain carries an RSA-SHA256 and an Ed25519-SHA256
DKIM signature that dkimpy verifies against the records we tell the organization to publish,
covering From, Subject, Date, Message-ID, List-Unsubscribe and List-Unsubscribe-Post; changing
a signed header breaks both. Sent for real: a sequence through the SMTP sink, and one through
the captured mailbox."""

from __future__ import annotations

import email
from pathlib import Path

import dkim
import pytest
from django.conf import settings

from conftest import SmtpServer
from deliverability import services as domain_services
from deliverability.models import SendingDomain
from deliverability.tests.factories import StubResolver, dkim_dnsfunc, published
from delivery.tests.factories import email_sequence, send, write_messages
from emailseq.environment import EmailConfig
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.tests.helpers import draft_sequence, email_step, tick
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

COVERED = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type", "list-unsubscribe"}
COVERED |= {"list-unsubscribe-post", "x-emailseq-id"}


@pytest.fixture
def organization() -> Organization:
    return OrganizationFactory(name="Acme")


@pytest.fixture
def acme_domain(organization: Organization, settings) -> SendingDomain:
    """acme.example, registered through the service, its records published and checked."""
    settings.REQUIRE_VERIFIED_SENDING_DOMAIN = True
    settings.BOUNCE_DOMAIN = "bounces.acme.example"
    sending_domain = domain_services.sending_domain_register(organization=organization, domain="Acme.Example.")
    records = published(sending_domain)
    records[("bounces.acme.example", "MX")] = ["10 mx.acme.example."]
    report = domain_services.sending_domain_check(sending_domain=sending_domain, resolver=StubResolver(records))
    assert report.verified, report.findings
    return sending_domain


def send_through_a_sequence(organization: Organization, from_email: str, capture_on_commit) -> None:
    sequence = draft_sequence(organization, from_email=from_email, from_name="Acme news")
    email_step(sequence, "Spring news for {{ contact.first_name }}")
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization, email="ann@example.net", first_name="Ann")
    assert services.enrollments_create(sequence=sequence, contacts=[contact]).enrolled_count == 1
    tick(capture_on_commit)


def signatures(raw: bytes) -> list[dict[bytes, bytes]]:
    message = email.message_from_bytes(raw)
    return [dkim.util.parse_tag_value(value.encode()) for value in message.get_all("DKIM-Signature", [])]


def signed_headers(signature: dict[bytes, bytes]) -> set[str]:
    return {name.strip().decode().lower() for name in b"".join(signature[b"h"].split()).split(b":")}


def verifications(raw: bytes, sending_domain: SendingDomain) -> list[bool]:
    """dkimpy's verdict on each signature, with DNS answered from the records we publish."""
    checker = dkim.DKIM(raw)
    dnsfunc = dkim_dnsfunc(published(sending_domain))
    return [checker.verify(idx=index, dnsfunc=dnsfunc) for index in range(len(signatures(raw)))]


def assert_signed_by(raw: bytes, sending_domain: SendingDomain) -> None:
    found = signatures(raw)
    assert [(item[b"a"], item[b"s"].decode()) for item in found] == [
        (b"rsa-sha256", sending_domain.dkim_selector_rsa),
        (b"ed25519-sha256", sending_domain.dkim_selector_ed25519),
    ]
    assert all(item[b"d"] == sending_domain.domain.encode() for item in found)
    for item in found:
        assert signed_headers(item) >= COVERED
    assert verifications(raw, sending_domain) == [True, True]


def test_a_sequence_email_over_smtp_carries_two_signatures_that_verify(
    organization: Organization, acme_domain: SendingDomain, smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    send_through_a_sequence(organization, "news@acme.example", django_capture_on_commit_callbacks)

    [mail] = smtp_route.wait_for(1)
    assert_signed_by(mail.data, acme_domain)


def test_a_sequence_email_in_the_captured_mailbox_carries_two_signatures_that_verify(
    organization: Organization, acme_domain: SendingDomain, settings, django_capture_on_commit_callbacks
) -> None:
    settings.EMAIL = EmailConfig(kind="capture", mailbox_dir=str(settings.MAILBOX_DIR))

    send_through_a_sequence(organization, "news@acme.example", django_capture_on_commit_callbacks)

    [path] = (Path(settings.MAILBOX_DIR) / str(organization.pk)).glob("*.eml")
    assert_signed_by(path.read_bytes(), acme_domain)


@pytest.mark.parametrize(
    ("header", "forged"),
    [
        (b"Subject: Spring news for Ann", b"Subject: Spring news for Bob"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: List-Unsubscribe=Nope"),
        (b"List-Unsubscribe: <http", b"List-Unsubscribe: <https"),
        (b"From: Acme news <news@acme.example>", b"From: Acme news <ceo@acme.example>"),
    ],
)
def test_a_changed_signed_header_fails_both_signatures(
    organization: Organization,
    acme_domain: SendingDomain,
    smtp_route: SmtpServer,
    django_capture_on_commit_callbacks,
    header: bytes,
    forged: bytes,
) -> None:
    send_through_a_sequence(organization, "news@acme.example", django_capture_on_commit_callbacks)
    [mail] = smtp_route.wait_for(1)
    assert header in mail.data

    assert verifications(mail.data.replace(header, forged, 1), acme_domain) == [False, False]


def test_an_added_second_list_unsubscribe_header_fails_both_signatures(
    organization: Organization, acme_domain: SendingDomain, smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    send_through_a_sequence(organization, "news@acme.example", django_capture_on_commit_callbacks)
    [mail] = smtp_route.wait_for(1)
    head, _, body = mail.data.partition(b"\r\n\r\n")
    forged = head + b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n" + body

    assert verifications(forged, acme_domain) == [False, False]


def test_mail_from_a_subdomain_is_signed_by_the_registered_parent(
    organization: Organization, acme_domain: SendingDomain, smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    send_through_a_sequence(organization, "news@letters.acme.example", django_capture_on_commit_callbacks)

    [mail] = smtp_route.wait_for(1)
    assert_signed_by(mail.data, acme_domain)


def test_mail_from_a_domain_the_organization_has_not_registered_is_not_signed(
    capture_route_for_test: None, organization: Organization
) -> None:
    # The same domain belongs to another organization: its keys never sign our mail.
    domain_services.sending_domain_register(organization=OrganizationFactory(), domain="acme.example")
    sequence = email_sequence(organization, from_email="news@acme.example")
    [message] = write_messages(sequence, ContactFactory(organization=organization))

    assert send(message).sent == 1

    [path] = (Path(settings.MAILBOX_DIR) / str(organization.pk)).glob("*.eml")
    assert signatures(path.read_bytes()) == []


def test_new_keys_sign_from_the_next_batch_on(
    capture_route_for_test: None, organization: Organization, acme_domain: SendingDomain
) -> None:
    sequence = email_sequence(organization, from_email="news@acme.example")
    first, second = write_messages(sequence, *ContactFactory.create_batch(2, organization=organization))
    assert send(first).sent == 1
    # A rotation: other selectors and keys, as a later issue's service would store them.
    rotated = domain_services.sending_domain_register(organization=OrganizationFactory(), domain="other.example")
    SendingDomain.objects.filter(pk=acme_domain.pk).update(
        dkim_selector_rsa="es203001r",
        dkim_private_key_rsa=rotated.dkim_private_key_rsa,
        dkim_public_key_rsa=rotated.dkim_public_key_rsa,
        dkim_selector_ed25519="es203001e",
        dkim_private_key_ed25519=rotated.dkim_private_key_ed25519,
        dkim_public_key_ed25519=rotated.dkim_public_key_ed25519,
    )
    acme_domain.refresh_from_db()

    assert send(second).sent == 1

    mail = sorted((Path(settings.MAILBOX_DIR) / str(organization.pk)).glob("*.eml"))
    assert [item[b"s"] for item in signatures(mail[-1].read_bytes())] == [b"es203001r", b"es203001e"]
    assert_signed_by(mail[-1].read_bytes(), acme_domain)


def test_a_domain_whose_keys_cannot_be_loaded_sends_unsigned_rather_than_not_at_all(
    capture_route_for_test: None, organization: Organization
) -> None:
    domain_services.sending_domain_register(organization=organization, domain="acme.example")
    SendingDomain.objects.filter(organization=organization).update(dkim_private_key_rsa="not a key")
    sequence = email_sequence(organization, from_email="news@acme.example")
    [message] = write_messages(sequence, ContactFactory(organization=organization))

    assert send(message).sent == 1

    [path] = (Path(settings.MAILBOX_DIR) / str(organization.pk)).glob("*.eml")
    assert signatures(path.read_bytes()) == []


@pytest.fixture
def capture_route_for_test(settings) -> None:
    settings.EMAIL = EmailConfig(kind="capture", mailbox_dir=str(settings.MAILBOX_DIR))
