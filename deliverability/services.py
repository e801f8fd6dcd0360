"""Writes on sending domains: registering one (with its DKIM keys), checking its DNS, removing it."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from deliverability import dkim, dnscheck
from deliverability.models import SendingDomain
from organizations.models import Organization

LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def domain_normalize(value: str) -> str:
    """The domain in lower-case IDNA form; raises ValidationError when it is not a domain
    mail can be sent from (an address, a URL, a bare name, an IP address)."""
    domain = value.strip().rstrip(".").lower()
    if "@" in domain or "/" in domain or ":" in domain:
        raise ValidationError(f"{value!r} is not a domain name: give only the domain, such as example.com.")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(f"{value!r} is not a valid internationalized domain name.") from None
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(LABEL.match(label) for label in labels):
        raise ValidationError(
            f"{value!r} is not a valid domain name: it needs at least two labels of letters, digits and hyphens."
        )
    if labels[-1].isdigit():
        raise ValidationError(f"{value!r} is an IP address; sending domains are names.")
    return domain


@transaction.atomic
def sending_domain_register(*, organization: Organization, domain: str) -> SendingDomain:
    """Add a sending domain with fresh DKIM keys (RSA 2048 and Ed25519). It signs mail at once;
    it counts as verified once a DNS check finds its records."""
    try:
        domain = domain_normalize(domain)
    except ValidationError as error:
        raise ValidationError({"domain": error.messages}) from None
    if SendingDomain.objects.for_org(organization).filter(domain=domain).exists():
        raise ValidationError({"domain": f"{domain} is already a sending domain of this organization."})
    rsa_key, ed25519_key = dkim.rsa_key_generate(), dkim.ed25519_key_generate()
    rsa_selector, ed25519_selector = dkim.selectors_for(timezone.now())
    try:
        with transaction.atomic():
            return SendingDomain.objects.create(
                organization=organization,
                domain=domain,
                dkim_selector_rsa=rsa_selector,
                dkim_private_key_rsa=rsa_key.private,
                dkim_public_key_rsa=rsa_key.public,
                dkim_selector_ed25519=ed25519_selector,
                dkim_private_key_ed25519=ed25519_key.private,
                dkim_public_key_ed25519=ed25519_key.public,
            )
    except IntegrityError:
        # Registered by a concurrent request since the check above.
        raise ValidationError({"domain": f"{domain} is already a sending domain of this organization."}) from None


def sending_domain_check(
    *, sending_domain: SendingDomain, resolver: dnscheck.Resolver | None = None
) -> dnscheck.DnsReport:
    """Look up the domain's live DNS, store what was found, and set or clear `verified_at`
    (kept from the first passing check while checks keep passing)."""
    report = dnscheck.check_sending_domain(sending_domain, resolver=resolver)
    if report.verified:
        sending_domain.verified_at = sending_domain.verified_at or report.checked_at
    else:
        sending_domain.verified_at = None
    sending_domain.last_checked_at = report.checked_at
    sending_domain.check_results = report.as_json()
    sending_domain.save(update_fields=["verified_at", "last_checked_at", "check_results"])
    return report


def sending_domain_delete(*, sending_domain: SendingDomain) -> None:
    """Mail from the domain goes out unsigned from the next send batch on; sequences already
    active keep running (the check is made when a sequence starts)."""
    sending_domain.delete()
