"""Without a real route, mail is kept as .eml files per organization and shown at /mailbox/:
staff only, each staff member only their organizations' mail, superusers all of it."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest
from django.test import Client

from delivery import mailbox
from delivery.models import Message
from delivery.tests.factories import captured_files, email_sequence, send, write_messages
from organizations.models import Organization
from organizations.tests.factories import OrganizationFactory, UserFactory, member
from subscribers.tests.factories import ContactFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("capture_route")]

HTML = "<html><body><p>Hello {{ contact.first_name }}</p><script>alert('captured')</script></body></html>"


def send_to_one_contact(organization: Organization, subject: str) -> tuple[Message, str]:
    sequence = email_sequence(
        organization, subject=subject, html_body=HTML, text_body="Plain hello {{ contact.first_name }}"
    )
    [message] = write_messages(sequence, ContactFactory(organization=organization, first_name="Zoë"))
    assert send(message).sent == 1
    message.refresh_from_db()
    [path] = captured_files(organization.pk)
    return message, f"{organization.pk}/{path.stem}"


@pytest.fixture
def acme() -> tuple[Organization, str]:
    organization = OrganizationFactory(name="Acme")
    return organization, send_to_one_contact(organization, "Acme news")[1]


@pytest.fixture
def globex() -> tuple[Organization, str]:
    organization = OrganizationFactory(name="Globex")
    return organization, send_to_one_contact(organization, "Globex news")[1]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_sent_mail_is_kept_as_an_eml_file_in_the_organizations_folder(settings) -> None:
    organization = OrganizationFactory()
    message, key = send_to_one_contact(organization, "Kept")

    [path] = captured_files(organization.pk)
    assert path.parent == settings.MAILBOX_DIR / str(organization.pk)
    assert not list(path.parent.glob(".*.tmp"))
    mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert mail["Subject"] == "Kept" and mail["To"] == message.recipient
    assert mail["Message-ID"] == message.message_id_header
    assert message.response == f"captured as {key}"


@pytest.mark.parametrize("url", ["/mailbox/", "/mailbox/{key}", "/mailbox/{key}/raw"])
def test_the_mailbox_requires_a_staff_login(acme: tuple[Organization, str], url: str) -> None:
    organization, key = acme
    path = url.format(key=key)
    not_staff = member(organization, is_staff=False)

    for client in (Client(), logged_in(not_staff)):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_staff_see_only_their_organizations_mail(
    acme: tuple[Organization, str], globex: tuple[Organization, str]
) -> None:
    (organization, own_key), (_other, other_key) = acme, globex
    client = logged_in(member(organization))

    listing = client.get("/mailbox/")
    assert listing.status_code == 200
    assert "Acme news" in listing.content.decode()
    assert "Globex news" not in listing.content.decode()
    assert client.get(f"/mailbox/{own_key}").status_code == 200
    assert client.get(f"/mailbox/{other_key}").status_code == 404
    assert client.get(f"/mailbox/{other_key}/raw").status_code == 404


def test_staff_without_an_organization_see_nothing(acme: tuple[Organization, str]) -> None:
    _organization, key = acme
    client = logged_in(UserFactory(is_staff=True))

    assert "Acme news" not in client.get("/mailbox/").content.decode()
    assert client.get(f"/mailbox/{key}").status_code == 404


def test_superusers_see_every_organizations_mail_and_system_mail(
    acme: tuple[Organization, str], globex: tuple[Organization, str]
) -> None:
    system_key = mailbox.store(
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Reset\r\n\r\nhi\r\n", organization_id=None
    )
    client = logged_in(UserFactory(is_staff=True, is_superuser=True))

    listing = client.get("/mailbox/").content.decode()
    assert "Acme news" in listing and "Globex news" in listing and "Reset" in listing
    for _organization, key in (acme, globex):
        assert client.get(f"/mailbox/{key}").status_code == 200
    assert client.get(f"/mailbox/{system_key}").status_code == 200
    assert logged_in(member(acme[0])).get(f"/mailbox/{system_key}").status_code == 404


def test_the_detail_page_shows_the_message_with_its_html_sandboxed(acme: tuple[Organization, str]) -> None:
    organization, key = acme
    response = logged_in(member(organization)).get(f"/mailbox/{key}")

    page = response.content.decode()
    assert "<h1>Acme news</h1>" in page
    assert "Plain hello Zoë" in page
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox" srcdoc="' in page
    assert "&lt;p&gt;Hello Zoë&lt;/p&gt;" in page
    assert "<script>alert(" not in page


def test_the_raw_download_is_the_stored_file(acme: tuple[Organization, str], settings) -> None:
    organization, key = acme
    response = logged_in(member(organization)).get(f"/mailbox/{key}/raw")

    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response.content == (settings.MAILBOX_DIR / f"{key}.eml").read_bytes()


@pytest.mark.parametrize(
    "key",
    [
        "../secret",
        "{org}/../../secret",
        "{org}/../{other}/{name}",
        "{org}/{name}/../../../secret",
        "..%2F..%2Fsecret",
        "%2e%2e/%2e%2e/secret",
        "{org}/{name}.eml",
        "/etc/passwd",
        "{org}//{name}",
        "0{org}/{name}",
    ],
)
def test_path_traversal_keys_get_404(
    acme: tuple[Organization, str], globex: tuple[Organization, str], settings, key: str
) -> None:
    (organization, _own_key), (other, other_key) = acme, globex
    (settings.MAILBOX_DIR.parent / "secret.eml").write_bytes(b"Subject: secret\r\n\r\nsecret\r\n")
    path = key.format(org=organization.pk, other=other.pk, name=other_key.split("/")[1])

    for user in (member(organization), UserFactory(is_staff=True, is_superuser=True)):
        client = logged_in(user)
        for url in (f"/mailbox/{path}", f"/mailbox/{path}/raw"):
            response = client.get(url)
            assert response.status_code == 404, url
            assert b"secret\r\n" not in response.content
