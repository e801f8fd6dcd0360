"""Enrolling contacts over the API, by ids, emails or a list: counts of who was enrolled and
why the others were skipped; ids of another organization are 404; enrollments are listed."""

from __future__ import annotations

import pytest

from api.tests.clients import key_client
from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.models import Enrollment, Sequence
from sequences.tests.helpers import draft_sequence, email_step
from subscribers import services as subscriber_services
from subscribers.models import Contact, Suppression
from subscribers.tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def organization():
    return OrganizationFactory()


@pytest.fixture
def client(organization):
    return key_client(organization)


@pytest.fixture
def sequence(organization) -> Sequence:
    sequence = draft_sequence(organization)
    email_step(sequence, "Hello")
    return services.sequence_activate(sequence=sequence)


def subscribers_of(sequence: Sequence) -> str:
    return f"/api/v1/email-sequences/{sequence.pk}/subscribers"


def test_contacts_are_enrolled_by_id_and_the_others_counted_by_reason(client, organization, sequence):
    fresh, again = ContactFactory.create_batch(2, organization=organization)
    gone = ContactFactory(organization=organization)
    subscriber_services.contact_unsubscribe(contact=gone, source="test")
    suppressed = ContactFactory(organization=organization)
    subscriber_services.suppression_add(
        organization=organization, email=suppressed.email, reason=Suppression.Reason.MANUAL
    )
    services.enrollment_create(sequence=sequence, contact=again)
    unconfirmed = ContactFactory(organization=organization, status=Contact.Status.PENDING)

    response = client.post(
        subscribers_of(sequence),
        {"contact_ids": [fresh.pk, fresh.pk, again.pk, gone.pk, suppressed.pk, unconfirmed.pk]},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["enrolled"] == 1 and body["skipped"] == 5
    assert body["skipped_reasons"] == {
        "not_mailable": 1,
        "awaiting_confirmation": 1,
        "suppressed": 1,
        "already_enrolled": 1,
        "already_went_through": 0,
        "unknown_email": 0,
        "invalid_email": 0,
        "duplicate": 1,
    }
    assert Enrollment.objects.filter(sequence=sequence, contact=fresh).count() == 1


def test_emails_are_matched_to_contacts_and_unknown_or_invalid_ones_reported(client, organization, sequence):
    ann = ContactFactory(organization=organization, email="ann@example.com")
    ContactFactory(email="bob@example.com")  # another organization's contact

    response = client.post(
        subscribers_of(sequence),
        {"emails": [" Ann@Example.com ", "bob@example.com", "not-an-address"]},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["enrolled"] == 1 and body["skipped"] == 2
    assert body["unknown_emails"] == ["bob@example.com"] and body["invalid_emails"] == ["not-an-address"]
    assert list(Enrollment.objects.values_list("contact_id", flat=True)) == [ann.pk]


def test_a_whole_list_is_enrolled(client, organization, sequence):
    members = ContactFactory.create_batch(3, organization=organization)
    ContactFactory(organization=organization)  # not on the list
    contact_list = ContactListFactory(organization=organization)
    contact_list.contacts.add(*members)

    response = client.post(subscribers_of(sequence), {"list_id": contact_list.pk}, format="json")

    assert response.status_code == 201 and response.json()["enrolled"] == 3
    assert set(Enrollment.objects.values_list("contact_id", flat=True)) == {member.pk for member in members}


def test_contacts_and_lists_of_another_organization_are_not_found_and_nothing_is_enrolled(
    client, organization, sequence
):
    mine = ContactFactory(organization=organization)
    theirs = ContactFactory()
    their_list = ContactListFactory()

    by_id = client.post(subscribers_of(sequence), {"contact_ids": [mine.pk, theirs.pk]}, format="json")
    by_list = client.post(subscribers_of(sequence), {"list_id": their_list.pk}, format="json")

    assert by_id.status_code == 404 and "contact_ids" in by_id.json()["detail"]
    assert by_list.status_code == 404 and "list_id" in by_list.json()["detail"]
    assert not Enrollment.objects.exists()


def test_a_draft_sequence_takes_no_subscribers(client, organization):
    draft = draft_sequence(organization)
    email_step(draft, "Hello")

    response = client.post(
        subscribers_of(draft), {"contact_ids": [ContactFactory(organization=organization).pk]}, format="json"
    )

    assert response.status_code == 409
    assert not Enrollment.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contact_ids": [1], "emails": ["a@example.com"]},
        {"contact_ids": []},
        {"contact_ids": [0]},
        {"contact_ids": [2**64]},
        {"contact_ids": "1,2"},
        {"emails": ["a\x00@example.com"]},
        {"list_id": "x"},
    ],
)
def test_an_enrollment_request_names_contacts_exactly_one_way(client, sequence, body):
    response = client.post(subscribers_of(sequence), body, format="json")

    assert response.status_code == 400
    assert not Enrollment.objects.exists()


def test_enrollments_are_listed_and_filtered_by_status(client, organization, sequence):
    staying, leaving = ContactFactory.create_batch(2, organization=organization)
    services.enrollment_create(sequence=sequence, contact=staying)
    services.enrollment_exit(enrollment=services.enrollment_create(sequence=sequence, contact=leaving))

    everyone = client.get(subscribers_of(sequence)).json()["results"]
    exited = client.get(subscribers_of(sequence), {"status": "exited"}).json()["results"]

    assert {row["email"] for row in everyone} == {staying.email, leaving.email}
    assert [(row["email"], row["exit_reason"]) for row in exited] == [(leaving.email, "removed")]
    assert exited[0]["finished_at"] is not None and exited[0]["current_step_id"] is None
    assert client.get(subscribers_of(sequence), {"status": "asleep"}).status_code == 400


def test_a_retried_enrollment_with_the_same_idempotency_key_answers_the_same(client, organization, sequence):
    contact = ContactFactory(organization=organization)
    body = {"contact_ids": [contact.pk]}

    first = client.post(subscribers_of(sequence), body, format="json", HTTP_IDEMPOTENCY_KEY="enroll-1")
    again = client.post(subscribers_of(sequence), body, format="json", HTTP_IDEMPOTENCY_KEY="enroll-1")

    assert first.json() == again.json() and again.json()["enrolled"] == 1
    assert again["Idempotent-Replayed"] == "true"
    assert Enrollment.objects.count() == 1


def test_a_list_larger_than_a_chunk_is_enrolled_chunk_by_chunk(client, organization, sequence, monkeypatch):
    monkeypatch.setattr(services, "ENROLLMENT_CHUNK", 2)
    members = ContactFactory.create_batch(5, organization=organization)
    contact_list = ContactListFactory(organization=organization)
    contact_list.contacts.add(*members)
    services.enrollment_create(sequence=sequence, contact=members[3])

    response = client.post(subscribers_of(sequence), {"list_id": contact_list.pk}, format="json")

    assert response.json()["enrolled"] == 4
    assert response.json()["skipped_reasons"]["already_enrolled"] == 1
    assert Enrollment.objects.filter(sequence=sequence).count() == 5
