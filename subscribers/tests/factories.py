from __future__ import annotations

import json

import factory

from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact, ContactList, SubscribeForm, Tag


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = "Example"
    consent_source = "test"


class ContactListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactList

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"List {n}")


class SubscribeFormFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubscribeForm

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Sign-up form {n}")
    token = factory.Sequence(lambda n: f"form-token-{n}")
    consent_wording = "Yes, email me the weekly newsletter. I can unsubscribe at any time."


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"tag-{n}")


def sequence_with_a_step(organization, **fields):
    """An active sequence of `organization` whose one step waits a day: enrollments stay active."""
    from sequences.tests.factories import SequenceFactory, StepFactory

    sequence = SequenceFactory(organization=organization, **fields)
    StepFactory(sequence=sequence, position=1)
    return sequence


def contact_admin_data(organization, contact: Contact | None = None, **changes: object) -> dict[str, object]:
    """What the contact admin's form posts: a new contact's, or `contact`'s as it stands, with `changes`."""
    data: dict[str, object] = {
        "organization": organization.pk,
        "email": contact.email if contact else "newcomer@example.com",
        "first_name": contact.first_name if contact else "New",
        "last_name": contact.last_name if contact else "Comer",
        "timezone": contact.timezone if contact else "",
        "properties": json.dumps(contact.properties if contact else {}),
        "consent_source": contact.consent_source if contact else "",
        "consented_at_0": "",
        "consented_at_1": "",
        "consent_ip": "",
        "lists": [item.pk for item in contact.lists.all()] if contact else [],
        "tags": [item.pk for item in contact.tags.all()] if contact else [],
    }
    data.update(changes)
    return data
