"""The DNS check reads SPF, both DKIM records and DMARC through a resolver (a stub here, answering
from a dict), says plainly what is missing or wrong, and verifies the domain only when nothing
is an error. Lookup failures are findings, never exceptions."""

from __future__ import annotations

import time

import pytest
from django.core.management import CommandError, call_command

from deliverability import services
from deliverability.dnscheck import ERROR, INFO, OK, WARNING, check_sending_domain
from deliverability.models import SendingDomain
from deliverability.tests.factories import TIMEOUT, SendingDomainFactory, StubResolver, published

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def route(settings) -> None:
    settings.SPF_INCLUDE = ["spf.sender.example"]
    settings.SPF_IP = []
    settings.BOUNCE_DOMAIN = "bounces.acme.example"


@pytest.fixture
def acme() -> SendingDomain:
    return SendingDomainFactory(domain="acme.example")


def all_published(sending_domain: SendingDomain) -> dict:
    """What we ask to publish, and the bounce domain's MX."""
    records = published(sending_domain)
    records[("bounces.acme.example", "MX")] = ["10 mx.acme.example."]
    return records


def codes(report) -> dict[str, str]:
    return {finding.code: finding.severity for finding in report.findings}


def message(report, code: str) -> str:
    [found] = [finding.message for finding in report.findings if finding.code == code]
    return found


def test_a_domain_with_every_record_published_is_verified(acme: SendingDomain) -> None:
    report = services.sending_domain_check(sending_domain=acme, resolver=StubResolver(all_published(acme)))

    assert report.verified
    assert codes(report) == {
        "spf_ok": OK,
        "dkim_rsa_ok": OK,
        "dkim_ed25519_ok": OK,
        "dmarc_policy_none": INFO,
        "dkim_aligned": OK,
        "return_path_aligned": OK,
        "return_path_spf_ok": OK,
    }
    acme.refresh_from_db()
    assert acme.verified_at == report.checked_at == acme.last_checked_at
    assert acme.check_results["verified"] is True
    assert {item["code"] for item in acme.check_results["findings"]} == set(codes(report))


def test_the_published_records_name_both_selectors_with_their_key_types(acme: SendingDomain) -> None:
    records = published(acme)

    assert records[("es202612r._domainkey.acme.example", "TXT")] == [f"v=DKIM1; k=rsa; p={acme.dkim_public_key_rsa}"]
    assert records[("es202612e._domainkey.acme.example", "TXT")] == [
        f"v=DKIM1; k=ed25519; p={acme.dkim_public_key_ed25519}"
    ]
    assert records[("acme.example", "TXT")] == ["v=spf1 include:spf.sender.example ~all"]
    assert records[("_dmarc.acme.example", "TXT")] == ["v=DMARC1; p=none; rua=mailto:dmarc-reports@acme.example"]
    assert records[("bounces.acme.example", "TXT")] == ["v=spf1 include:spf.sender.example ~all"]


def test_a_missing_dkim_record_is_named_with_the_record_to_publish(acme: SendingDomain) -> None:
    records = published(acme)
    del records[("es202612e._domainkey.acme.example", "TXT")]

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert not report.verified
    assert codes(report)["dkim_ed25519_missing"] == ERROR
    assert message(report, "dkim_ed25519_missing") == (
        "No DKIM record at es202612e._domainkey.acme.example: publish TXT "
        f'"v=DKIM1; k=ed25519; p={acme.dkim_public_key_ed25519}".'
    )


def test_a_dkim_record_with_another_key_is_a_mismatch(acme: SendingDomain) -> None:
    records = published(acme)
    other = SendingDomainFactory(domain="other.example", key_set=1)
    records[("es202612r._domainkey.acme.example", "TXT")] = [f"v=DKIM1; k=rsa; p={other.dkim_public_key_rsa}"]

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert codes(report)["dkim_rsa_mismatch"] == ERROR
    assert "publishes a different key than ours" in message(report, "dkim_rsa_mismatch")
    assert not report.verified


def test_spf_that_does_not_name_our_route_says_what_to_add(acme: SendingDomain) -> None:
    records = published(acme)
    records[("acme.example", "TXT")] = ["v=spf1 include:_spf.google.com -all", "google-site-verification=abc"]

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert message(report, "spf_route_not_authorised") == (
        "SPF does not authorise our sending route: add include:spf.sender.example to the SPF record of "
        "acme.example (before its all mechanism)."
    )
    assert not report.verified


def test_spf_naming_our_address_inside_a_wider_network_authorises_the_route(acme: SendingDomain, settings) -> None:
    settings.SPF_INCLUDE = []
    settings.SPF_IP = ["192.0.2.10"]
    records = published(acme)
    records[("acme.example", "TXT")] = ["v=spf1 ip4:192.0.2.0/24 ~all"]
    records[("bounces.acme.example", "TXT")] = ["v=spf1 ip4:192.0.2.10 ~all"]

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert codes(report)["spf_ok"] == OK
    assert report.verified


def test_no_spf_record_and_two_spf_records_are_errors(acme: SendingDomain) -> None:
    records = published(acme)
    del records[("acme.example", "TXT")]
    missing = check_sending_domain(acme, resolver=StubResolver(records))
    records[("acme.example", "TXT")] = ["v=spf1 include:spf.sender.example ~all", "v=spf1 mx -all"]
    doubled = check_sending_domain(acme, resolver=StubResolver(records))

    assert (
        message(missing, "spf_missing")
        == 'No SPF record on acme.example: publish TXT "v=spf1 include:spf.sender.example ~all".'
    )
    assert codes(doubled)["spf_multiple"] == ERROR


def test_a_missing_dmarc_record_is_an_error_and_p_none_is_fine_to_start(acme: SendingDomain) -> None:
    records = published(acme)
    del records[("_dmarc.acme.example", "TXT")]

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert message(report, "dmarc_missing").startswith(
        'DMARC record missing: publish TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@acme.example" at _dmarc.acme.example.'
    )
    assert not report.verified


def test_dmarc_p_none_is_information_and_quarantine_without_reports_is_noted(acme: SendingDomain) -> None:
    records = published(acme)
    none = check_sending_domain(acme, resolver=StubResolver(records))
    records[("_dmarc.acme.example", "TXT")] = ["v=DMARC1; p=quarantine"]
    quarantine = check_sending_domain(acme, resolver=StubResolver(records))

    assert message(none, "dmarc_policy_none").startswith("DMARC policy p=none: fine to start")
    assert codes(quarantine)["dmarc_ok"] == OK
    assert codes(quarantine)["dmarc_no_reports"] == INFO
    assert none.verified and quarantine.verified


def test_a_subdomain_without_its_own_dmarc_record_is_covered_by_its_parents(settings) -> None:
    settings.BOUNCE_DOMAIN = "bounces.acme.example"
    letters = SendingDomainFactory(domain="letters.acme.example")
    records = published(letters)
    del records[("_dmarc.letters.acme.example", "TXT")]
    records[("_dmarc.acme.example", "TXT")] = ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@acme.example"]

    report = check_sending_domain(letters, resolver=StubResolver(records))

    assert message(report, "dmarc_ok") == (
        "DMARC policy p=quarantine (the record of acme.example, which covers its subdomains)."
    )
    # The bounce domain is a sibling inside acme.example, whose DMARC record makes it the organization.
    assert codes(report)["return_path_aligned"] == OK
    assert report.verified


def test_a_return_path_outside_the_organization_is_a_warning_that_dkim_carries_dmarc(
    acme: SendingDomain, settings
) -> None:
    settings.BOUNCE_DOMAIN = "bounces.sender.example"
    records = published(acme)
    records[("bounces.sender.example", "MX")] = ["10 mx.sender.example."]

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert codes(report)["return_path_not_aligned"] == WARNING
    assert "DMARC passes through the aligned DKIM signature" in message(report, "return_path_not_aligned")
    assert report.verified


def test_strict_dkim_alignment_warns_that_subdomains_fail(acme: SendingDomain) -> None:
    records = published(acme)
    records[("_dmarc.acme.example", "TXT")] = ["v=DMARC1; p=none; adkim=s; rua=mailto:d@acme.example"]

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert codes(report)["dkim_alignment_strict"] == WARNING


def test_timeouts_and_missing_names_are_findings_not_exceptions(acme: SendingDomain) -> None:
    records = {("acme.example", "TXT"): TIMEOUT}

    report = check_sending_domain(acme, resolver=StubResolver(records))

    assert codes(report)["spf_lookup_failed"] == ERROR
    assert (
        message(report, "spf_lookup_failed")
        == "Could not look up the SPF record of acme.example: the lookup timed out."
    )
    assert codes(report)["dkim_rsa_missing"] == ERROR  # NXDOMAIN
    assert codes(report)["dmarc_missing"] == ERROR
    assert not report.verified


def test_a_resolver_that_never_answers_costs_one_time_budget(acme: SendingDomain, settings) -> None:
    settings.DNS_TIMEOUT_SECONDS = 0.3
    started = time.monotonic()

    report = services.sending_domain_check(sending_domain=acme)  # the conftest's silent local port

    assert time.monotonic() - started < 1.5
    assert not report.verified
    for code in ("spf_lookup_failed", "dkim_rsa_lookup_failed", "dkim_ed25519_lookup_failed", "dmarc_lookup_failed"):
        assert codes(report)[code] == ERROR


def test_a_failing_check_clears_verification_and_a_passing_one_keeps_its_first_date(acme: SendingDomain) -> None:
    good = StubResolver(all_published(acme))
    first = services.sending_domain_check(sending_domain=acme, resolver=good)
    services.sending_domain_check(sending_domain=acme, resolver=good)
    acme.refresh_from_db()
    assert acme.verified_at == first.checked_at

    records = published(acme)
    del records[("es202612r._domainkey.acme.example", "TXT")]
    services.sending_domain_check(sending_domain=acme, resolver=StubResolver(records))

    acme.refresh_from_db()
    assert acme.verified_at is None
    assert acme.check_results["verified"] is False


def test_the_check_command_prints_the_findings_and_fails_for_an_unverified_domain(acme: SendingDomain, capsys) -> None:
    with pytest.raises(CommandError, match="1 domain"):
        call_command("sending_domain_check", "ACME.example")

    out = capsys.readouterr().out
    assert f"acme.example ({acme.organization.slug}): NOT verified" in out
    assert "[error] spf_lookup_failed: Could not look up the SPF record of acme.example" in out
    acme.refresh_from_db()
    assert acme.last_checked_at is not None
