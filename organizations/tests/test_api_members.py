"""Members over the API: added by username or email with a role, their role changed, removed.
Only an owner grants, takes away or removes the owner role, and the last owner always stays."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from api.tests.clients import user_client
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory, UserFactory, member

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/members/"
Role = Membership.Role


def membership_of(user: object, organization: object) -> Membership:
    return Membership.objects.get(user=user, organization=organization)


@pytest.fixture
def organization():
    return OrganizationFactory()


@pytest.fixture
def owner(organization):
    return member(organization, Role.OWNER)


@pytest.fixture
def admin(organization):
    return member(organization, Role.ADMIN)


def test_the_list_shows_each_member_with_their_role(organization, owner, admin):
    member(OrganizationFactory(), Role.OWNER, username="stranger")

    response = user_client(admin, organization).get(MEMBERS)

    assert response.status_code == 200
    rows = {row["username"]: row for row in response.json()["results"]}
    assert set(rows) == {owner.username, admin.username}
    assert rows[owner.username]["role"] == "owner"
    assert rows[owner.username]["email"] == owner.email and rows[owner.username]["user_id"] == owner.pk
    assert rows[owner.username]["joined_at"]


@pytest.mark.parametrize("name_by", ["username", "email"])
def test_an_admin_adds_an_existing_user_by_username_or_email(organization, admin, name_by: str):
    newcomer = UserFactory(username="newcomer", email="New.Comer@example.com")
    given = newcomer.username if name_by == "username" else "new.comer@EXAMPLE.com"

    response = user_client(admin, organization).post(MEMBERS, {"user": given, "role": "marketer"}, format="json")

    assert response.status_code == 201
    assert response.json()["username"] == "newcomer" and response.json()["role"] == "marketer"
    assert membership_of(newcomer, organization).role == Role.MARKETER


def test_an_unknown_user_is_a_field_error(organization, admin):
    response = user_client(admin, organization).post(MEMBERS, {"user": "nobody", "role": "viewer"}, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["user"]


def test_adding_a_member_twice_is_a_conflict(organization, admin, owner):
    response = user_client(admin, organization).post(MEMBERS, {"user": owner.username, "role": "viewer"}, format="json")

    assert response.status_code == 409
    assert membership_of(owner, organization).role == Role.OWNER


def test_only_an_owner_adds_an_owner(organization, owner, admin):
    UserFactory(username="heir")

    refused = user_client(admin, organization).post(MEMBERS, {"user": "heir", "role": "owner"}, format="json")
    allowed = user_client(owner, organization).post(MEMBERS, {"user": "heir", "role": "owner"}, format="json")

    assert refused.status_code == 403
    assert allowed.status_code == 201 and allowed.json()["role"] == "owner"


def test_an_admin_changes_the_role_of_a_marketer(organization, admin):
    marketer = member(organization, Role.MARKETER)

    response = user_client(admin, organization).patch(
        f"{MEMBERS}{membership_of(marketer, organization).pk}/", {"role": "viewer"}, format="json"
    )

    assert response.status_code == 200 and response.json()["role"] == "viewer"
    assert membership_of(marketer, organization).role == Role.VIEWER


def test_an_admin_can_neither_grant_nor_take_away_the_owner_role(organization, owner, admin):
    marketer = member(organization, Role.MARKETER)
    client = user_client(admin, organization)

    promote = client.patch(f"{MEMBERS}{membership_of(marketer, organization).pk}/", {"role": "owner"}, format="json")
    demote = client.patch(f"{MEMBERS}{membership_of(owner, organization).pk}/", {"role": "admin"}, format="json")
    remove = client.delete(f"{MEMBERS}{membership_of(owner, organization).pk}/")

    assert (promote.status_code, demote.status_code, remove.status_code) == (403, 403, 403)
    assert membership_of(marketer, organization).role == Role.MARKETER
    assert membership_of(owner, organization).role == Role.OWNER


def test_the_last_owner_can_be_neither_demoted_nor_removed(organization, owner):
    client = user_client(owner, organization)
    own_membership = f"{MEMBERS}{membership_of(owner, organization).pk}/"

    demote = client.patch(own_membership, {"role": "admin"}, format="json")
    remove = client.delete(own_membership)

    assert demote.status_code == remove.status_code == 409
    assert membership_of(owner, organization).role == Role.OWNER


def test_an_owner_hands_over_to_another_owner_and_steps_down(organization, owner):
    heir = member(organization, Role.ADMIN)
    client = user_client(owner, organization)

    promote = client.patch(f"{MEMBERS}{membership_of(heir, organization).pk}/", {"role": "owner"}, format="json")
    step_down = client.delete(f"{MEMBERS}{membership_of(owner, organization).pk}/")

    assert promote.status_code == 200 and step_down.status_code == 204
    assert list(Membership.objects.filter(organization=organization).values_list("user", "role")) == [
        (heir.pk, Role.OWNER)
    ]


def test_an_admin_removes_a_member_who_then_loses_access(organization, admin):
    viewer = member(organization, Role.VIEWER)
    assert user_client(viewer, organization).get("/api/v1/tags/").status_code == 200

    response = user_client(admin, organization).delete(f"{MEMBERS}{membership_of(viewer, organization).pk}/")

    assert response.status_code == 204
    assert user_client(viewer, organization).get("/api/v1/tags/").status_code == 404


def test_members_of_another_organization_are_not_found(organization, owner):
    other = OrganizationFactory()
    outsider = member(other, Role.MARKETER)
    theirs = f"{MEMBERS}{membership_of(outsider, other).pk}/"
    client = user_client(owner, organization)

    assert client.get(theirs).status_code == 404
    assert client.patch(theirs, {"role": "viewer"}, format="json").status_code == 404
    assert client.delete(theirs).status_code == 404
    assert membership_of(outsider, other).role == Role.MARKETER


@pytest.mark.parametrize(
    "data, field",
    [
        ({"role": "viewer"}, "user"),
        ({"user": "", "role": "viewer"}, "user"),
        ({"user": "a\x00b", "role": "viewer"}, "user"),
        ({"user": "x" * 255, "role": "viewer"}, "user"),
        ({"user": "someone"}, "role"),
        ({"user": "someone", "role": "superuser"}, "role"),
    ],
)
def test_bad_input_is_a_field_error(organization, admin, data: dict, field: str):
    UserFactory(username="someone")

    response = user_client(admin, organization).post(MEMBERS, data, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert Membership.objects.filter(organization=organization).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    organization = OrganizationFactory()
    first, second = member(organization, Role.OWNER), member(organization, Role.OWNER)
    start = threading.Barrier(2)
    answers: list[int] = []

    def demote(actor: object, target: object) -> None:
        try:
            client = user_client(actor, organization)
            start.wait(timeout=10)
            response = client.patch(
                f"{MEMBERS}{membership_of(target, organization).pk}/", {"role": "admin"}, format="json"
            )
            answers.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(answers) in ([200, 403], [200, 409])
    assert Membership.objects.filter(organization=organization, role=Role.OWNER).count() == 1
