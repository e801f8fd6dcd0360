"""What a sending domain's DNS must say, and what it says: SPF, both DKIM keys, DMARC, and the
return path (the bounce domain of the VERP envelope sender).

`check_sending_domain` asks a resolver (anything with dnspython's `Resolver.resolve`; the one
from `resolver_from_settings` in production, a stub in tests) and answers a list of findings,
each with a code, a severity and a sentence saying what to do. Lookup failures (timeouts,
SERVFAIL, no nameserver) are findings too, never exceptions.

A domain counts as verified when no finding is an error, that is when:
- an SPF record is on the domain, exactly one, and it names our route (the `include:` of each
  SPF_INCLUDE and the address of each SPF_IP; with neither set, any SPF record will do);
- both DKIM records (RSA and Ed25519) are published with our public keys;
- a DMARC record applies to the domain (its own, or a parent's found by walking up the tree)
  with a valid policy: p=none is enough to start.
DKIM aligns with the From domain by construction: mail From the domain or any of its subdomains
is signed with d=<domain>. The return path is BOUNCE_DOMAIN, one for the whole installation:
when it is outside the domain's organization SPF cannot align for DMARC, which DKIM covers, so
that is a warning and not an error.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import dns.exception
import dns.resolver
from django.conf import settings
from django.utils import timezone

from deliverability.dkim import domain_and_parents, key_record

if TYPE_CHECKING:
    import datetime as dt

    from deliverability.models import SendingDomain


class Resolver(Protocol):
    def resolve(self, qname: str, rdtype: str, **kwargs: Any) -> Any: ...


OK, INFO, WARNING, ERROR = "ok", "info", "warning", "error"
SEVERITIES = (OK, INFO, WARNING, ERROR)
TXT_STRING_LIMIT = 255


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str


@dataclass
class DnsReport:
    checked_at: dt.datetime
    findings: list[Finding] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not any(finding.severity == ERROR for finding in self.findings)

    def as_json(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat(),
            "verified": self.verified,
            "findings": [asdict(finding) for finding in self.findings],
        }


@dataclass(frozen=True)
class DnsRecord:
    purpose: str
    type: str
    name: str
    value: str
    note: str = ""


# What to publish ------------------------------------------------------------------------------


def return_path_domain() -> str:
    return str(getattr(settings, "BOUNCE_DOMAIN", "") or "").lower().rstrip(".")


def spf_mechanisms() -> list[str]:
    """The SPF mechanisms that authorise our sending route, from SPF_INCLUDE and SPF_IP."""
    mechanisms = [f"include:{name.lower()}" for name in settings.SPF_INCLUDE]
    for address in settings.SPF_IP:
        network = ipaddress.ip_network(address, strict=False)
        mechanisms.append(f"ip{network.version}:{address}")
    return mechanisms


def spf_suggestion() -> str:
    mechanisms = spf_mechanisms() or ["ip4:<address of your sending host>"]
    return f"v=spf1 {' '.join(mechanisms)} ~all"


def dmarc_suggestion(domain: str) -> str:
    address = settings.DMARC_REPORT_ADDRESS or f"dmarc-reports@{domain}"
    return f"v=DMARC1; p=none; rua=mailto:{address}"


def records_to_publish(sending_domain: SendingDomain) -> list[DnsRecord]:
    domain = sending_domain.domain
    long_note = "Longer than 255 characters: most DNS hosts split it for you; otherwise enter it as two quoted strings."

    def dkim_record(purpose: str, selector: str, algorithm: str, public_key: str) -> DnsRecord:
        value = key_record(algorithm=algorithm, public_key=public_key)
        note = long_note if len(value) > TXT_STRING_LIMIT else ""
        return DnsRecord(purpose, "TXT", f"{selector}._domainkey.{domain}", value, note)

    records = [
        dkim_record("dkim_rsa", sending_domain.dkim_selector_rsa, "rsa", sending_domain.dkim_public_key_rsa),
        dkim_record(
            "dkim_ed25519", sending_domain.dkim_selector_ed25519, "ed25519", sending_domain.dkim_public_key_ed25519
        ),
        DnsRecord(
            "spf",
            "TXT",
            domain,
            spf_suggestion(),
            "A domain has one SPF record: if it has one already, add these mechanisms to it instead.",
        ),
        DnsRecord(
            "dmarc",
            "TXT",
            f"_dmarc.{domain}",
            dmarc_suggestion(domain),
            "p=none to start; p=quarantine once the aggregate reports show all your mail passing.",
        ),
    ]
    bounce_domain = return_path_domain()
    if bounce_domain and bounce_domain != domain:
        records.append(
            DnsRecord(
                "return_path_spf",
                "TXT",
                bounce_domain,
                spf_suggestion(),
                f"Once for the whole installation: the return path of every message is bounce+…@{bounce_domain}, "
                "which also needs an MX record naming the host that runs `manage.py bounce_server`.",
            )
        )
    return records


# Resolving ------------------------------------------------------------------------------------


def resolver_from_settings() -> dns.resolver.Resolver:
    """A resolver bounded by DNS_TIMEOUT_SECONDS, asking DNS_NAMESERVERS when set. Raises
    dns.resolver.NoResolverConfiguration when neither they nor the system name any."""
    if settings.DNS_NAMESERVERS:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(settings.DNS_NAMESERVERS)
    else:
        resolver = dns.resolver.Resolver()
    resolver.port = settings.DNS_PORT
    resolver.timeout = resolver.lifetime = settings.DNS_TIMEOUT_SECONDS
    return resolver


@dataclass(frozen=True)
class Lookup:
    values: list[str]
    failure: str = ""  # why there is no answer to trust (not: the name or record does not exist)


class _Lookups:
    """Lookups that share one time budget (DNS_TIMEOUT_SECONDS for the whole check): a domain
    whose nameservers do not answer costs that once, not once per record."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.deadline = time.monotonic() + settings.DNS_TIMEOUT_SECONDS

    def __call__(self, name: str, rdtype: str) -> Lookup:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return Lookup([], "the DNS check ran out of time")
        return _lookup(self.resolver, name, rdtype, lifetime=remaining)


def _lookup(resolver: Resolver, name: str, rdtype: str, *, lifetime: float) -> Lookup:
    try:
        answer = resolver.resolve(name, rdtype, lifetime=lifetime)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Lookup([])
    except dns.exception.Timeout:
        return Lookup([], "the lookup timed out")
    except dns.resolver.NoNameservers:
        return Lookup([], "no nameserver gave an answer (SERVFAIL or refused)")
    except (dns.exception.DNSException, OSError, ValueError) as error:
        return Lookup([], f"the lookup failed ({error.__class__.__name__}: {error})")
    if rdtype == "TXT":
        return Lookup([b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer])
    return Lookup([rdata.to_text() for rdata in answer])


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        name, separator, value = part.partition("=")
        if separator:
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


# Checking -------------------------------------------------------------------------------------


def check_sending_domain(sending_domain: SendingDomain, *, resolver: Resolver | None = None) -> DnsReport:
    report = DnsReport(checked_at=timezone.now())
    if resolver is None:
        try:
            resolver = resolver_from_settings()
        except dns.exception.DNSException as error:
            report.findings.append(
                Finding("dns_unavailable", ERROR, f"No DNS resolver is configured here ({error}): set DNS_NAMESERVERS.")
            )
            return report
    domain = sending_domain.domain
    lookup_in = _Lookups(resolver)
    report.findings += _check_spf(lookup_in, domain, spf_mechanisms())
    for kind, selector, algorithm, public_key in (
        ("rsa", sending_domain.dkim_selector_rsa, "rsa", sending_domain.dkim_public_key_rsa),
        ("ed25519", sending_domain.dkim_selector_ed25519, "ed25519", sending_domain.dkim_public_key_ed25519),
    ):
        report.findings += _check_dkim(lookup_in, domain, kind, selector, algorithm, public_key)
    dmarc_findings, dmarc_domain = _check_dmarc(lookup_in, domain)
    report.findings += dmarc_findings
    report.findings += _check_return_path(lookup_in, domain, dmarc_domain)
    return report


def _check_spf(lookup_in: _Lookups, domain: str, required: list[str], *, code: str = "spf") -> list[Finding]:
    lookup = lookup_in(domain, "TXT")
    if lookup.failure:
        return [
            Finding(f"{code}_lookup_failed", ERROR, f"Could not look up the SPF record of {domain}: {lookup.failure}.")
        ]
    records = [value for value in lookup.values if value.lower() == "v=spf1" or value.lower().startswith("v=spf1 ")]
    if not records:
        return [Finding(f"{code}_missing", ERROR, f'No SPF record on {domain}: publish TXT "{spf_suggestion()}".')]
    if len(records) > 1:
        return [
            Finding(
                f"{code}_multiple",
                ERROR,
                f"{domain} has {len(records)} SPF records, which makes SPF fail for every message (permerror): "
                "merge them into one.",
            )
        ]
    terms = [term.lower().lstrip("+") for term in records[0].split()[1:]]
    findings = []
    if "all" in terms:
        findings.append(
            Finding(
                f"{code}_allows_anyone",
                WARNING,
                f"The SPF record of {domain} ends in +all, which lets anyone send as {domain}: use ~all.",
            )
        )
    if not required:
        findings.append(
            Finding(
                f"{code}_present",
                INFO,
                f"{domain} has an SPF record. Whether it authorises our sending route cannot be told: the "
                "operator sets SPF_INCLUDE or SPF_IP for that.",
            )
        )
        return findings
    # Only the record's own terms are read: a route authorised through a nested include of
    # another include is reported missing, with the mechanism to add directly.
    missing = [mechanism for mechanism in required if not _spf_names(terms, mechanism)]
    if missing:
        findings.append(
            Finding(
                f"{code}_route_not_authorised",
                ERROR,
                f"SPF does not authorise our sending route: add {' '.join(missing)} to the SPF record of {domain} "
                "(before its all mechanism).",
            )
        )
    else:
        findings.append(Finding(f"{code}_ok", OK, f"The SPF record of {domain} authorises our sending route."))
    return findings


def _spf_names(terms: list[str], mechanism: str) -> bool:
    if mechanism in terms:
        return True
    kind, _, address = mechanism.partition(":")
    if kind not in ("ip4", "ip6"):
        return False
    wanted = ipaddress.ip_network(address, strict=False)
    for term in terms:
        term_kind, _, value = term.partition(":")
        if term_kind == kind and value:
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                continue
            if wanted.version == network.version and wanted.subnet_of(network):  # type: ignore[arg-type]
                return True
    return False


def _check_dkim(
    lookup_in: _Lookups, domain: str, kind: str, selector: str, algorithm: str, public_key: str
) -> list[Finding]:
    name = f"{selector}._domainkey.{domain}"
    label = "RSA" if kind == "rsa" else "Ed25519"
    expected = key_record(algorithm=algorithm, public_key=public_key)
    lookup = lookup_in(name, "TXT")
    if lookup.failure:
        return [
            Finding(
                f"dkim_{kind}_lookup_failed", ERROR, f"Could not look up the DKIM record at {name}: {lookup.failure}."
            )
        ]
    if not lookup.values:
        return [Finding(f"dkim_{kind}_missing", ERROR, f'No DKIM record at {name}: publish TXT "{expected}".')]
    if len(lookup.values) > 1:
        return [
            Finding(
                f"dkim_{kind}_multiple",
                ERROR,
                f'{name} has {len(lookup.values)} TXT records; receivers may read any of them: keep only "{expected}".',
            )
        ]
    tags = _tags(lookup.values[0])
    published = "".join(tags.get("p", "").split())
    if tags.get("v", "DKIM1") != "DKIM1" or tags.get("k", "rsa").lower() != algorithm:
        return [
            Finding(
                f"dkim_{kind}_wrong_kind",
                ERROR,
                f'The record at {name} is not a DKIM {label} key record: replace it with TXT "{expected}".',
            )
        ]
    if not published:
        return [
            Finding(
                f"dkim_{kind}_revoked", ERROR, f'The DKIM key at {name} is revoked (empty p=): publish "{expected}".'
            )
        ]
    if published != public_key:
        return [
            Finding(
                f"dkim_{kind}_mismatch",
                ERROR,
                f'The DKIM record at {name} publishes a different key than ours: replace it with TXT "{expected}".',
            )
        ]
    return [Finding(f"dkim_{kind}_ok", OK, f"The DKIM {label} record at {name} matches our key.")]


def _check_dmarc(lookup_in: _Lookups, domain: str) -> tuple[list[Finding], str]:
    """Findings about the DMARC record that applies to `domain`, and where it was found ('' if
    nowhere). Walks up from the domain as receivers do for a subdomain without its own record."""
    for candidate in domain_and_parents(domain):
        name = f"_dmarc.{candidate}"
        lookup = lookup_in(name, "TXT")
        if lookup.failure:
            return [
                Finding(
                    "dmarc_lookup_failed", ERROR, f"Could not look up the DMARC record at {name}: {lookup.failure}."
                )
            ], ""
        records = [value for value in lookup.values if value.replace(" ", "").upper().startswith("V=DMARC1")]
        if not records:
            continue
        if len(records) > 1:
            return [
                Finding(
                    "dmarc_multiple",
                    ERROR,
                    f"{name} has {len(records)} DMARC records, so receivers ignore them all: keep one.",
                )
            ], candidate
        return _dmarc_findings(domain, candidate, _tags(records[0])), candidate
    return [
        Finding(
            "dmarc_missing",
            ERROR,
            f'DMARC record missing: publish TXT "{dmarc_suggestion(domain)}" at _dmarc.{domain}. Gmail and Yahoo '
            "require one of bulk senders.",
        )
    ], ""


def _dmarc_findings(domain: str, found_at: str, tags: dict[str, str]) -> list[Finding]:
    policy = tags.get("p", "").lower()
    if found_at != domain:
        policy = tags.get("sp", policy).lower()
    if policy not in ("none", "quarantine", "reject"):
        return [
            Finding(
                "dmarc_invalid",
                ERROR,
                f"The DMARC record at _dmarc.{found_at} has no valid policy (p=none, quarantine or reject): "
                f'publish "{dmarc_suggestion(domain)}".',
            )
        ]
    where = "" if found_at == domain else f" (the record of {found_at}, which covers its subdomains)"
    findings = []
    if policy == "none":
        findings.append(
            Finding(
                "dmarc_policy_none",
                INFO,
                f"DMARC policy p=none{where}: fine to start (mail is delivered and reports come in, and it meets "
                "Gmail's and Yahoo's bulk-sender rule); move to p=quarantine once the reports show all your mail "
                "passing.",
            )
        )
    else:
        findings.append(Finding("dmarc_ok", OK, f"DMARC policy p={policy}{where}."))
    if "rua" not in tags:
        findings.append(
            Finding(
                "dmarc_no_reports",
                INFO,
                "The DMARC record asks for no aggregate reports: add rua=mailto:<address> to see who sends as "
                f"{domain} and whether it passes.",
            )
        )
    if tags.get("adkim", "r").lower() == "s":
        findings.append(
            Finding(
                "dkim_alignment_strict",
                WARNING,
                f"DMARC asks for strict DKIM alignment (adkim=s): only mail From exactly @{domain} aligns; mail "
                f"From its subdomains fails DMARC.",
            )
        )
    else:
        findings.append(
            Finding(
                "dkim_aligned",
                OK,
                f"Mail From @{domain} and its subdomains is signed with d={domain}: DKIM aligns with the From "
                "domain (relaxed).",
            )
        )
    return findings


def _aligned(first: str, second: str, organizational_domain: str) -> bool:
    """Relaxed alignment without a public-suffix list: one domain inside the other, or both
    inside the domain whose DMARC record applies (the organizational domain, in practice)."""
    if first == second or first.endswith(f".{second}") or second.endswith(f".{first}"):
        return True
    return bool(organizational_domain) and all(
        name == organizational_domain or name.endswith(f".{organizational_domain}") for name in (first, second)
    )


def _check_return_path(lookup_in: _Lookups, domain: str, dmarc_domain: str) -> list[Finding]:
    bounce_domain = return_path_domain()
    if not bounce_domain or bounce_domain == domain:
        return []
    findings = []
    if _aligned(domain, bounce_domain, dmarc_domain):
        findings.append(
            Finding(
                "return_path_aligned",
                OK,
                f"The return path (bounce+…@{bounce_domain}) is in {domain}'s organization: SPF aligns too.",
            )
        )
    else:
        findings.append(
            Finding(
                "return_path_not_aligned",
                WARNING,
                f"The return path (bounce+…@{bounce_domain}) is outside {domain}'s organization, so SPF cannot "
                "align for DMARC; DMARC passes through the aligned DKIM signature. To align SPF too, the operator "
                f"sets BOUNCE_DOMAIN to a subdomain of {domain}.",
            )
        )
    # The return path's own records are the operator's, shared by every domain: warnings here.
    for finding in _check_spf(lookup_in, bounce_domain, spf_mechanisms(), code="return_path_spf"):
        severity = WARNING if finding.severity == ERROR else finding.severity
        findings.append(Finding(finding.code, severity, finding.message))
    mx = lookup_in(bounce_domain, "MX")
    if not mx.failure and not mx.values:
        findings.append(
            Finding(
                "return_path_mx_missing",
                WARNING,
                f"{bounce_domain} has no MX record: bounces cannot come back. Point it at the host that runs "
                "`manage.py bounce_server`.",
            )
        )
    return findings
