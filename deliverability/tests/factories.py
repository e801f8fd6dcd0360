"""Sending domains with real keys (made once per test run: RSA key generation is slow), and the
DNS a test decides on: a stub with dnspython's `Resolver.resolve` interface answering from a
dict, and the same records as dkimpy's `dnsfunc` for verifying signatures."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import factory

from deliverability import dkim, dnscheck
from deliverability.models import SendingDomain
from organizations.tests.factories import OrganizationFactory


@functools.cache
def _keys(which: int) -> tuple[dkim.KeyPair, dkim.KeyPair]:
    return dkim.rsa_key_generate(), dkim.ed25519_key_generate()


class SendingDomainFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SendingDomain

    class Params:
        key_set = 0  # another number: other keys

    organization = factory.SubFactory(OrganizationFactory)
    domain = factory.Sequence(lambda n: f"mail{n}.example.com")
    dkim_selector_rsa = "es202612r"
    dkim_selector_ed25519 = "es202612e"
    dkim_private_key_rsa = factory.LazyAttribute(lambda row: _keys(row.key_set)[0].private)
    dkim_public_key_rsa = factory.LazyAttribute(lambda row: _keys(row.key_set)[0].public)
    dkim_private_key_ed25519 = factory.LazyAttribute(lambda row: _keys(row.key_set)[1].private)
    dkim_public_key_ed25519 = factory.LazyAttribute(lambda row: _keys(row.key_set)[1].public)


TIMEOUT = object()  # a name whose lookup times out


class StubResolver:
    """Answers from {(name, type): [values]}; an unknown name is NXDOMAIN, a known name
    without that type is NoAnswer, and TIMEOUT as the values times the lookup out."""

    def __init__(self, records: dict[tuple[str, str], Any]) -> None:
        self.records = {(name.lower().rstrip("."), rdtype): values for (name, rdtype), values in records.items()}
        self.asked: list[tuple[str, str]] = []

    def resolve(self, qname: str, rdtype: str, **kwargs: Any) -> list[dns.rdata.Rdata]:
        name = str(qname).lower().rstrip(".")
        self.asked.append((name, rdtype))
        values = self.records.get((name, rdtype))
        if values is TIMEOUT:
            raise dns.exception.Timeout()
        if values is None:
            if any(known == name for known, _ in self.records):
                raise dns.resolver.NoAnswer()
            raise dns.resolver.NXDOMAIN()
        return [rdata_from_value(rdtype, value) for value in values]


def rdata_from_value(rdtype: str, value: str) -> dns.rdata.Rdata:
    if rdtype == "TXT":
        # Real TXT data: strings of at most 255 characters, joined by the reader.
        chunks = [value[start : start + 255] for start in range(0, len(value), 255)] or [""]
        value = " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)


def published(sending_domain: SendingDomain) -> dict[tuple[str, str], list[str]]:
    """Every record we tell the organization to publish, as published."""
    records: dict[tuple[str, str], list[str]] = {}
    for record in dnscheck.records_to_publish(sending_domain):
        records.setdefault((record.name, record.type), []).append(record.value)
    return records


def dkim_dnsfunc(records: Iterable[tuple[tuple[str, str], list[str]]] | dict) -> Any:
    """dkimpy's `dnsfunc`: the TXT record at a name, from `records`."""
    txt = {name.lower().rstrip("."): values[0] for (name, rdtype), values in dict(records).items() if rdtype == "TXT"}

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        value = txt.get(name.decode().lower().rstrip("."))
        return value.encode() if value is not None else None

    return dnsfunc
