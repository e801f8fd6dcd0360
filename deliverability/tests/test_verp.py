"""VERP: each message leaves with a return path of its own that names it, signed so that nobody
can name another message, and readable after an MTA lower-cases (or upper-cases) it."""

from __future__ import annotations

import pytest

from conftest import SmtpServer
from deliverability import verp
from deliverability.tests.bounce_mail import send_one
from delivery import signing
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _bounce_domain(settings) -> None:
    settings.BOUNCE_DOMAIN = "bounces.example.test"


def test_every_message_is_sent_with_its_own_signed_return_path(smtp_route: SmtpServer) -> None:
    organization = OrganizationFactory()
    first, second = send_one(organization, smtp_route), send_one(organization, smtp_route)

    assert first.return_path != second.return_path
    for sent in (first, second):
        local, domain = sent.return_path.split("@")
        assert domain == "bounces.example.test"
        assert local.startswith("bounce+") and len(local) <= 64  # RFC 5321 limit on local parts
        assert local == local.lower()
        assert verp.message_id_from_address(sent.return_path) == sent.message.pk


@pytest.mark.parametrize("spelling", [str.lower, str.upper, lambda address: f"<{address}>"])
def test_the_return_path_survives_a_change_of_case(spelling) -> None:
    address = verp.return_path(123456789)

    assert verp.message_id_from_address(spelling(address)) == 123456789


def test_an_altered_or_forged_id_names_no_message(settings) -> None:
    address = verp.return_path(42)
    local, domain = address.split("@")
    token = local.removeprefix("bounce+")
    other_token = verp.return_path(43).split("@")[0].removeprefix("bounce+")

    # One character changed; the id of one message with the signature of another; truncated;
    # with characters base32 does not have; signed with another key.
    for forged in (
        token[:-1] + ("a" if token[-1] != "a" else "b"),
        other_token[:13] + token[13:],
        token[:-2],
        token[:-1] + "1",
    ):
        assert verp.message_id_from_address(f"bounce+{forged}@{domain}") is None, forged
    settings.SECRET_KEY = "another installation's key"
    assert verp.message_id_from_address(address) is None


def test_the_return_path_names_the_message_only_at_the_bounce_domain() -> None:
    local = verp.return_path(7).split("@")[0]

    assert verp.message_id_from_address(f"{local}@example.org") is None
    assert verp.message_id_from_address(local) is None
    assert verp.message_id_from_address(f"{local.replace('bounce+', 'other+')}@bounces.example.test") is None


def test_return_paths_keep_working_after_a_key_rotation(settings) -> None:
    address = verp.return_path(99)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the new key"

    assert verp.message_id_from_address(address) == 99
    assert verp.return_path(99) != address


def test_a_returned_original_names_its_message_by_correlation_header_or_message_id(settings) -> None:
    correlation = signing.sign("correlation", 77)
    ours = f"<77.{correlation[:16]}@{settings.MESSAGE_ID_DOMAIN}>"

    assert verp.message_id_from_headers({"x-emailseq-id": correlation}) == 77
    assert verp.message_id_from_headers({"Message-ID": ours}) == 77
    # Forged: another message's number with this one's token, a token that is not ours.
    assert verp.message_id_from_headers({"Message-ID": ours.replace("<77.", "<78.")}) is None
    other = signing.sign("correlation", 78)
    assert verp.message_id_from_headers({"x-emailseq-id": other[:-2] + ("AA" if other[-2:] != "AA" else "BB")}) is None
    assert verp.message_id_from_headers({"Message-ID": f"<77.{correlation[:16]}@example.org>"}) is None
    assert verp.message_id_from_headers({}) is None
