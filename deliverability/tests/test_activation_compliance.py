"""A sequence starts only when its mail may go out: a sender on a verified sending domain of the
organization (unless REQUIRE_VERIFIED_SENDING_DOMAIN is off), an unsubscribe link a reader can
see in every email, and the organization's postal address. Every problem is listed at once."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from api.tests.clients import role_client
from deliverability.tests.factories import SendingDomainFactory
from organizations.models import Membership, Organization
from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.models import Sequence
from sequences.tests.helpers import draft_sequence, email_step

pytestmark = pytest.mark.django_db

# The footer would land inside the comment: a mail client shows no unsubscribe link.
FOOTER_HIDDEN = "<html><body><p>Hello</p><!-- tracking notes </body></html>"


@pytest.fixture
def organization(settings) -> Organization:
    settings.REQUIRE_VERIFIED_SENDING_DOMAIN = True
    return OrganizationFactory(name="Acme", postal_address="1 Harbour Road\nPortsmouth")


def ready_sequence(
    organization: Organization, from_email: str = "news@acme.example", html: str | None = None
) -> Sequence:
    sequence = draft_sequence(organization, from_email=from_email)
    email_step(sequence, "Spring news", html=html)
    return sequence


def problems_of(sequence: Sequence) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        services.sequence_activate(sequence=sequence)
    assert Sequence.objects.get(pk=sequence.pk).status == Sequence.Status.DRAFT
    return raised.value.messages


def test_a_sender_on_a_verified_domain_or_its_subdomain_may_start(organization: Organization) -> None:
    SendingDomainFactory(organization=organization, domain="acme.example", verified_at=timezone.now())

    for from_email in ("news@acme.example", "news@letters.acme.example"):
        sequence = services.sequence_activate(sequence=ready_sequence(organization, from_email))
        assert sequence.status == Sequence.Status.ACTIVE


def test_a_sender_on_a_domain_that_is_not_registered_cannot_start(organization: Organization) -> None:
    assert problems_of(ready_sequence(organization)) == [
        "The sender news@acme.example is not on a sending domain of the organization: register acme.example "
        "under sending domains, publish its DNS records and verify it."
    ]


def test_a_sender_on_a_registered_but_unverified_domain_cannot_start(organization: Organization) -> None:
    SendingDomainFactory(organization=organization, domain="acme.example")

    assert problems_of(ready_sequence(organization)) == [
        "The sender's domain acme.example is not verified: publish its DNS records and run the DNS check until "
        "it passes."
    ]


def test_another_organizations_verified_domain_does_not_count(organization: Organization) -> None:
    SendingDomainFactory(domain="acme.example", verified_at=timezone.now())

    [problem] = problems_of(ready_sequence(organization))
    assert "is not on a sending domain of the organization" in problem


def test_with_the_requirement_off_any_sender_may_start(organization: Organization, settings) -> None:
    settings.REQUIRE_VERIFIED_SENDING_DOMAIN = False

    sequence = services.sequence_activate(sequence=ready_sequence(organization, "news@unregistered.example"))

    assert sequence.status == Sequence.Status.ACTIVE


def test_an_email_whose_html_hides_the_unsubscribe_link_cannot_start(organization: Organization, settings) -> None:
    settings.REQUIRE_VERIFIED_SENDING_DOMAIN = False
    sequence = ready_sequence(organization, html=FOOTER_HIDDEN)

    [problem] = problems_of(sequence)

    assert problem.startswith("Step 1: template ")
    assert "hides the unsubscribe link of the footer" in problem


def test_an_email_with_its_own_unsubscribe_link_and_the_footer_may_start(organization: Organization, settings) -> None:
    settings.REQUIRE_VERIFIED_SENDING_DOMAIN = False
    html = '<html><body><p>Hi</p><p><a href="{{ unsubscribe_url }}">Stop these emails</a></p></body></html>'

    assert services.sequence_activate(sequence=ready_sequence(organization, html=html)).status == "active"


def test_an_organization_without_a_postal_address_cannot_start(organization: Organization, settings) -> None:
    settings.REQUIRE_VERIFIED_SENDING_DOMAIN = False
    Organization.objects.filter(pk=organization.pk).update(postal_address="  \n ")
    organization.refresh_from_db()

    [problem] = problems_of(ready_sequence(organization))

    assert problem.startswith("The organization has no postal address")


def test_every_problem_is_listed_at_once(organization: Organization) -> None:
    Organization.objects.filter(pk=organization.pk).update(postal_address="")
    organization.refresh_from_db()
    sequence = ready_sequence(organization, html=FOOTER_HIDDEN)
    email_step(sequence, "Second", html=FOOTER_HIDDEN)

    problems = problems_of(sequence)

    assert len(problems) == 4
    assert problems[0].startswith("The organization has no postal address")
    assert problems[1].startswith("The sender news@acme.example is not on a sending domain")
    assert problems[2].startswith("Step 1: ") and problems[3].startswith("Step 2: ")


def test_the_activate_endpoint_answers_a_problem_listing_each_reason(organization: Organization) -> None:
    Organization.objects.filter(pk=organization.pk).update(postal_address="")
    sequence = ready_sequence(organization)
    client = role_client(organization, Membership.Role.MARKETER)

    response = client.post(f"/api/v1/email-sequences/{sequence.pk}/activate")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    messages = [error["message"] for error in response.json()["errors"]]
    assert len(messages) == 2
    assert messages[0].startswith("The organization has no postal address")
    assert messages[1].startswith("The sender news@acme.example is not on a sending domain")
    assert Sequence.objects.get(pk=sequence.pk).status == Sequence.Status.DRAFT
