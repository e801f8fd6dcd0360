"""The contact admin adds and changes contacts through the services: addresses are normalized,
a suppressed address is created unmailable, bad details are form errors (never crashes), a
goal tag given in the admin takes the contact out of that sequence, and the bulk actions
unsubscribe and resubscribe with suppression."""

from __future__ import annotations

import pytest
from django.test import Client

from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory, member
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers import services
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory, TagFactory, contact_admin_data, sequence_with_a_step

pytestmark = pytest.mark.django_db

ADD = "/admin/subscribers/contact/add/"
CHANGELIST = "/admin/subscribers/contact/"


def change_url(contact: Contact) -> str:
    return f"/admin/subscribers/contact/{contact.pk}/change/"


@pytest.fixture
def marketer(client: Client):
    organization = OrganizationFactory()
    person = member(organization, Membership.Role.MARKETER, username="mia")
    client.force_login(person)
    return person


def form_errors(response) -> dict:
    assert response.status_code == 200, f"expected the form again, got {response.status_code}"
    return response.context["adminform"].form.errors


def test_an_added_contact_is_stored_normalized_with_consent_recorded(client: Client, marketer) -> None:
    organization = marketer.memberships.get().organization
    tag = TagFactory(organization=organization)

    response = client.post(
        ADD, contact_admin_data(organization, email="  Ada@BÜCHER.Example ", timezone="Europe/Berlin", tags=[tag.pk])
    )

    assert response.status_code == 302
    contact = Contact.objects.get()
    assert contact.email == "ada@xn--bcher-kva.example"
    assert (contact.status, contact.timezone) == (Contact.Status.ACTIVE, "Europe/Berlin")
    assert contact.consent_source == "added in admin by mia" and contact.consented_at is not None
    assert list(contact.tags.all()) == [tag]


def test_adding_a_suppressed_address_creates_an_unmailable_contact(client: Client, marketer) -> None:
    organization = marketer.memberships.get().organization
    services.suppression_add(organization=organization, email="ada@example.com", reason=Suppression.Reason.BOUNCED)

    client.post(ADD, contact_admin_data(organization, email="ADA@example.com"))

    assert Contact.objects.get().status == Contact.Status.BOUNCED


def test_adding_another_spelling_of_an_existing_address_is_a_form_error(client: Client, marketer) -> None:
    organization = marketer.memberships.get().organization
    ContactFactory(organization=organization, email="ada@example.com")

    response = client.post(ADD, contact_admin_data(organization, email=" Ada@Example.COM"))

    assert form_errors(response)
    assert Contact.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"properties": "[1, 2]"}, "properties"),
        ({"properties": '"just text"'}, "properties"),
    ],
    ids=["malformed-email", "unknown-timezone", "properties-list", "properties-string"],
)
def test_invalid_details_on_add_are_form_errors(client: Client, marketer, changes: dict, field: str) -> None:
    organization = marketer.memberships.get().organization

    response = client.post(ADD, contact_admin_data(organization, **changes))

    assert field in form_errors(response)
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"email": "not-an-address"}, "email"), ({"properties": "[1, 2]"}, "properties")],
    ids=["malformed-email", "properties-list"],
)
def test_invalid_details_on_change_are_form_errors(client: Client, marketer, changes: dict, field: str) -> None:
    contact = ContactFactory(organization=marketer.memberships.get().organization, properties={"plan": "pro"})

    response = client.post(change_url(contact), contact_admin_data(contact.organization, contact, **changes))

    assert field in form_errors(response)
    contact.refresh_from_db()
    assert contact.properties == {"plan": "pro"}


def test_a_changed_address_is_stored_normalized(client: Client, marketer) -> None:
    contact = ContactFactory(organization=marketer.memberships.get().organization, email="ada@example.com")

    response = client.post(
        change_url(contact), contact_admin_data(contact.organization, contact, email=" Ada.L@BÜCHER.example")
    )

    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.email == "ada.l@xn--bcher-kva.example"


def test_giving_a_goal_tag_in_the_admin_takes_the_contact_out_of_that_sequence(client: Client, marketer) -> None:
    organization = marketer.memberships.get().organization
    contact = ContactFactory(organization=organization)
    goal_tag, other_tag = TagFactory(organization=organization), TagFactory(organization=organization)
    sequence = sequence_with_a_step(organization, goal={"type": "has_tag", "tag": goal_tag.pk})
    enrollment = sequence_services.enrollment_create(sequence=sequence, contact=contact)

    client.post(change_url(contact), contact_admin_data(organization, contact, tags=[other_tag.pk]))
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ACTIVE

    response = client.post(
        change_url(contact), contact_admin_data(organization, contact, tags=[other_tag.pk, goal_tag.pk])
    )

    assert response.status_code == 302
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.GOAL_REACHED)
    assert set(contact.tags.all()) == {goal_tag, other_tag}


def test_the_status_cannot_be_set_through_the_form(client: Client, marketer) -> None:
    contact = ContactFactory(organization=marketer.memberships.get().organization)
    services.contact_unsubscribe(contact=contact, source="link")

    client.post(change_url(contact), contact_admin_data(contact.organization, contact, status=Contact.Status.ACTIVE))

    contact.refresh_from_db()
    assert contact.status == Contact.Status.UNSUBSCRIBED


def test_the_bulk_actions_unsubscribe_and_resubscribe_with_the_suppression(client: Client, marketer) -> None:
    organization = marketer.memberships.get().organization
    contacts = [ContactFactory(organization=organization) for _ in range(2)]
    selected = [contact.pk for contact in contacts]

    client.post(CHANGELIST, {"action": "unsubscribe_contacts", "_selected_action": selected, "index": "0"})
    unsubscribed = set(Contact.objects.values_list("status", flat=True))
    suppressed = Suppression.objects.for_org(organization).count()
    client.post(CHANGELIST, {"action": "resubscribe_contacts", "_selected_action": selected, "index": "0"})

    assert (unsubscribed, suppressed) == ({Contact.Status.UNSUBSCRIBED}, 2)
    assert set(Contact.objects.values_list("status", flat=True)) == {Contact.Status.ACTIVE}
    assert not Suppression.objects.exists()
