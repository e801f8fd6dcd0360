from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deliverability import services
from deliverability.models import SendingDomain


class Command(BaseCommand):
    help = (
        "Check the live DNS (SPF, DKIM, DMARC) of sending domains, store the findings and print them. "
        "Exits with status 1 when a domain is not verified."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domains", nargs="*", help="Domains to check (default: every sending domain).")
        parser.add_argument("--org", help="Only this organization's domains (its slug).")

    def handle(self, *args: Any, domains: list[str], org: str | None, **options: Any) -> None:
        queryset = SendingDomain.objects.select_related("organization").order_by("organization__slug", "domain")
        if org:
            queryset = queryset.filter(organization__slug=org)
        if domains:
            try:
                queryset = queryset.filter(domain__in=[services.domain_normalize(domain) for domain in domains])
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
        if not queryset.exists():
            raise CommandError("No sending domain matches.")
        unverified = 0
        for sending_domain in queryset:
            report = services.sending_domain_check(sending_domain=sending_domain)
            verdict = "verified" if report.verified else "NOT verified"
            self.stdout.write(f"{sending_domain.domain} ({sending_domain.organization.slug}): {verdict}")
            for finding in report.findings:
                self.stdout.write(f"  [{finding.severity}] {finding.code}: {finding.message}")
            unverified += not report.verified
        if unverified:
            raise CommandError(f"{unverified} domain(s) not verified.", returncode=1)
