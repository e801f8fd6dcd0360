"""Two organizations, Alpha and Bravo, each with one row of every organization-scoped model.

Every text a row shows carries its organization's marker ("alpha" or "bravo"), so a page that
leaks a row of the other organization gives itself away by that word.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import admin
from django.db import models
from django.urls import reverse
from django.utils import timezone

from api.models import IdempotencyRecord
from deliverability.models import BounceReport
from deliverability.tests.factories import SendingDomainFactory
from delivery.models import Event
from delivery.tests.factories import DeliveryRouteFactory, EventFactory, MessageFactory, enrollment_for
from experiments.models import Assignment, Experiment, Variant
from organizations.models import ApiKey, Membership, Organization
from organizations.services import api_key_create
from organizations.tests.factories import OrganizationFactory, member
from sequences.models import Step
from sequences.tests.factories import EmailTemplateFactory, SequenceFactory, StepFactory
from subscribers import services as subscriber_services
from subscribers.addresses import email_hash
from subscribers.models import ConsentRecord, ContactEvent, ContactImport, Suppression
from subscribers.tests.factories import ContactFactory, ContactListFactory, SubscribeFormFactory, TagFactory


@dataclass
class Tenant:
    marker: str
    organization: Organization
    owner: object
    suppressed_email: str
    rows: dict[type[models.Model], models.Model] = field(default_factory=dict)

    def row(self, model: type[models.Model]) -> models.Model:
        return self.rows[model]


def build_tenant(marker: str) -> Tenant:
    title = marker.capitalize()
    organization = OrganizationFactory(name=f"{title} Org", slug=f"{marker}-org")
    owner = member(organization, Membership.Role.OWNER, username=f"{marker}-owner")
    contact_list = ContactListFactory(organization=organization, name=f"{marker} list")
    tag = TagFactory(organization=organization, name=f"{marker}-tag")
    contact = ContactFactory(
        organization=organization, email=f"{marker}-person@{marker}.example", first_name=f"{title}ina"
    )
    contact.lists.add(contact_list)
    contact.tags.add(tag)
    suppressed_email = f"{marker}-gone@{marker}.example"
    suppression = subscriber_services.suppression_add(
        organization=organization, email=suppressed_email, reason=Suppression.Reason.MANUAL, detail=f"{marker} detail"
    )
    template = EmailTemplateFactory(organization=organization, name=f"{marker} template", subject=f"{marker} subject")
    sequence = SequenceFactory(
        organization=organization, name=f"{marker} sequence", from_email=f"news@{marker}.example"
    )
    step = StepFactory(sequence=sequence, position=1, kind=Step.Kind.EMAIL, template=template, name=f"{marker} step")
    enrollment = enrollment_for(sequence, contact)
    message = MessageFactory(
        enrollment=enrollment, step=step, subject=f"{marker} message subject", recipient=contact.email
    )
    event = EventFactory(message=message, type=Event.Type.CLICK, url=f"https://{marker}.example/clicked")
    membership = Membership.objects.get(organization=organization, user=owner)
    api_key, _ = api_key_create(organization=organization, name=f"{marker} key", scope=ApiKey.Scope.READ)
    custom_event = ContactEvent.objects.create(
        organization=organization, contact=contact, name=f"{marker}-signup", occurred_at=timezone.now()
    )
    contact_import = ContactImport.objects.create(
        organization=organization, token=f"{marker}-import", file=f"imports/{marker}.csv", filename=f"{marker}.csv"
    )
    idempotency_record = IdempotencyRecord.objects.create(
        organization=organization,
        caller=f"key:{api_key.pk}",
        key=f"{marker}-key",
        method="POST",
        path="/api/v1/tags/",
        fingerprint="0" * 64,
        status_code=201,
    )
    sending_domain = SendingDomainFactory(organization=organization, domain=f"{marker}.example")
    route = DeliveryRouteFactory(organization=organization, name=f"{marker} route")
    bounce_report = BounceReport.objects.create(
        organization=organization,
        message=message,
        contact=contact,
        source=BounceReport.Source.INBOUND,
        classification=BounceReport.Classification.SOFT,
        recipient_hash=email_hash(contact.email),
        status="4.2.2",
        reason="mailboxfull",
        dedupe_key=f"{marker}-report",
        received_at=timezone.now(),
    )
    subscribe_form = SubscribeFormFactory(organization=organization, name=f"{marker} form", contact_list=contact_list)
    consent_record = ConsentRecord.objects.create(
        organization=organization,
        contact=contact,
        email_hash=email_hash(contact.email),
        action=ConsentRecord.Action.SUBSCRIBE,
        source=f"{marker}-form",
        occurred_at=timezone.now(),
    )
    # A split test lives in a sequence of its own, so the one above keeps its single step.
    tested = SequenceFactory(organization=organization, name=f"{marker} tested", from_email=f"ab@{marker}.example")
    split_step = StepFactory(
        sequence=tested, position=1, kind=Step.Kind.SPLIT, template=template, name=f"{marker} split"
    )
    experiment = Experiment.objects.create(organization=organization, step=split_step, name=f"{marker} experiment")
    variant = Variant.objects.create(organization=organization, experiment=experiment, name=f"{marker} variant")
    assignment = Assignment.objects.create(
        organization=organization,
        experiment=experiment,
        variant=variant,
        enrollment=enrollment_for(tested, contact),
        contact=contact,
        assigned_at=timezone.now(),
    )
    rows = {
        Organization: organization,
        Experiment: experiment,
        Variant: variant,
        Assignment: assignment,
        Membership: membership,
        type(contact_list): contact_list,
        type(tag): tag,
        type(contact): contact,
        Suppression: suppression,
        type(template): template,
        type(sequence): sequence,
        Step: step,
        type(enrollment): enrollment,
        type(message): message,
        type(event): event,
        ApiKey: api_key,
        ContactEvent: custom_event,
        ContactImport: contact_import,
        IdempotencyRecord: idempotency_record,
        type(sending_domain): sending_domain,
        type(route): route,
        BounceReport: bounce_report,
        type(subscribe_form): subscribe_form,
        ConsentRecord: consent_record,
    }
    return Tenant(marker=marker, organization=organization, owner=owner, suppressed_email=suppressed_email, rows=rows)


def organization_scoped_admins() -> list[tuple[type[models.Model], admin.ModelAdmin]]:
    """Every model registered in the admin that belongs to an organization, and Organization."""
    scoped = []
    for model, model_admin in admin.site._registry.items():
        field_names = {model_field.name for model_field in model._meta.get_fields()}
        if model is Organization or "organization" in field_names:
            scoped.append((model, model_admin))
    return sorted(scoped, key=lambda pair: pair[0]._meta.label)


def organization_of(row: models.Model) -> int:
    return row.pk if isinstance(row, Organization) else row.organization_id


def admin_url(model: type[models.Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def search_term_for(tenant: Tenant, model: type[models.Model]) -> str:
    """A term that finds the tenant's row of `model` through its admin search."""
    # Only the hash of a suppressed address is stored: staff search by the address itself.
    return tenant.suppressed_email if model is Suppression else tenant.marker
