"""REST operations on sending domains: register one (and get the DNS records to publish), read,
remove, and check its live DNS.

Anyone in the organization may read them; registering, removing and checking are for admins and
owners, since a domain decides whose mail the organization may sign. Private keys never leave
the database: the answers carry public keys only, inside the records to publish.
"""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.idempotency import idempotent
from api.permissions import Access
from api.schema import ordering_parameter
from api.views import OrganizationApiView
from deliverability import dnscheck, selectors, services
from deliverability.models import SendingDomain

TAGS = ["sending domains"]
DOMAIN_ID = OpenApiParameter("domain_id", int, OpenApiParameter.PATH, description="Id of the sending domain.")


class DnsRecordOutput(serializers.Serializer):
    purpose = serializers.ChoiceField(
        choices=["dkim_rsa", "dkim_ed25519", "spf", "dmarc", "return_path_spf"], help_text="What the record is for."
    )
    type = serializers.CharField(help_text="DNS record type.")
    name = serializers.CharField(help_text="The name to publish the record at.")
    value = serializers.CharField()
    note = serializers.CharField(help_text="Empty unless there is something to know when publishing it.")


class FindingOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Stable identifier, such as dkim_rsa_missing or dmarc_policy_none.")
    severity = serializers.ChoiceField(choices=list(dnscheck.SEVERITIES), help_text="error: keeps it unverified.")
    message = serializers.CharField(help_text="What was found and what to do about it.")


class SendingDomainOutput(serializers.ModelSerializer):
    verified = serializers.BooleanField(source="is_verified")
    dkim_selectors = serializers.SerializerMethodField()
    dns_records = serializers.SerializerMethodField(help_text="The records to publish.")
    findings = serializers.SerializerMethodField(help_text="What the last DNS check found; empty before the first.")

    class Meta:
        model = SendingDomain
        fields = [
            "id",
            "domain",
            "verified",
            "verified_at",
            "last_checked_at",
            "created_at",
            "dkim_selectors",
            "dns_records",
            "findings",
        ]

    @extend_schema_field(
        serializers.DictField(child=serializers.CharField(), help_text="Selector of each key: rsa, ed25519.")
    )
    def get_dkim_selectors(self, sending_domain: SendingDomain) -> dict[str, str]:
        return {"rsa": sending_domain.dkim_selector_rsa, "ed25519": sending_domain.dkim_selector_ed25519}

    @extend_schema_field(DnsRecordOutput(many=True))
    def get_dns_records(self, sending_domain: SendingDomain) -> list[dict[str, str]]:
        return [asdict(record) for record in dnscheck.records_to_publish(sending_domain)]

    @extend_schema_field(FindingOutput(many=True))
    def get_findings(self, sending_domain: SendingDomain) -> list[dict[str, str]]:
        findings = (sending_domain.check_results or {}).get("findings", [])
        return FindingOutput(findings, many=True).data


class SendingDomainInput(serializers.Serializer):
    domain = serializers.CharField(
        max_length=253, help_text="The domain of the From addresses, such as example.com (Unicode or IDNA)."
    )


class SendingDomainCollectionApi(OrganizationApiView):
    """The organization's sending domains."""

    required_access = {"GET": Access.READ, "POST": Access.MANAGE}
    ordering_fields = ("domain", "created_at")

    @extend_schema(
        operation_id="sending_domains_list",
        tags=TAGS,
        parameters=[ordering_parameter(*ordering_fields)],
        responses=SendingDomainOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.sending_domain_list(organization=self.organization), SendingDomainOutput)

    @extend_schema(
        operation_id="sending_domains_create",
        tags=TAGS,
        request=SendingDomainInput,
        responses={201: SendingDomainOutput},
        description=(
            "Registers a domain and makes its DKIM keys (RSA 2048 and Ed25519). The answer lists the DNS "
            "records to publish; then run the check (verify). Mail From the domain is signed from now on."
        ),
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = SendingDomainInput(data=request.data)
        data.is_valid(raise_exception=True)
        sending_domain = services.sending_domain_register(organization=self.organization, **data.validated_data)
        return Response(SendingDomainOutput(sending_domain).data, status=status.HTTP_201_CREATED)


class SendingDomainItemApi(OrganizationApiView):
    """One sending domain."""

    required_access = {"GET": Access.READ, "DELETE": Access.MANAGE}

    @extend_schema(
        operation_id="sending_domains_retrieve", tags=TAGS, parameters=[DOMAIN_ID], responses=SendingDomainOutput
    )
    def get(self, request: Request, domain_id: int) -> Response:
        sending_domain = selectors.sending_domain_get(organization=self.organization, domain_id=domain_id)
        return Response(SendingDomainOutput(sending_domain).data)

    @extend_schema(
        operation_id="sending_domains_destroy",
        tags=TAGS,
        parameters=[DOMAIN_ID],
        responses={204: None},
        description="Removes the domain and its keys: its mail goes out unsigned, and new sequences cannot use it.",
    )
    def delete(self, request: Request, domain_id: int) -> Response:
        sending_domain = selectors.sending_domain_get(organization=self.organization, domain_id=domain_id)
        services.sending_domain_delete(sending_domain=sending_domain)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SendingDomainVerifyApi(OrganizationApiView):
    """Check one sending domain's live DNS."""

    required_access = {"POST": Access.MANAGE}

    @extend_schema(
        operation_id="sending_domains_verify",
        tags=TAGS,
        parameters=[DOMAIN_ID],
        request=None,
        responses=SendingDomainOutput,
        description=(
            "Looks up SPF, both DKIM records and DMARC now, stores the findings and answers them. `verified` "
            "is true when no finding is an error. A lookup that times out is a finding, not a failure."
        ),
    )
    def post(self, request: Request, domain_id: int) -> Response:
        sending_domain = selectors.sending_domain_get(organization=self.organization, domain_id=domain_id)
        services.sending_domain_check(sending_domain=sending_domain)
        return Response(SendingDomainOutput(sending_domain).data)
