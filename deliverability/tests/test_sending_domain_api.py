"""/api/v1/sending-domains/: register a domain and get the DNS records to publish (never a
private key), read, remove, and verify against live DNS: here a real DNS server on 127.0.0.1
that answers from a dict, asked through the production resolver settings."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from api.tests.clients import role_client
from deliverability.models import SendingDomain
from deliverability.tests.factories import published, rdata_from_value
from organizations.models import Membership, Organization
from organizations.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

DOMAINS = "/api/v1/sending-domains/"


class LocalDnsServer:
    """Answers UDP queries from {(name, type): [values]}: NXDOMAIN for unknown names."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                wire, client = self.socket.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            values = self.records.get((name, rdtype))
            if values:
                rrset = dns.rrset.RRset(question.name, question.rdclass, question.rdtype)
                for value in values:
                    rrset.add(rdata_from_value(rdtype, value), ttl=60)
                response.answer.append(rrset)
            elif not any(known == name for known, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.socket.sendto(response.to_wire(), client)


@pytest.fixture
def dns_server(settings) -> Iterator[LocalDnsServer]:
    server = LocalDnsServer()
    server.thread.start()
    settings.DNS_NAMESERVERS = ["127.0.0.1"]
    settings.DNS_PORT = server.port
    settings.DNS_TIMEOUT_SECONDS = 3.0
    settings.SPF_INCLUDE = ["spf.sender.example"]
    settings.BOUNCE_DOMAIN = "bounces.xn--bcher-kva.example"
    yield server
    server.socket.close()


@pytest.fixture
def organization() -> Organization:
    return OrganizationFactory(name="Bücher")


@pytest.fixture
def admin_client(organization: Organization):
    return role_client(organization, Membership.Role.ADMIN)


def test_registering_a_domain_answers_the_records_to_publish_and_no_private_key(
    organization: Organization, admin_client
) -> None:
    response = admin_client.post(DOMAINS, {"domain": " Bücher.Example. "}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    sending_domain = SendingDomain.objects.get(organization=organization)
    assert body["domain"] == sending_domain.domain == "xn--bcher-kva.example"
    assert body["verified"] is False and body["findings"] == []
    records = {(record["type"], record["name"]): record["value"] for record in body["dns_records"]}
    rsa, ed25519 = body["dkim_selectors"]["rsa"], body["dkim_selectors"]["ed25519"]
    assert rsa != ed25519 and rsa.startswith("es") and ed25519.startswith("es")
    assert records[("TXT", f"{rsa}._domainkey.xn--bcher-kva.example")] == (
        f"v=DKIM1; k=rsa; p={sending_domain.dkim_public_key_rsa}"
    )
    assert records[("TXT", f"{ed25519}._domainkey.xn--bcher-kva.example")] == (
        f"v=DKIM1; k=ed25519; p={sending_domain.dkim_public_key_ed25519}"
    )
    assert records[("TXT", "_dmarc.xn--bcher-kva.example")].startswith("v=DMARC1; p=none; rua=mailto:")
    assert records[("TXT", "xn--bcher-kva.example")].startswith("v=spf1 ")
    text = response.content.decode()
    assert "PRIVATE KEY" not in text
    assert sending_domain.dkim_private_key_ed25519 not in text
    assert "MII" not in text.replace(sending_domain.dkim_public_key_rsa, "")


@pytest.mark.parametrize("domain", ["news@example.com", "https://example.com/", "localhost", "192.0.2.1", "a..b"])
def test_what_is_not_a_domain_is_a_field_error(domain: str, organization: Organization, admin_client) -> None:
    response = admin_client.post(DOMAINS, {"domain": domain}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "domain"
    assert not SendingDomain.objects.filter(organization=organization).exists()


def test_a_domain_is_registered_once_per_organization(organization: Organization, admin_client) -> None:
    assert admin_client.post(DOMAINS, {"domain": "example.com"}, format="json").status_code == 201

    response = admin_client.post(DOMAINS, {"domain": "EXAMPLE.com"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "example.com is already a sending domain of this organization."
    # Another organization may register it too: only its own keys sign its own mail.
    other = role_client(OrganizationFactory(), Membership.Role.OWNER)
    assert other.post(DOMAINS, {"domain": "example.com"}, format="json").status_code == 201


def test_viewers_read_domains_and_only_admins_change_them(organization: Organization, admin_client) -> None:
    created = admin_client.post(DOMAINS, {"domain": "example.com"}, format="json").json()
    viewer = role_client(organization, Membership.Role.VIEWER)
    marketer = role_client(organization, Membership.Role.MARKETER)

    assert [item["domain"] for item in viewer.get(DOMAINS).json()["results"]] == ["example.com"]
    assert viewer.get(f"{DOMAINS}{created['id']}/").json()["dns_records"] == created["dns_records"]
    assert marketer.post(f"{DOMAINS}{created['id']}/verify/").status_code == 403
    assert marketer.delete(f"{DOMAINS}{created['id']}/").status_code == 403
    assert admin_client.delete(f"{DOMAINS}{created['id']}/").status_code == 204
    assert not SendingDomain.objects.filter(pk=created["id"]).exists()


def test_verify_asks_live_dns_and_answers_what_is_missing_then_verified(
    organization: Organization, admin_client, dns_server: LocalDnsServer
) -> None:
    created = admin_client.post(DOMAINS, {"domain": "bücher.example"}, format="json").json()
    sending_domain = SendingDomain.objects.get(pk=created["id"])
    records = published(sending_domain)
    dns_server.records = {key: value for key, value in records.items() if not key[0].startswith("_dmarc.")}

    first = admin_client.post(f"{DOMAINS}{created['id']}/verify/")

    assert first.status_code == 200
    findings = {finding["code"]: finding for finding in first.json()["findings"]}
    assert first.json()["verified"] is False
    assert findings["dmarc_missing"]["severity"] == "error"
    assert findings["dkim_rsa_ok"]["severity"] == findings["dkim_ed25519_ok"]["severity"] == "ok"

    dns_server.records = {**records, ("bounces.xn--bcher-kva.example", "MX"): ["10 mx.example."]}
    second = admin_client.post(f"{DOMAINS}{created['id']}/verify/").json()

    assert second["verified"] is True, second["findings"]
    assert second["verified_at"] is not None
    assert {finding["severity"] for finding in second["findings"]} <= {"ok", "info"}
