"""An organization holding one row of every kind the API reaches, for route-walking tests.

`ids` maps the names URL patterns give their id parameters (contact_id, sequence_id, ...) to
the ids of this organization's rows, so a test can fill any route with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from deliverability.models import SendingDomain
from delivery.models import DeliveryRoute, Event
from delivery.tests.factories import EventFactory, MessageFactory, enrollment_for
from organizations.models import ApiKey, Membership, Organization
from organizations.services import api_key_create
from organizations.tests.factories import OrganizationFactory, member
from sequences.models import Step
from sequences.tests.factories import EmailTemplateFactory, SequenceFactory, StepFactory
from subscribers.models import ConsentRecord, ContactEvent, ContactImport, ImportRejection, SubscribeForm
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory


@dataclass
class ApiWorld:
    marker: str
    organization: Organization
    owner: object
    ids: dict[str, int] = field(default_factory=dict)
    emails: list[str] = field(default_factory=list)


def build_api_world(marker: str) -> ApiWorld:
    organization = OrganizationFactory(name=f"{marker.title()} Org", slug=f"{marker}-org")
    owner = member(organization, Membership.Role.OWNER, username=f"{marker}-owner")
    teammate = member(organization, Membership.Role.MARKETER, username=f"{marker}-teammate")
    contact_list = ContactListFactory(organization=organization, name=f"{marker} list")
    tag = TagFactory(organization=organization, name=f"{marker}-tag")
    contact = ContactFactory(organization=organization, email=f"{marker}-person@{marker}.example")
    contact.lists.add(contact_list)
    contact.tags.add(tag)
    template = EmailTemplateFactory(organization=organization, name=f"{marker} template")
    sequence = SequenceFactory(
        organization=organization, name=f"{marker} sequence", from_email=f"news@{marker}.example"
    )
    step = StepFactory(sequence=sequence, position=1, kind=Step.Kind.EMAIL, template=template)
    enrollment = enrollment_for(sequence, contact)
    message = MessageFactory(enrollment=enrollment, step=step, recipient=contact.email)
    event = EventFactory(message=message, type=Event.Type.OPEN)
    custom_event = ContactEvent.objects.create(
        organization=organization, contact=contact, name=f"{marker}-signup", occurred_at=timezone.now()
    )
    contact_import = ContactImport.objects.create(
        organization=organization,
        token=f"{marker}-import",
        file=f"imports/{marker}.csv",
        filename=f"{marker}.csv",
        mapping={"email": "email"},
    )
    ImportRejection.objects.create(
        organization=organization, contact_import=contact_import, line=2, reason="invalid email", raw="x"
    )
    api_key, _ = api_key_create(organization=organization, name=f"{marker} key", scope=ApiKey.Scope.READ)
    sending_domain = SendingDomain.objects.create(
        organization=organization,
        domain=f"{marker}.example",
        dkim_selector_rsa=f"{marker}-rsa",
        dkim_private_key_rsa="not a key",
        dkim_public_key_rsa="not a key",
        dkim_selector_ed25519=f"{marker}-ed",
        dkim_private_key_ed25519="not a key",
        dkim_public_key_ed25519="not a key",
    )
    route = DeliveryRoute.objects.create(
        organization=organization, name=f"{marker} route", kind=DeliveryRoute.Kind.CAPTURE, url="capture:"
    )
    subscribe_form = SubscribeForm.objects.create(
        organization=organization,
        name=f"{marker} form",
        token=f"{marker}-form-token",
        contact_list=contact_list,
        consent_wording="Yes, send me the newsletter.",
    )
    ConsentRecord.objects.create(
        organization=organization,
        contact=contact,
        email_hash="0" * 64,
        action=ConsentRecord.Action.SUBSCRIBE,
        source="api",
        occurred_at=timezone.now(),
    )
    ids = {
        "contact_id": contact.pk,
        "list_id": contact_list.pk,
        "tag_id": tag.pk,
        "template_id": template.pk,
        "sequence_id": sequence.pk,
        "step_id": step.pk,
        "enrollment_id": enrollment.pk,
        "message_id": message.pk,
        "event_id": event.pk,
        "custom_event_id": custom_event.pk,
        "import_id": contact_import.pk,
        "api_key_id": api_key.pk,
        "member_id": Membership.objects.get(user=teammate, organization=organization).pk,
        "membership_id": Membership.objects.get(user=teammate, organization=organization).pk,
        "user_id": teammate.pk,
        "domain_id": sending_domain.pk,
        "route_id": route.pk,
        "form_id": subscribe_form.pk,
    }
    return ApiWorld(marker=marker, organization=organization, owner=owner, ids=ids, emails=[contact.email])
