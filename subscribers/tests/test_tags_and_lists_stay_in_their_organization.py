"""Tags and lists belong to one organization: a contact only ever joins its own organization's,
and gaining a tag that is a sequence's goal takes the contact out of that sequence."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from organizations.tests.factories import OrganizationFactory
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers import services
from subscribers.models import Contact, Tag
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory, sequence_with_a_step

pytestmark = pytest.mark.django_db


def test_get_or_create_returns_the_same_tag_and_list_for_the_same_trimmed_name() -> None:
    organization = OrganizationFactory()

    tag = services.tag_get_or_create(organization=organization, name="vip")
    contact_list = services.list_get_or_create(organization=organization, name="Newsletter")

    assert services.tag_get_or_create(organization=organization, name="  vip ") == tag
    assert services.list_get_or_create(organization=organization, name="Newsletter ") == contact_list
    assert services.tag_get_or_create(organization=OrganizationFactory(), name="vip") != tag


def test_a_contact_cannot_be_created_with_another_organizations_tag_or_list() -> None:
    organization, other = OrganizationFactory(), OrganizationFactory()

    with pytest.raises(ValidationError, match="another organization"):
        services.contact_create(
            organization=organization, email="ada@example.com", tags=[TagFactory(organization=other)]
        )
    with pytest.raises(ValidationError, match="another organization"):
        services.contact_create(
            organization=organization, email="ada@example.com", lists=[ContactListFactory(organization=other)]
        )

    assert not Contact.objects.exists()


def test_a_contact_cannot_join_another_organizations_tag_or_list() -> None:
    contact = ContactFactory()
    foreign_tag, foreign_list = TagFactory(), ContactListFactory()

    with pytest.raises(ValidationError):
        services.contact_tag_add(contact=contact, tag=foreign_tag)
    with pytest.raises(ValidationError):
        services.contact_list_add(contact=contact, contact_list=foreign_list)

    assert (contact.tags.count(), contact.lists.count()) == (0, 0)


def test_a_contact_joins_and_leaves_its_own_organizations_tags_and_lists() -> None:
    contact = ContactFactory()
    tag, contact_list = (
        TagFactory(organization=contact.organization),
        ContactListFactory(organization=contact.organization),
    )

    services.contact_tag_add(contact=contact, tag=tag)
    services.contact_list_add(contact=contact, contact_list=contact_list)
    assert (list(contact.tags.all()), list(contact.lists.all())) == ([tag], [contact_list])

    services.contact_tag_remove(contact=contact, tag=tag)
    assert list(contact.tags.all()) == []


def test_gaining_a_goal_tag_takes_the_contact_out_of_that_sequence_only() -> None:
    contact = ContactFactory()
    organization = contact.organization
    goal_tag: Tag = TagFactory(organization=organization, name="customer")
    with_goal = sequence_with_a_step(organization, goal={"type": "has_tag", "tag": goal_tag.pk})
    without_goal = sequence_with_a_step(organization)
    reached = sequence_services.enrollment_create(sequence=with_goal, contact=contact)
    kept = sequence_services.enrollment_create(sequence=without_goal, contact=contact)

    services.contact_tag_add(contact=contact, tag=goal_tag)

    reached.refresh_from_db()
    kept.refresh_from_db()
    assert (reached.status, reached.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.GOAL_REACHED)
    assert kept.status == Enrollment.Status.ACTIVE


def test_a_property_change_that_meets_a_goal_takes_the_contact_out() -> None:
    contact = ContactFactory(properties={"plan": "free"})
    sequence = sequence_with_a_step(
        contact.organization, goal={"type": "property", "key": "plan", "operator": "equals", "value": "pro"}
    )
    enrollment = sequence_services.enrollment_create(sequence=sequence, contact=contact)

    services.contact_update(contact=contact, properties={"plan": "pro"})

    enrollment.refresh_from_db()
    assert enrollment.exit_reason == Enrollment.ExitReason.GOAL_REACHED
