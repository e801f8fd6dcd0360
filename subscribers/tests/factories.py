from __future__ import annotations

import factory

from organizations.tests.factories import OrganizationFactory
from subscribers.models import Contact, ContactList, Tag


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


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"tag-{n}")
