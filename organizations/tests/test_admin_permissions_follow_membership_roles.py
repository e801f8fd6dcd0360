"""Membership roles decide what a person may do in the admin: any member views, marketers (and
above) edit the organization's data, owners and admins manage the organization and its
members, only superusers create or delete organizations; records of what happened are
read-only for everyone."""

from __future__ import annotations

import pytest
from django.test import Client

from delivery.models import Message
from organizations.models import Membership, Organization
from organizations.tests.factories import UserFactory, member
from organizations.tests.tenant_world import Tenant, admin_url
from subscribers.models import Contact, Tag
from subscribers.tests.factories import contact_admin_data

EDITING = [Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.MARKETER]


def contact_form(contact: Contact, **changes: object) -> dict[str, object]:
    return contact_admin_data(contact.organization, contact, **changes)


def test_a_viewer_sees_the_data_but_every_page_is_read_only(client: Client, alpha: Tenant) -> None:
    contact = alpha.row(Contact)
    client.force_login(member(alpha.organization, Membership.Role.VIEWER))

    changelist = client.get(admin_url(Contact, "changelist"))
    change_page = client.get(admin_url(Contact, "change", contact.pk))

    assert [row.pk for row in changelist.context["cl"].result_list] == [contact.pk]
    assert change_page.status_code == 200
    assert change_page.context["has_change_permission"] is False
    assert 'name="_save"' not in change_page.content.decode()


def test_a_viewer_can_neither_change_nor_add_nor_delete(client: Client, alpha: Tenant) -> None:
    contact = alpha.row(Contact)
    client.force_login(member(alpha.organization, Membership.Role.VIEWER))

    change = client.post(admin_url(Contact, "change", contact.pk), contact_form(contact, first_name="Changed"))
    add = client.get(admin_url(Contact, "add"))
    delete = client.post(admin_url(Tag, "delete", alpha.row(Tag).pk), {"post": "yes"})

    assert (change.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    contact.refresh_from_db()
    assert contact.first_name == "Alphaina"
    assert Tag.objects.filter(pk=alpha.row(Tag).pk).exists()


def test_a_viewer_cannot_unsubscribe_contacts_through_the_bulk_action(client: Client, alpha: Tenant) -> None:
    contact = alpha.row(Contact)
    client.force_login(member(alpha.organization, Membership.Role.VIEWER))

    client.post(
        admin_url(Contact, "changelist"),
        {"action": "unsubscribe_contacts", "_selected_action": [contact.pk], "index": "0"},
    )

    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE


@pytest.mark.parametrize("role", EDITING)
def test_an_editing_role_changes_adds_and_deletes_the_organizations_data(
    client: Client, alpha: Tenant, role: str
) -> None:
    contact = alpha.row(Contact)
    client.force_login(member(alpha.organization, role))

    change = client.post(admin_url(Contact, "change", contact.pk), contact_form(contact, first_name="Changed"))
    add = client.post(admin_url(Tag, "add"), {"organization": alpha.organization.pk, "name": "added"})
    delete = client.post(admin_url(Tag, "delete", alpha.row(Tag).pk), {"post": "yes"})

    assert (change.status_code, add.status_code, delete.status_code) == (302, 302, 302)
    contact.refresh_from_db()
    assert contact.first_name == "Changed"
    assert list(Tag.objects.for_org(alpha.organization).values_list("name", flat=True)) == ["added"]


def test_editing_rights_in_one_organization_do_not_reach_another_where_the_person_only_views(
    client: Client, alpha: Tenant, bravo: Tenant
) -> None:
    person = member(alpha.organization, Membership.Role.MARKETER)
    Membership.objects.create(user=person, organization=bravo.organization, role=Membership.Role.VIEWER)
    own, viewed = alpha.row(Contact), bravo.row(Contact)
    client.force_login(person)

    edited = client.post(admin_url(Contact, "change", own.pk), contact_form(own, first_name="Edited"))
    view_page = client.get(admin_url(Contact, "change", viewed.pk))
    refused = client.post(admin_url(Contact, "change", viewed.pk), contact_form(viewed, first_name="Edited"))

    assert edited.status_code == 302
    assert view_page.status_code == 200 and view_page.context["has_change_permission"] is False
    assert refused.status_code == 403
    viewed.refresh_from_db()
    assert viewed.first_name == "Bravoina"
    organization_choices = client.get(admin_url(Contact, "add")).context["adminform"].form.fields["organization"]
    assert list(organization_choices.queryset) == [alpha.organization]


def test_records_of_what_happened_are_read_only_even_for_owners(client: Client, alpha: Tenant) -> None:
    message = alpha.row(Message)
    client.force_login(alpha.owner)

    page = client.get(admin_url(Message, "change", message.pk))
    add = client.get(admin_url(Message, "add"))

    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert add.status_code == 403


@pytest.mark.parametrize(
    ("role", "may_manage"),
    [
        (Membership.Role.OWNER, True),
        (Membership.Role.ADMIN, True),
        (Membership.Role.MARKETER, False),
        (Membership.Role.VIEWER, False),
    ],
)
def test_only_owners_and_admins_manage_the_organization_and_its_members(
    client: Client, alpha: Tenant, role: str, may_manage: bool
) -> None:
    newcomer = UserFactory(username="newcomer")
    client.force_login(member(alpha.organization, role))

    renamed = client.post(
        admin_url(Organization, "change", alpha.organization.pk),
        {
            "name": "Renamed",
            "slug": alpha.organization.slug,
            "postal_address": "2 Road",
            "timezone": "UTC",
            "soft_bounce_limit": 3,
            "soft_bounce_window_days": 14,
            "double_opt_in": "on",
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )
    added = client.post(
        admin_url(Membership, "add"),
        {"user": newcomer.pk, "organization": alpha.organization.pk, "role": Membership.Role.VIEWER},
    )

    alpha.organization.refresh_from_db()
    assert (alpha.organization.name == "Renamed") is may_manage
    assert Membership.objects.filter(user=newcomer, organization=alpha.organization).exists() is may_manage
    assert (renamed.status_code, added.status_code) == ((302, 302) if may_manage else (403, 403))


@pytest.mark.parametrize("role", [*EDITING, Membership.Role.VIEWER])
def test_only_superusers_create_or_delete_organizations(client: Client, alpha: Tenant, role: str) -> None:
    client.force_login(member(alpha.organization, role))

    add = client.get(admin_url(Organization, "add"))
    delete = client.post(admin_url(Organization, "delete", alpha.organization.pk), {"post": "yes"})

    assert (add.status_code, delete.status_code) == (403, 403)
    assert Organization.objects.filter(pk=alpha.organization.pk).exists()


def test_a_superuser_may_create_organizations(client: Client, db: None) -> None:
    client.force_login(UserFactory(is_superuser=True))

    response = client.post(
        admin_url(Organization, "add"),
        {
            "name": "Charlie",
            "slug": "charlie",
            "postal_address": "3 Lane",
            "timezone": "Europe/Paris",
            "soft_bounce_limit": 3,
            "soft_bounce_window_days": 14,
            "double_opt_in": "on",
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 302
    assert Organization.objects.get(slug="charlie").timezone == "Europe/Paris"


def test_a_member_who_is_not_staff_is_sent_to_the_login_page(client: Client, alpha: Tenant) -> None:
    client.force_login(member(alpha.organization, Membership.Role.OWNER, is_staff=False))

    response = client.get(admin_url(Contact, "changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_deactivated_member_is_sent_to_the_login_page(client: Client, alpha: Tenant) -> None:
    person = member(alpha.organization, Membership.Role.OWNER)
    client.force_login(person)
    person.is_active = False
    person.save()

    response = client.get(admin_url(Contact, "changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
