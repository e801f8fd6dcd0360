"""A contact's tags and lists over the API: joined and left by ids of the same organization;
a tag that is a sequence's goal takes the contact out of that sequence."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client, role_client
from organizations.models import Membership
from sequences import services as sequence_services
from sequences.models import Enrollment
from subscribers.tests.factories import ContactFactory, ContactListFactory, TagFactory, sequence_with_a_step

pytestmark = pytest.mark.django_db


def names(response, kind: str) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(entry["name"] for entry in response.json()[kind])


def test_tags_are_added_and_removed_by_ids() -> None:
    contact = ContactFactory()
    vip, beta, gamma = (TagFactory(organization=contact.organization, name=name) for name in ("vip", "beta", "gamma"))
    client = key_client(contact.organization)
    path = f"/api/v1/contacts/{contact.pk}/tags/"

    assert names(client.post(path, {"tag_ids": [vip.pk, beta.pk, gamma.pk]}, format="json"), "tags") == [
        "beta",
        "gamma",
        "vip",
    ]
    assert names(client.delete(f"{path}?tag_ids={vip.pk},{beta.pk}"), "tags") == ["gamma"]
    assert names(client.delete(f"{path}?tag_ids={gamma.pk}&tag_ids={vip.pk}"), "tags") == []
    assert client.delete(path).status_code == 400
    assert client.post(path, {"tag_ids": []}, format="json").status_code == 400


def test_lists_are_joined_and_left_by_ids() -> None:
    contact = ContactFactory()
    news, offers = (ContactListFactory(organization=contact.organization, name=name) for name in ("News", "Offers"))
    client = key_client(contact.organization)
    path = f"/api/v1/contacts/{contact.pk}/lists/"

    assert names(client.post(path, {"list_ids": [news.pk, offers.pk]}, format="json"), "lists") == ["News", "Offers"]
    assert names(client.post(path, {"list_ids": [news.pk]}, format="json"), "lists") == ["News", "Offers"]
    assert names(client.delete(f"{path}?list_ids={news.pk}"), "lists") == ["Offers"]


def test_another_organizations_tag_list_or_contact_is_not_found_and_changes_nothing() -> None:
    contact, foreign_contact = ContactFactory(), ContactFactory()
    own_tag = TagFactory(organization=contact.organization)
    foreign_tag, foreign_list = (
        TagFactory(organization=foreign_contact.organization),
        ContactListFactory(organization=foreign_contact.organization),
    )
    foreign_contact.tags.add(foreign_tag)
    client = key_client(contact.organization)

    responses = [
        client.post(f"/api/v1/contacts/{contact.pk}/tags/", {"tag_ids": [own_tag.pk, foreign_tag.pk]}, format="json"),
        client.post(f"/api/v1/contacts/{contact.pk}/lists/", {"list_ids": [foreign_list.pk]}, format="json"),
        client.delete(f"/api/v1/contacts/{contact.pk}/tags/?tag_ids={foreign_tag.pk}"),
        client.post(f"/api/v1/contacts/{foreign_contact.pk}/tags/", {"tag_ids": [own_tag.pk]}, format="json"),
        client.delete(f"/api/v1/contacts/{foreign_contact.pk}/tags/?tag_ids={own_tag.pk}"),
    ]

    assert [response.status_code for response in responses] == [404] * 5
    assert "tag_ids" in responses[0].json()["detail"]
    assert (contact.tags.count(), contact.lists.count()) == (0, 0)
    assert list(foreign_contact.tags.all()) == [foreign_tag]


def test_a_goal_tag_added_over_the_api_ends_the_enrollment() -> None:
    contact = ContactFactory()
    customer = TagFactory(organization=contact.organization, name="customer")
    sequence = sequence_with_a_step(contact.organization, goal={"type": "has_tag", "tag": customer.pk})
    enrollment = sequence_services.enrollment_create(sequence=sequence, contact=contact)

    response = key_client(contact.organization).post(
        f"/api/v1/contacts/{contact.pk}/tags/", {"tag_ids": [customer.pk]}, format="json"
    )

    assert response.status_code == 200
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.Status.EXITED, Enrollment.ExitReason.GOAL_REACHED)


def test_a_viewer_cannot_change_memberships() -> None:
    contact = ContactFactory()
    tag = TagFactory(organization=contact.organization)
    viewer = role_client(contact.organization, Membership.Role.VIEWER)

    response = viewer.post(f"/api/v1/contacts/{contact.pk}/tags/", {"tag_ids": [tag.pk]}, format="json")

    assert response.status_code == 403
    assert contact.tags.count() == 0
