"""Acceptance: a form post that ties a row to another organization's row is refused, whether the
other row was never offered (staff of one organization) or was offered because the person
may see both (members of two organizations, superusers)."""

from __future__ import annotations

import pytest
from django.test import Client

from organizations.models import Membership
from organizations.tests.factories import UserFactory, member
from organizations.tests.tenant_world import Tenant, admin_url
from sequences.models import EmailTemplate, Enrollment, Sequence, Step
from subscribers.models import Contact, ContactList, Tag
from subscribers.tests.factories import contact_admin_data


def contact_form(tenant: Tenant, **changes: object) -> dict[str, object]:
    return contact_admin_data(tenant.organization, **changes)


def step_form(index: int, *, template: EmailTemplate, step: Step | None = None, position: int) -> dict[str, object]:
    prefix = f"steps-{index}-"
    return {
        f"{prefix}id": step.pk if step else "",
        f"{prefix}sequence": step.sequence_id if step else "",
        f"{prefix}position": position,
        f"{prefix}kind": Step.Kind.EMAIL,
        f"{prefix}name": step.name if step else "new step",
        f"{prefix}template": template.pk,
        f"{prefix}delay": "",
        f"{prefix}wait_until_time": "",
        f"{prefix}wait_until_days": "[0, 1, 2, 3, 4, 5, 6]",
        f"{prefix}condition": "null",
        f"{prefix}yes_step": "",
        f"{prefix}no_step": "",
    }


def sequence_form(tenant: Tenant, *, name: str, steps: list[dict[str, object]], initial: int = 0) -> dict[str, object]:
    data: dict[str, object] = {
        "organization": tenant.organization.pk,
        "name": name,
        "description": "",
        "from_name": "Sender",
        "from_email": "news@example.com",
        "reply_to": "",
        "send_days": "[0, 1, 2, 3, 4, 5, 6]",
        "send_start_hour": 0,
        "send_end_hour": 24,
        "reentry_policy": Sequence.ReentryPolicy.NEVER,
        "track_opens": "on",
        "track_clicks": "on",
        "goal": "null",
        "steps-TOTAL_FORMS": len(steps),
        "steps-INITIAL_FORMS": initial,
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
    }
    for step in steps:
        data.update(step)
    return data


def errors_of(response) -> str:
    """Every error on the re-rendered page, main form and inline forms alike."""
    assert response.status_code == 200, "the post was accepted"
    errors = [str(response.context["adminform"].form.errors)]
    for inline_admin_formset in response.context["inline_admin_formsets"]:
        errors.extend(str(form.errors) for form in inline_admin_formset.formset.forms)
    return " ".join(errors)


@pytest.fixture
def both_orgs_marketer(alpha: Tenant, bravo: Tenant):
    """A marketer of Alpha and Bravo, who is offered the rows of both."""
    person = member(alpha.organization, Membership.Role.MARKETER, username="two-hats")
    Membership.objects.create(user=person, organization=bravo.organization, role=Membership.Role.MARKETER)
    return person


@pytest.fixture(params=["alpha_marketer", "both_orgs_marketer", "superuser"])
def editor(request, alpha: Tenant, bravo: Tenant):
    if request.param == "alpha_marketer":
        return member(alpha.organization, Membership.Role.MARKETER, username="alpha-marketer")
    if request.param == "both_orgs_marketer":
        return request.getfixturevalue("both_orgs_marketer")
    return UserFactory(is_superuser=True, username="root")


def test_the_forms_used_below_are_accepted_with_the_own_organizations_rows(
    client: Client, alpha: Tenant, editor
) -> None:
    client.force_login(editor)
    tag, contact_list, template = alpha.row(Tag), alpha.row(ContactList), alpha.row(EmailTemplate)
    sequence, step = alpha.row(Sequence), alpha.row(Step)

    contact = client.post(admin_url(Contact, "add"), contact_form(alpha, tags=[tag.pk], lists=[contact_list.pk]))
    new_sequence = client.post(
        admin_url(Sequence, "add"),
        sequence_form(alpha, name="fresh", steps=[step_form(0, template=template, position=1)]),
    )
    added_step = client.post(
        admin_url(Sequence, "change", sequence.pk),
        sequence_form(
            alpha,
            name=sequence.name,
            initial=1,
            steps=[step_form(0, template=template, step=step, position=1), step_form(1, template=template, position=2)],
        ),
    )

    assert (contact.status_code, new_sequence.status_code, added_step.status_code) == (302, 302, 302)
    created = Contact.objects.get(email="newcomer@example.com")
    assert (list(created.tags.all()), list(created.lists.all())) == ([tag], [contact_list])
    assert Step.objects.filter(sequence__name="fresh", template=template).count() == 1
    assert sequence.steps.count() == 2


def test_a_contact_with_another_organizations_tag_is_refused(
    client: Client, alpha: Tenant, bravo: Tenant, editor
) -> None:
    client.force_login(editor)

    response = client.post(admin_url(Contact, "add"), contact_form(alpha, tags=[bravo.row(Tag).pk]))

    assert "tags" in response.context["adminform"].form.errors
    assert errors_of(response)
    assert not Contact.objects.filter(email="newcomer@example.com").exists()
    assert not bravo.row(Tag).contacts.filter(organization=alpha.organization).exists()


def test_a_contact_in_another_organizations_list_is_refused(
    client: Client, alpha: Tenant, bravo: Tenant, editor
) -> None:
    client.force_login(editor)

    response = client.post(admin_url(Contact, "add"), contact_form(alpha, lists=[bravo.row(ContactList).pk]))

    assert "lists" in response.context["adminform"].form.errors
    assert not Contact.objects.filter(email="newcomer@example.com").exists()


def test_an_existing_contact_cannot_be_given_another_organizations_tag(
    client: Client, alpha: Tenant, bravo: Tenant, editor
) -> None:
    contact = alpha.row(Contact)
    client.force_login(editor)

    response = client.post(
        admin_url(Contact, "change", contact.pk),
        contact_form(alpha, email=contact.email, tags=[alpha.row(Tag).pk, bravo.row(Tag).pk]),
    )

    assert "tags" in response.context["adminform"].form.errors
    assert list(contact.tags.all()) == [alpha.row(Tag)]


def test_an_enrollment_of_another_organizations_contact_is_refused(
    client: Client, alpha: Tenant, bravo: Tenant, editor
) -> None:
    client.force_login(editor)

    response = client.post(
        admin_url(Enrollment, "add"),
        {"organization": alpha.organization.pk, "sequence": alpha.row(Sequence).pk, "contact": bravo.row(Contact).pk},
    )

    assert "contact" in response.context["adminform"].form.errors
    assert not Enrollment.objects.filter(sequence=alpha.row(Sequence), contact=bravo.row(Contact)).exists()


def test_a_new_step_of_an_existing_sequence_cannot_use_another_organizations_template(
    client: Client, alpha: Tenant, bravo: Tenant, editor
) -> None:
    sequence, step = alpha.row(Sequence), alpha.row(Step)
    client.force_login(editor)

    response = client.post(
        admin_url(Sequence, "change", sequence.pk),
        sequence_form(
            alpha,
            name=sequence.name,
            initial=1,
            steps=[
                step_form(0, template=alpha.row(EmailTemplate), step=step, position=1),
                step_form(1, template=bravo.row(EmailTemplate), position=2),
            ],
        ),
    )

    assert "template" in errors_of(response)
    assert not Step.objects.filter(template=bravo.row(EmailTemplate), organization=alpha.organization).exists()
    assert sequence.steps.count() == 1


def test_an_existing_step_cannot_be_switched_to_another_organizations_template(
    client: Client, alpha: Tenant, bravo: Tenant, editor
) -> None:
    sequence, step = alpha.row(Sequence), alpha.row(Step)
    client.force_login(editor)

    response = client.post(
        admin_url(Sequence, "change", sequence.pk),
        sequence_form(
            alpha,
            name=sequence.name,
            initial=1,
            steps=[step_form(0, template=bravo.row(EmailTemplate), step=step, position=1)],
        ),
    )

    assert "template" in errors_of(response)
    step.refresh_from_db()
    assert step.template == alpha.row(EmailTemplate)


def test_a_new_sequence_cannot_start_with_a_step_using_another_organizations_template(
    client: Client, alpha: Tenant, bravo: Tenant, editor
) -> None:
    client.force_login(editor)

    response = client.post(
        admin_url(Sequence, "add"),
        sequence_form(alpha, name="smuggler", steps=[step_form(0, template=bravo.row(EmailTemplate), position=1)]),
    )

    assert "template" in errors_of(response)
    assert not Sequence.objects.filter(name="smuggler").exists()
    assert not Step.objects.filter(template=bravo.row(EmailTemplate), organization=alpha.organization).exists()


def test_a_row_cannot_be_created_in_or_moved_to_an_organization_the_editor_does_not_edit(
    client: Client, alpha: Tenant, bravo: Tenant
) -> None:
    alpha_marketer = member(alpha.organization, Membership.Role.MARKETER)
    contact = alpha.row(Contact)
    client.force_login(alpha_marketer)

    created = client.post(admin_url(Contact, "add"), contact_form(bravo))
    # On an existing row the organization is read-only: a posted one is ignored.
    client.post(admin_url(Contact, "change", contact.pk), contact_form(bravo, email=contact.email))

    assert "organization" in created.context["adminform"].form.errors
    assert not Contact.objects.filter(email="newcomer@example.com").exists()
    contact.refresh_from_db()
    assert contact.organization == alpha.organization


def test_an_owner_cannot_add_members_to_another_organization(client: Client, alpha: Tenant, bravo: Tenant) -> None:
    newcomer = UserFactory(username="newcomer")
    client.force_login(alpha.owner)

    response = client.post(
        admin_url(Membership, "add"),
        {"user": newcomer.pk, "organization": bravo.organization.pk, "role": Membership.Role.OWNER},
    )

    assert "organization" in response.context["adminform"].form.errors
    assert not Membership.objects.filter(user=newcomer).exists()
